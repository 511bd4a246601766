"""What wakes the uplink: outbox rows committed by the line, counted, as a file descriptor to select on.

Why a counted, selectable signal rather than a timer: the uplink thread waits on its MQTT socket (acks,
commands) and must also learn of new outbox rows; one select() on both costs nothing while nothing
happens, where a short poll costs a round of SQLite queries 50 times a second. Why counted: while a
partial batch already waits for its `batch_max_ms`, a new row changes nothing unless it fills the
batch, so the ledger's commit raises the signal only once the rows committed since the uplink last
looked reach the number it asked for (1 when it has nothing pending, the batch's free room otherwise).
Counting too many (rows of a block later rolled back, rows the uplink's query already saw) only wakes
it early; it then looks again and finds what is really there.
"""

from __future__ import annotations

import contextlib
import socket
import threading

NEVER = 1 << 62  # "no number of new rows matters now" (the in-flight window is full)


class Wakeup:
    """Raised from any thread (the ledger's commit, a stop); the uplink selects on `fileno()`."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._lock = threading.Lock()
        self._count = 0  # rows committed since `look()`
        self._need = NEVER
        self._raised = False
        self._closed = False

    def fileno(self) -> int:
        return self._r.fileno()

    def added(self, rows: int) -> None:
        """`rows` outbox rows were committed (the ledger's commit listener: only takes note)."""
        with self._lock:
            self._count += rows
            if self._count >= self._need:
                self._raise()

    def wake(self) -> None:
        """Wake the uplink whatever it waits for (a stop)."""
        with self._lock:
            self._raise()

    def look(self) -> None:
        """The uplink is about to read the outbox: rows committed from now on are counted afresh."""
        with self._lock:
            self._count = 0
            self._need = NEVER

    def expect(self, rows: int) -> None:
        """Wake when `rows` (NEVER: no number) have been committed since `look()`; at once if they have."""
        with self._lock:
            self._need = rows
            if self._count >= rows:
                self._raise()

    def clear(self) -> None:
        """After a wake: empty the socket so the next select() waits again."""
        with self._lock:
            if self._closed:
                return
            self._raised = False
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while self._r.recv(64):
                    pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._r.close()
            self._w.close()

    def _raise(self) -> None:
        if not self._raised and not self._closed:
            self._raised = True
            with contextlib.suppress(BlockingIOError, InterruptedError):
                self._w.send(b"\0")
