"""The verify station's one ledger writer: a thread that records verdicts and commits them in groups.

Why a thread of its own: a ledger commit is an fsync, and while any thread commits it holds the ledger
lock; on a line PC under load that is tens to hundreds of milliseconds. At 2,000 items/min an item
passes the camera every 30 ms, so a station that waited for its own writes (or for the lock) fell
behind, judged items unread and stopped the line. Here the event loop only hands work over (a
`queue.SimpleQueue` put, which never blocks) and carries on with the next item; this thread writes
everything that is queued, commits once for all of it (group commit falls out naturally: the longer
one commit takes, the more verdicts the next one carries), and only then reports each result back
to the loop in submission order. So "reported final after its commit" holds for every verdict, and
the loop never waits on an fsync.

How long a group collects: from its first write, up to `hold_s` (verify.commit_ms, default 100 ms),
and never past the earliest `by` a write was submitted with (a good verdict under positive release
must be committed in time for its release: agent/verify/station.py says when), nor sooner than
`min_interval_s` after the last commit. At 2,000 items/min a 20 ms spacing still gave one commit per
item (an item comes every 30 ms); holding for 100 ms puts three or four items in one fsync, which
halved this thread's CPU and the ledger lock's time held for the feeder. Nothing is acted on earlier
for it: a reject is fired before its verdict is written (the station's rule), a good verdict's report
and release wait for its commit as before, only later.

The results go back to the loop as one callback per group (`call_soon_threadsafe` wakes the loop
through its self-pipe: one wake-up per group, not one per write), run there in submission order.

A write that raises reports its exception; a commit that fails reports the commit's error for every
write of the group (none of them is durable; the ledger rolled the group back, and so does it when
its own timer ended the group and that commit failed: `commit()` says so to the thread that wrote).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.ledger import Ledger, LedgerError

log = logging.getLogger(__name__)

Done = Callable[[Any, BaseException | None], None]  # (result, error), called on the loop after the commit


@dataclass(frozen=True, slots=True)
class _Work:
    write: Callable[[], Any]
    done: Done | None
    loop: asyncio.AbstractEventLoop
    by: float  # monotonic time its commit should start by


class Recorder:
    def __init__(self, ledger: Ledger, *, name: str = "verify-recorder", max_group: int = 512,
                 min_interval_s: float | None = None, hold_s: float = 0.1) -> None:
        self.ledger = ledger
        self.max_group = max_group
        # At most one commit of ours per interval (default: the ledger's group window, at least 20 ms):
        # every fsync occupies the one writer connection the feeder needs to keep the coder's FIFO
        # full, so fewer, larger groups leave it free.
        self.min_interval_s = max(ledger.group_window_s, 0.02) if min_interval_s is None else min_interval_s
        self.hold_s = max(hold_s, self.min_interval_s)  # how long a write may wait for its commit
        self.commits = 0  # commits this recorder made (each covers one or more writes)
        self.written = 0
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._closed = False
        self._urgent = threading.Event()  # a write due before `_due` was queued (or close())
        self._due = math.inf  # when the group the thread holds is due; inf while it writes

    def submit(self, write: Callable[[], Any], done: Done | None = None, *, by: float | None = None) -> None:
        """Queue `write` (runs in the writer thread); `done` gets its result on the loop once durable.
        `by`: the monotonic time its commit must start by (default: `hold_s` from now)."""
        if self._closed:
            raise LedgerError(f"{self._thread.name}: submit after close; the verdict would be lost")
        if not self._started:
            self._started = True
            self._thread.start()
        hold = time.monotonic() + self.hold_s
        work = _Work(write, done, asyncio.get_running_loop(), hold if by is None else min(by, hold))
        self._queue.put(work)
        if work.by < self._due:  # due before the group the thread is holding: wake it
            self._urgent.set()

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed and its `done` has run (at once: the
        flush itself asks for its commit now)."""
        if not self._started:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(_: Any, error: BaseException | None) -> None:
            if not fut.done():
                fut.set_result(None) if error is None else fut.set_exception(error)

        self.submit(lambda: None, settle, by=0.0)
        await fut

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after it has written what is queued (callbacks to a closed loop are dropped)."""
        self._closed = True
        if self._started:
            self._queue.put(None)
            self._urgent.set()
            self._thread.join(timeout_s)

    # ---- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        last_commit = 0.0
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            by, stop = first.by, False
            while not stop and len(group) < self.max_group:
                # Sleep until the group is due, woken early only by a write due sooner (submit compares
                # its `by` with `_due`): a wake-up per write cost more than the write's own statements.
                self._urgent.clear()
                self._due = max(by, last_commit + self.min_interval_s)
                by, stop = self._drain(group, by)  # what was queued before `_due` was set
                due = max(by, last_commit + self.min_interval_s)
                self._due = due
                left = due - time.monotonic()
                if stop or left <= 0:
                    break
                self._urgent.wait(left)
            self._due = math.inf  # while writing, a submit need not wake anyone; the next group starts afresh
            self._write_group(group)
            last_commit = time.monotonic()
            if stop:
                return

    def _drain(self, group: list[_Work], by: float) -> tuple[float, bool]:
        """Move what is queued into `group`: (the earliest `by`, whether close() was asked)."""
        while len(group) < self.max_group:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return by, True
            group.append(nxt)
            by = min(by, nxt.by)
        return by, False

    def _write_group(self, group: list[_Work]) -> None:
        results: list[tuple[_Work, Any, BaseException | None]] = []
        for work in group:
            try:
                results.append((work, work.write(), None))
            except Exception as exc:  # noqa: BLE001 -- handed to its caller on the loop; the thread must live
                results.append((work, None, exc))
        try:
            self.ledger.commit()
            self.commits += 1
        except LedgerError as exc:  # the ledger already rolled that group back; a rollback here would
            # throw away the next group, other threads' writes
            log.error("%s: commit of %d verdict writes failed: %s", self._thread.name, len(group), exc)
            results = [(w, None, exc) for w, _, _ in results]
        self.written += len(group)
        calls: dict[asyncio.AbstractEventLoop, list[tuple[Done, Any, BaseException | None]]] = {}
        for work, result, error in results:
            if work.done is None:
                if error is not None:
                    log.error("%s: ledger write failed: %s", self._thread.name, error)
                continue
            calls.setdefault(work.loop, []).append((work.done, result, error))
        for loop, batch in calls.items():
            try:
                loop.call_soon_threadsafe(_report, batch)
            except RuntimeError:  # the loop is closed: nobody is left to tell
                log.warning("%s: results of %d ledger writes dropped, their loop is closed",
                            self._thread.name, len(batch))


def _report(batch: list[tuple[Done, Any, BaseException | None]]) -> None:
    """On the loop: each write's `done`, in submission order; one that raises does not stop the rest."""
    for done, result, error in batch:
        try:
            done(result, error)
        except Exception:
            log.exception("a verdict report failed")
