"""The ledger's core: the file, its writer, group commit, atomic blocks and the journal.

agent.ledger.store builds the code operations (transitions, allocation) on top of this; the split is
by job: this part knows nothing of code states, that part nothing of how groups end.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from agent.clock import Stamp, stamp
from agent.ledger.checkpoint import Checkpointer
from agent.ledger.receipts import Group, LedgerError, Receipt
from agent.ledger.schema import SchemaTooNew, migrate
from agent.ledger.writer import Writer

try:  # orjson: ~10x faster than json for the journal's payloads (every pack writes one)
    import orjson

    def dumps(obj: Any) -> str:
        """Compact, sorted-key JSON; non-JSON values (dates, paths) as their str()."""
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str).decode()

except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare install working

    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)


EVENT_SQL = "INSERT INTO events(at, kind, code, job, uplink, payload) VALUES (?, ?, ?, ?, ?, ?)"


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


class LedgerCore:
    def __init__(
        self,
        path: str | Path,
        *,
        group_window_s: float = 0.010,
        group_max: int = 5000,
        synchronous: str = "FULL",
        checkpoint_every_s: float = 0.5,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        memory = str(path) == ":memory:"
        if not memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=busy_timeout_s)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns. Group commit keeps this affordable.
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            conn.execute("PRAGMA cache_size=-65536")
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerError(f"{path} is not a usable lineagent ledger: {exc}") from exc
        except SchemaTooNew as exc:  # written by a newer lineagent: never touch it
            conn.close()
            raise LedgerError(f"{path}: {exc}") from exc
        self._conn = conn
        self._checkpointer: Checkpointer | None = None
        if not memory:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # see agent.ledger.checkpoint
        self._w = Writer(conn, window_s=group_window_s, group_max=group_max, name=self.path.name)
        if not memory:
            self._checkpointer = Checkpointer(self.path, checkpoint_every_s, on_error=self._w.seen)
        self._lock = self._w.lock

    # ---- life cycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Commit the open group, stop the writer and checkpointer threads, close the file."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._w.close()
        with self._lock:
            if self._checkpointer is not None:
                with contextlib.suppress(sqlite3.Error):  # a reader still open: the next open finishes it
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer connection, for reads inside the writer's view (take `lock` when threaded)."""
        return self._conn

    @property
    def lock(self) -> threading.RLock:
        """Held, the connection is the holder's: reads see the open group, writes join it."""
        return self._lock

    @property
    def checkpoints(self) -> int:
        return self._checkpointer.count if self._checkpointer is not None else 0

    @property
    def group_window_s(self) -> float:
        return self._w.window_s

    @group_window_s.setter
    def group_window_s(self, value: float) -> None:
        self._w.window_s = value

    @property
    def group_max(self) -> int:
        return self._w.group_max

    @property
    def commit_failures(self) -> int:
        """Groups lost since the ledger opened (each one's receipts say why)."""
        return self._w.failures

    def on_error(self, listener: Callable[[BaseException], object]) -> None:
        """Call `listener` with every SQLite error a write of this ledger meets (a statement, a COMMIT,
        a checkpoint), on the thread that met it; agent.ledger.faults says which are a full or failing
        disk. The listener must only take note: it may run holding the writer lock."""
        self._w.listeners.append(listener)

    def on_outbox(self, listener: Callable[[int], object]) -> None:
        """Call `listener(n)` after every COMMIT that made n outbox rows (uplink=1 events) durable, on the
        committing thread, holding the writer lock: it must only take note (agent/sync/wakeup.py). A
        group that fails calls nothing; n may count rows of a block that was rolled back."""
        self._w.outbox_listeners.append(listener)

    def forgive_failures(self) -> None:
        """The caller has handled every commit lost so far (agent/line/resources.py after a full disk):
        commit() no longer raises for them in the threads that wrote into them; receipts still say
        failed. Later losses are reported as before."""
        with self._lock:
            self._w.forgive()

    def reader(self) -> sqlite3.Connection:
        """A separate read-only connection that sees committed data and never blocks the writer."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    # ---- group commit -------------------------------------------------------------------------

    def commit(self) -> int:
        """Make everything written so far durable; returns the number of the group now durable.

        Raises LedgerError if a group holding any write of the calling thread since its last
        commit was lost (this COMMIT failed, or the timer's did meanwhile): the group was rolled
        back, every receipt of it reads failed, and the caller must not act on any of it.
        """
        with self._lock:
            return self._w.end_now().number

    def commit_group(self) -> Group:
        """Like commit(), but returns the group that ended (durable or failed) instead of raising."""
        with self._lock:
            return self._w.end_now(raise_on_failure=False)

    def rollback(self, reason: str = "rolled back by the caller") -> None:
        """Abandon the open group (a test's stand-in for a crash); its receipts all read failed.

        Not a recovery step: after a failed commit the writer has already rolled the group back, and
        a rollback then would throw away the next group, other threads' writes.
        """
        with self._lock:
            self._w.abandon(reason)

    def maybe_commit(self) -> None:
        """End the group if its window passed or it is full (the writer's timer does this anyway)."""
        with self._lock:
            self._w.due()

    def is_durable(self, receipt: Receipt) -> bool:
        return receipt.durable

    @property
    def open_group(self) -> int:
        return self._w.open_number

    @contextmanager
    def atomic(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """All statements inside apply together or not at all; `durable=True` commits at the end.

        The lock is held for the whole block, so no group ends in the middle of it. With
        `durable=True` a failed commit raises LedgerError after the block. Receipts taken inside a
        block that raises are void (their writes were undone with the block), whatever their group
        becomes: the block's exception is the answer, not the receipt.
        """
        w = self._w
        with self._lock:
            w.group()
            name = f"sp{w.savepoints}"
            self._conn.execute(f"SAVEPOINT {name}")
            w.savepoints += 1
            try:
                yield self._conn
            except BaseException as exc:
                w.savepoints -= 1
                try:
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                except sqlite3.Error:
                    w.check(exc)
                else:
                    if isinstance(exc, sqlite3.Error):
                        w.seen(exc)
                raise
            w.savepoints -= 1
            try:
                self._conn.execute(f"RELEASE {name}")
            except sqlite3.Error as exc:
                w.check(exc)
                raise LedgerError(f"ledger write failed ({exc}); the block was not applied") from exc
            if durable:
                if w.savepoints:
                    raise LedgerError("durable=True inside another atomic() block")
                w.end_now()
            else:
                w.wrote()

    # ---- the journal --------------------------------------------------------------------------

    def append_event(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        code: str | None = None,
        job: int | None = None,
        uplink: bool = False,
        at: float | None = None,
    ) -> int:
        """Append to the journal inside the caller's atomic block (or the open group)."""
        with self._lock:
            self._w.group()
            try:
                cur = self._conn.execute(EVENT_SQL, (time.time() if at is None else at, kind, code, job,
                                                      int(uplink), dumps(payload or {})))
            except sqlite3.Error as exc:
                self._w.check(exc)
                raise
            self._w.outbox_rows += uplink
            return int(cur.lastrowid or 0)

    def audit(self, action: str, args: dict[str, Any], result: str, *, user: str | None = None,
              at: Stamp | None = None) -> None:
        """Record an operator action with the OS user who ran it; durable at once. `at` (default: now)
        carries the boot clock beside the wall time, for expiries counted from the audit (agent/clock.py)."""
        when = at or stamp()
        with self.atomic(durable=not self._w.savepoints):
            self._conn.execute(
                "INSERT INTO audit(at, os_user, action, args, result, boot, boot_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (when.wall, user or os_user(), action, json.dumps(args, default=str), result, when.boot,
                 when.since_boot),
            )
