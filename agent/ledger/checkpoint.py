"""WAL checkpoints on a thread of their own, never inside a commit of the writer.

Why: SQLite's automatic WAL checkpoint runs inside the COMMIT that crosses the threshold, i.e. while
the writer lock is held, and with synchronous=FULL it fsyncs the database file as well as the WAL.
Every part writing through the ledger (the feeder, packing, the verify station's writer) then stalled
for the length of a checkpoint, up to 300 ms on a busy line PC. So the writer connection has
`wal_autocheckpoint=0`, and this thread, with its own connection, runs PASSIVE checkpoints, which
never wait for and never block the writer or the readers: a commit costs one WAL fsync, nothing more.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path


class Checkpointer:
    def __init__(self, path: Path, every_s: float,
                 on_error: Callable[[BaseException], object] | None = None) -> None:
        self.path = path
        self.every_s = every_s
        self.on_error = on_error  # a full disk shows here first when the WAL outgrows the database file
        self.count = 0  # PASSIVE checkpoints run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ledger-checkpoint:{path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Copy committed WAL pages into the database file without any lock the writer needs."""
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error:
            return  # the writer connection still checkpoints when it closes
        try:
            while not self._stop.wait(self.every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.count += 1
                except sqlite3.Error as exc:
                    if self.on_error is not None:
                        self.on_error(exc)
                    continue  # PASSIVE does what it can; the next round retries
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
