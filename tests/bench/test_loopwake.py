"""bench.loopwake and bench.threadcpu: the line benchmark's wakeup causes and per-thread CPU.

Why tested: line.loop_wakeups_per_s tells the agent's authors which kind of wakeup to remove, so a
worker's call_soon_threadsafe must not be counted as a timer, nor a socket as a worker; and a busy
thread's CPU must land under its own name. Counts and CPU are compared with what each test caused,
never with a clock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from bench.loopwake import AGENT_POOL, Counts, LoopProbe
from bench.threadcpu import Period, Snapshot

HANG_S = 30.0
T = TypeVar("T")


def _run(probe: LoopProbe, coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with asyncio.Runner(loop_factory=probe.new_loop) as runner:
        return runner.run(asyncio.wait_for(coro_fn(), HANG_S))


def _when_asleep(probe: LoopProbe, action: Callable[[], object]) -> None:
    """From another thread: wait until the loop sleeps in select(), then wake it with `action`. Without
    the wait the action may land before the loop sleeps, and the loop never sleeps at all."""
    sel = probe.selector
    assert sel is not None

    def wait_then_act() -> None:
        deadline = time.monotonic() + HANG_S
        while not sel.asleep and time.monotonic() < deadline:
            time.sleep(0.001)
        action()

    threading.Thread(target=wait_then_act, daemon=True).start()


def test_a_worker_threads_wakeup_is_counted_as_a_thread_wakeup() -> None:
    probe = LoopProbe()

    async def scenario() -> Counts:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        before = probe.counts()
        _when_asleep(probe, lambda: loop.call_soon_threadsafe(woken.set))
        await woken.wait()
        return probe.counts() - before

    seen = _run(probe, scenario)
    assert seen.thread >= 1
    assert seen.io == 0 and seen.timer == 0


def test_a_readable_socket_is_counted_as_io() -> None:
    probe = LoopProbe()
    a, b = socket.socketpair()

    async def scenario() -> Counts:
        loop = asyncio.get_running_loop()
        before = probe.counts()
        _when_asleep(probe, lambda: b.send(b"x"))
        assert await loop.sock_recv(a, 1) == b"x"
        return probe.counts() - before

    try:
        a.setblocking(False)
        seen = _run(probe, scenario)
    finally:
        a.close()
        b.close()
    assert seen.io >= 1
    assert seen.timer == 0


def test_sleeps_are_counted_as_timer_wakeups() -> None:
    probe = LoopProbe()

    async def scenario() -> Counts:
        before = probe.counts()
        for _ in range(5):
            await asyncio.sleep(0.001)
        return probe.counts() - before

    seen = _run(probe, scenario)
    assert seen.timer >= 5
    assert seen.io == 0 and seen.thread == 0
    assert seen.wakeups == seen.timer


def test_to_thread_runs_in_the_renamed_counted_pool_and_its_cpu_is_the_agents() -> None:
    probe = LoopProbe()
    names: list[str] = []

    def burn() -> None:
        names.append(threading.current_thread().name)
        t_end = Snapshot.take([]).cpu[threading.get_native_id()] + 0.2
        while Snapshot.take([]).cpu[threading.get_native_id()] < t_end:
            sum(range(10_000))

    async def scenario() -> Period:
        a = Snapshot.take([])
        await asyncio.to_thread(burn)
        return Period.between(a, Snapshot.take([]))

    period = _run(probe, scenario)
    assert names and names[0].startswith(f"{AGENT_POOL}_")
    assert probe.counts().pool[burn.__qualname__] == 1  # named through to_thread's partial(context.run)
    pool = dict(period.threads).get(AGENT_POOL, 0.0)
    assert pool >= 0.2
    assert AGENT_POOL not in dict(period.foreign)
