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

A write that raises reports its exception; a commit that fails reports the commit's error for every
write of the group (none of them is durable; the ledger rolled the group back, and so does it when
its own timer ended the group and that commit failed: `commit()` says so to the thread that wrote).
"""

from __future__ import annotations

import asyncio
import logging
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


class Recorder:
    def __init__(self, ledger: Ledger, *, name: str = "verify-recorder", max_group: int = 512,
                 min_interval_s: float | None = None) -> None:
        self.ledger = ledger
        self.max_group = max_group
        # At most one commit of ours per interval (default: the ledger's group window, at least 20 ms):
        # every fsync occupies the one writer connection the feeder needs to keep the coder's FIFO
        # full, so fewer, larger groups leave it free; verdicts become final that much later, which
        # only delays the reports (packing), never the reject.
        self.min_interval_s = max(ledger.group_window_s, 0.02) if min_interval_s is None else min_interval_s
        self.commits = 0  # commits this recorder made (each covers one or more writes)
        self.written = 0
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._closed = False

    def submit(self, write: Callable[[], Any], done: Done | None = None) -> None:
        """Queue `write` (runs in the writer thread); `done` gets its result on the loop once durable."""
        if self._closed:
            raise LedgerError(f"{self._thread.name}: submit after close; the verdict would be lost")
        if not self._started:
            self._started = True
            self._thread.start()
        self._queue.put(_Work(write, done, asyncio.get_running_loop()))

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed and its `done` has run."""
        if not self._started:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(_: Any, error: BaseException | None) -> None:
            if not fut.done():
                fut.set_result(None) if error is None else fut.set_exception(error)

        self.submit(lambda: None, settle)
        await fut

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after it has written what is queued (callbacks to a closed loop are dropped)."""
        self._closed = True
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout_s)

    # ---- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        last_commit = 0.0
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            due = last_commit + self.min_interval_s
            while len(group) < self.max_group:
                try:
                    nxt = self._queue.get(timeout=max(0.0, due - time.monotonic())) \
                        if time.monotonic() < due else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            self._write_group(group)
            last_commit = time.monotonic()
            if stop:
                return

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
        for work, result, error in results:
            if work.done is None:
                if error is not None:
                    log.error("%s: ledger write failed: %s", self._thread.name, error)
                continue
            try:
                work.loop.call_soon_threadsafe(work.done, result, error)
            except RuntimeError:  # the loop is closed: nobody is left to tell
                log.warning("%s: result of a ledger write dropped, its loop is closed", self._thread.name)
