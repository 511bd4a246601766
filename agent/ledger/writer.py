"""The writer: the one owner of the ledger's write connection and of its transaction boundaries.

Ownership. Whoever holds the writer lock is the only one touching the connection; parts of the agent
apply their statements to the open group while they hold it (a lent connection: a transition costs
what its statements cost, no thread hand-off). A group ends in one function, `_end` (COMMIT, or on
failure ROLLBACK), and nowhere else: no part of the agent commits or rolls back on its own.

The ledger's own timer. A writer thread ends the open group once its window has passed, so an idle
group does not keep `BEGIN IMMEDIATE` open: within one window of the last write the write lock is
free again and the CLI, a second process, can write. A caller whose own write makes the group due
(window passed, or full), or who asks for durability, ends it on its own thread through the same
`_end` while it holds the lock. Handing that commit to the writer thread instead cost two thread
wake-ups per group; on the shared 2-core machine it gave 31,000-50,000 transitions/s (wall) against
53,000-57,000 inline, for no gain in safety: the lock already makes the caller the connection's only
user, and the same `_end` runs either way.

Failure. A COMMIT that fails ends the group FAILED: `_end` rolls it back, and every receipt of that
group reads failed with the reason, for ever. Groups already durable stay durable, writes after go
into a fresh group. Should SQLite roll a transaction back by itself (disk full, I/O error), the next
look at the connection notices and fails the group the same way. Every SQLite error the writer sees
goes to its listeners (`listeners`), from whichever thread saw it: the line runtime stops the line
on a full or failing disk (agent/line/resources.py) instead of letting each part fail on its own.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from agent.ledger.receipts import Group, LedgerError, durable_group

log = logging.getLogger(__name__)


class _Mine(threading.local):
    """Per thread: the groups it wrote into that are not yet known durable (so commit() can tell)."""

    def __init__(self) -> None:
        self.last: Group | None = None
        self.unsettled: list[Group] = []


class Writer:
    """Group lifecycle on one connection: begin lazily, end on the timer, on demand or when full."""

    def __init__(self, conn: sqlite3.Connection, *, window_s: float, group_max: int, name: str) -> None:
        self.conn = conn
        self.window_s = window_s
        self.group_max = group_max
        self.lock = threading.RLock()
        self._wake = threading.Event()  # a group opened, or close(): the timer looks again
        self.savepoints = 0  # depth of atomic blocks of the lock's owner
        self.commits = 0  # groups made durable
        self.failures = 0  # groups lost (commit failed, rolled back, or rolled back by SQLite)
        self._number = 0
        self._forgiven = 0  # failed groups up to this number are not reported again (forgive())
        self._open: Group | None = None
        self._last = durable_group()
        self._pending = 0
        self._opened_at = 0.0
        self._stop = False
        self._mine = _Mine()
        # Told of every SQLite error on this connection; called on the thread that saw it, maybe holding
        # the writer lock, so a listener must only take note (never touch the ledger).
        self.listeners: list[Callable[[BaseException], object]] = []
        # Told after each COMMIT that added outbox rows (uplink=1), how many: the uplink's wake-up
        # (agent/sync/wakeup.py). Same rules as `listeners`: called holding the lock, only take note.
        self.outbox_listeners: list[Callable[[int], object]] = []
        self.outbox_rows = 0  # outbox rows written into the open group (a rolled-back block's too)
        self._thread = threading.Thread(target=self._run, name=f"ledger-writer:{name}", daemon=True)
        self._thread.start()

    # ---- for the ledger's write paths (all hold the lock) ------------------------------------

    def group(self) -> Group:
        """The open group, beginning one (BEGIN IMMEDIATE) if none is open; noted as this thread's."""
        g = self._open
        if g is None or not self.conn.in_transaction:
            g = self._begin(g)
        mine = self._mine
        if mine.last is not g:
            mine.last = g
            mine.unsettled = [x for x in mine.unsettled if not x.durable]
            mine.unsettled.append(g)
        return g

    def _begin(self, stale: Group | None) -> Group:
        if stale is not None:
            self._fail(stale, "SQLite rolled the transaction back on its own (an I/O or disk-full error)")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.seen(exc)
            raise LedgerError(f"ledger cannot begin a write ({exc}); another process holds the write "
                              "lock, or the file is read-only") from exc
        self._number += 1
        g = self._open = Group(self._number)
        self._opened_at = time.monotonic()
        self._pending = 0
        self.outbox_rows = 0
        self._wake.set()  # the timer starts this group's window
        return g

    @property
    def open_number(self) -> int:
        """The number of the group collecting writes now (or of the next one)."""
        return self._open.number if self._open is not None else self._number + 1

    @property
    def last(self) -> Group:
        """The newest group that ended durable."""
        return self._last

    def check(self, exc: BaseException) -> None:
        """After a failed statement: if SQLite dropped the transaction, the open group is lost."""
        self.seen(exc)
        g = self._open
        if g is not None and not self.conn.in_transaction:
            self._fail(g, f"SQLite rolled the transaction back after: {exc}", exc)

    def seen(self, exc: BaseException) -> None:
        """Tell the listeners of an error on the connection; a listener's own failure is only logged."""
        for listener in list(self.listeners):
            try:
                listener(exc)
            except Exception:
                log.exception("ledger error listener failed")

    def wrote(self, n: int = 1) -> None:
        """A unit of work joined the open group; outside atomic blocks, end the group if it is due."""
        self._pending += n
        if not self.savepoints and self._due():
            self._end(self._open)

    def due(self) -> None:
        """maybe_commit(): end the group now if it is due."""
        if self._open is not None and not self.savepoints and self._due():
            self._end(self._open)

    def end_now(self, *, raise_on_failure: bool = True) -> Group:
        """End the open group now (the caller holds the lock); report on this thread's writes.

        Raises LedgerError if any group this thread wrote into since its last commit was lost,
        even one the timer ended meanwhile: a commit() that returns means every write of the
        caller is on disk. Returns the lost group (raise_on_failure=False), else the one ended.
        """
        if self.savepoints:
            raise LedgerError("commit() inside an atomic() block; leave the block first")
        g = self._open
        if g is not None:
            self._end(g)
        mine = self._mine
        lost = next((x for x in mine.unsettled if x.failed and x.number > self._forgiven), None)
        mine.unsettled = []
        if lost is not None:
            if raise_on_failure:
                raise LedgerError(f"ledger commit of group {lost.number} failed; nothing of it is kept: "
                                  f"{lost.error}") from lost.cause
            return lost
        return g if g is not None else self._last

    def forgive(self) -> None:
        """Every group lost so far is handled by the caller (the line stopped on a resource fault and
        ended the run whose writes they held): commit() stops reporting them to the threads that wrote
        into them. Needed because those threads are pool threads: the next, unrelated task on one of
        them would be told of a loss that was not its own, after its own write had committed."""
        self._forgiven = self._number

    def abandon(self, reason: str) -> Group | None:
        """Roll the open group back on purpose; every receipt of it reads failed with `reason`."""
        if self.savepoints:
            raise LedgerError("rollback() inside an atomic() block; raise out of the block instead")
        g = self._open
        if g is not None:
            with contextlib.suppress(sqlite3.Error):
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            self._fail(g, reason)
            if g in self._mine.unsettled:  # the caller knows: its own next commit() need not say so
                self._mine.unsettled.remove(g)
        return g

    # ---- the writer thread ------------------------------------------------------------------

    def _due(self) -> bool:
        return self._pending >= self.group_max or time.monotonic() - self._opened_at >= self.window_s

    def _run(self) -> None:
        """The timer: end a group once its window has passed and nobody else ended it.

        It sleeps without the lock and takes it only for a group that is due, so a busy writer,
        which ends its own groups at the window, is not made to hand the lock back and forth.
        """
        while True:
            self._wake.clear()
            g = self._open  # read without the lock: only a hint, re-checked under the lock below
            if g is None:
                if self._stop:
                    return
                self._wake.wait()
                continue
            delay = self._opened_at + self.window_s - time.monotonic()
            if delay > 0 and not self._stop:
                self._wake.wait(delay)
                continue
            with self.lock:
                if self._open is g and (self._stop or self._due()):
                    self._end(g)

    def _end(self, g: Group | None) -> None:
        """COMMIT the open group; on failure ROLLBACK it. The one place a group ends."""
        if g is None:
            return
        if self.savepoints:  # cannot happen: atomic blocks hold the lock; kept as a tripwire
            raise LedgerError("a group cannot end inside an atomic() block")
        if not self.conn.in_transaction:
            self._fail(g, "SQLite rolled the transaction back on its own (an I/O or disk-full error)")
            return
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            self._fail(g, f"COMMIT failed: {exc}", exc)
            self.seen(exc)
            return
        self._open, self._last = None, g
        self.commits += 1
        g._end(None)
        rows, self.outbox_rows = self.outbox_rows, 0
        if rows:
            for listener in list(self.outbox_listeners):
                try:
                    listener(rows)
                except Exception:
                    log.exception("ledger outbox listener failed")

    def _fail(self, g: Group, reason: str, cause: BaseException | None = None) -> None:
        self._open = None
        self.failures += 1
        g._end(reason, cause)

    def close(self) -> None:
        """End the open group (commit it), then stop the writer thread (never call it holding the lock)."""
        self._stop = True
        self._wake.set()
        self._thread.join()
