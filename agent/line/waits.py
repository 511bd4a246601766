"""The waits the runtime's loops share, and a bounded way out of its task groups.

Why `end_if_cancelled`: on Python 3.11 asyncio.wait_for returns its awaitable's result and drops a
cancellation that lands as the awaitable completes (CPython gh-86296). pymodbus awaits every PLC answer
with wait_for, so a task cancelled inside a PLC call (the PLC cycle, a verify station's poll, a belt
command) can go on as if it had not been: a loop that ends only on its stop event then runs for ever,
and the task group that cancelled it waits for it without bound. That hung the daemon after a crash,
heartbeats still going and the belt still running (tests/line/test_failsafe.py). The task still counts
the request (Task.cancelling), so a loop that looks at it ends as it was asked to. Our own drivers wait
with asyncio.timeout (drivers/transport.py).

Why `Teardown`: a task group waits for every child, however often it is cancelled itself. So when its
body is left by an exception or a cancellation, the runtime also sets the events its children stop on,
and a child still running RECANCEL_S later is named in the log and cancelled again (a second
cancellation ends a task whose first one was lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_S = 5.0  # a child of a task group that is being torn down: cancelled again this often


def end_if_cancelled() -> None:
    """CancelledError when this task was asked to cancel and is still running (the request was lost)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        log.warning("task %s: its cancellation was lost in a call (CPython gh-86296); ending now", task.get_name())
        raise asyncio.CancelledError


def forget_leaked_cancel(task: asyncio.Task[Any], before: int) -> None:
    """Take back a cancellation request a task group left on `task` although it has ended.

    Why: on Python 3.11 a TaskGroup whose child fails while the parent already waits in __aexit__
    cancels the parent and never uncancels it (it uncancels only at the top of __aexit__; 3.12 moved
    it). A run whose failure was handled (a full disk: the job is paused, the daemon lives on) then
    looked cancelled to `end_if_cancelled`, and the daemon ended with a traceback. Call it only where
    the group's exception was caught: a real cancellation would have propagated as CancelledError."""
    while task.cancelling() > before:
        task.uncancel()


async def wait_any(stop: asyncio.Event, other: asyncio.Event | None, timeout_s: float,
                   tasks: Iterable[asyncio.Task[Any]] = ()) -> None:
    """Until `stop` or `other` is set, one of `tasks` ends, or `timeout_s` has passed (a loop that also
    polls). The tasks are only watched, never cancelled here."""
    end_if_cancelled()
    waiters = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waiters.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait([*waiters, *tasks], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def bounded(aw: Awaitable[object], limit_s: float, what: str) -> None:
    """`aw` on the way out, given at most `limit_s`; one that takes longer is logged and left behind
    (the daemon still stops; closing a device must not keep it from exiting)."""
    try:
        async with asyncio.timeout(limit_s):
            await aw
    except TimeoutError:
        log.error("%s: not done within %.0f s on the way out; left behind", what, limit_s)


class Teardown:
    """A task group's children after its body was left by an exception or a cancellation: while one is
    still running, it is named in the log and cancelled again every RECANCEL_S."""

    def __init__(self, what: str, every_s: float = RECANCEL_S) -> None:
        self.what = what
        self.every_s = every_s
        self._watch: asyncio.Task[None] | None = None

    def begin(self, tasks: Iterable[asyncio.Task[Any]]) -> None:
        """The group's body was left by an exception or a cancellation (its stop events are set)."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._recancel(list(tasks)),
                                                                 name=f"teardown:{self.what}")

    def end(self) -> None:
        """The group has ended (call in a finally around it)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def _recancel(self, tasks: list[asyncio.Task[Any]]) -> None:
        waited = 0.0
        while left := [t for t in tasks if not t.done()]:
            await asyncio.sleep(self.every_s)
            waited += self.every_s
            left = [t for t in left if not t.done()]
            if left:
                log.error("%s: %s still running %.0f s after the cancellation; cancelled again", self.what,
                          ", ".join(t.get_name() for t in left), waited)
                for t in left:
                    t.cancel()
