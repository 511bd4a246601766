"""The runtime's loops end when they were cancelled, even when a call dropped the cancellation (on
Python 3.11 asyncio.wait_for does when the answer lands with it, CPython gh-86296, and pymodbus awaits
every PLC answer with it), and a task group's teardown cancels a child again while it runs on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.line.waits import Teardown, wait_any


def test_a_loop_whose_cancellation_was_dropped_ends_at_its_next_wait() -> None:
    async def main() -> None:
        stop = asyncio.Event()
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        answered: list[int] = []

        async def poller() -> None:
            answered.append(await asyncio.wait_for(answer, 30))  # as pymodbus awaits a PLC's answer
            while not stop.is_set():
                await wait_any(stop, None, 0.05)

        task = asyncio.create_task(poller())
        await asyncio.sleep(0)
        answer.set_result(7)  # the answer and the cancellation in one turn of the loop
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=30)  # a hang detector
        assert task in done and task.cancelled()
        assert not stop.is_set()

    asyncio.run(main())


def test_teardown_cancels_a_child_again_while_it_runs_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> list[str]:
        seen: list[str] = []

        async def stubborn() -> None:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    seen.append("cancelled")
                    if len(seen) > 1:
                        raise  # the second one ends it

        task = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        task.cancel()
        teardown = Teardown("test group", every_s=0.05)
        teardown.begin([task])
        try:
            done, _ = await asyncio.wait({task}, timeout=30)  # a hang detector
        finally:
            teardown.end()
        assert task in done and task.cancelled()
        return seen

    with caplog.at_level(logging.ERROR, logger="agent.line.waits"):
        assert asyncio.run(main()) == ["cancelled", "cancelled"]
    assert any("test group: stubborn still running" in r.getMessage() for r in caplog.records)
