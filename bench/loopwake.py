"""How often the runtime's asyncio loop wakes: a selector that counts its own returns.

Why count at the selector: every turn of an asyncio selector loop ends in one select() call, and the
loop passes a timeout of 0 when callbacks are already waiting to run. A call with a non-zero timeout
(or none) is the loop having run out of work and gone to sleep, so each such return is one wakeup; the
events returned say why it woke:

- io: a socket, pty or pipe of a device or the broker became readable or writable;
- thread: only the loop's self-pipe, written by call_soon_threadsafe from a worker thread (a decode
  finished, a ledger write committed, a serial chunk arrived);
- timer: nothing at all, so a call_later deadline fell due (asyncio.sleep, wait_for, a poll period).

Timer wakeups are the short polls issue 10 asks to be rid of; io and thread wakeups are the events the
loop exists to serve. The extra Python call per select() costs about a microsecond, under 0.001 of a
core at the rates measured.

The runtime's default executor gets its own thread-name prefix here (same size as asyncio's own):
the simulators' loop in the same process keeps asyncio's "asyncio_N" names, so bench.threadcpu can tell
the camera simulator's rendering threads from the agent's to_thread workers. It also counts what is
sent to it by function: every to_thread call ends in one call_soon_threadsafe, so these counts say where
many of the "thread" wakeups come from.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import selectors
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

AGENT_POOL = "agent-pool"  # thread-name prefix of the runtime loop's default executor


class CountingSelector(selectors.EpollSelector):
    """The loop's selector, counting its turns and its wakeups by cause."""

    def __init__(self) -> None:
        super().__init__()
        self.turns = 0  # every select(): one turn of the loop
        self.io = 0
        self.thread = 0
        self.timer = 0
        self.wake_fd = -1  # the loop's self-pipe; set once the loop is built
        # True while the loop is in a select() that may sleep: whatever wakes it from now on is counted
        # as a wakeup (tests/bench wait for it before they cause one). A plain flag, not an Event: the
        # loop turns thousands of times a second and the probe must cost next to nothing.
        self.asleep = False

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        sleeps = timeout is None or timeout > 0
        self.asleep = sleeps
        ready = super().select(timeout)
        self.asleep = False
        self.turns += 1
        if sleeps:
            if not ready:
                self.timer += 1
            elif all(key.fd == self.wake_fd for key, _ in ready):
                self.thread += 1
            else:
                self.io += 1
        return ready


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting the functions run in it (to_thread, run_in_executor)."""

    def __init__(self) -> None:
        super().__init__(thread_name_prefix=AGENT_POOL)
        self.calls: Counter[str] = Counter()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls[_name(fn)] += 1
        return super().submit(fn, *args, **kwargs)


def _name(fn: Callable[..., Any]) -> str:
    """to_thread wraps the function as partial(context.run, func, ...): name the func."""
    while isinstance(fn, functools.partial):
        inner = fn.args[0] if fn.args and _is_context_run(fn.func) else fn.func
        fn = inner
    return getattr(fn, "__qualname__", None) or repr(fn)


def _is_context_run(fn: object) -> bool:
    return isinstance(getattr(fn, "__self__", None), contextvars.Context)


@dataclass(frozen=True)
class Counts:
    """The selector's and the executor's counters at one moment; subtract two for a period."""

    turns: int
    io: int
    thread: int
    timer: int
    pool: Counter[str] = field(default_factory=Counter)  # functions run in the default executor

    @property
    def wakeups(self) -> int:
        return self.io + self.thread + self.timer

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.turns - other.turns, self.io - other.io, self.thread - other.thread,
                      self.timer - other.timer, self.pool - other.pool)


class LoopProbe:
    """Builds the loop the runtime runs on (asyncio.Runner(loop_factory=probe.new_loop)) and reads it."""

    def __init__(self) -> None:
        self.selector: CountingSelector | None = None
        self.executor: CountingExecutor | None = None

    def new_loop(self) -> asyncio.AbstractEventLoop:
        selector = CountingSelector()
        loop = asyncio.SelectorEventLoop(selector)
        # A new loop has registered one file only: its self-pipe's read end.
        selector.wake_fd = next(iter(selector.get_map().values())).fd
        self.executor = CountingExecutor()
        loop.set_default_executor(self.executor)
        self.selector = selector
        return loop

    def counts(self) -> Counts:
        s = self.selector
        if s is None:
            return Counts(0, 0, 0, 0)
        pool = Counter(self.executor.calls) if self.executor is not None else Counter[str]()
        return Counts(s.turns, s.io, s.thread, s.timer, pool)
