"""The runtime's loops end when they were cancelled, even when a call dropped the cancellation (on
Python 3.11 asyncio.wait_for does when the answer lands with it, CPython gh-86296, and pymodbus awaits
every PLC answer with it), and a task group's teardown cancels a child again while it runs on."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from agent.line.waits import Teardown, forget_leaked_cancel, wait_any


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


def test_a_handled_task_group_failure_does_not_leave_the_task_looking_cancelled() -> None:
    """Python 3.11: a child that fails while the parent waits in the group's __aexit__ cancels the parent
    and the group never takes it back. A run whose failure was handled (a full disk pauses the job and
    the daemon lives on) must not then be ended by the next wait as if it had been cancelled."""
    async def main() -> tuple[int, int]:
        async def fails_later() -> None:
            await asyncio.sleep(0.05)  # the body has finished and the group waits for this one
            raise OSError("disk full")

        me = asyncio.current_task()
        assert me is not None
        before = me.cancelling()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(fails_later())
        except ExceptionGroup:
            pass
        leaked = me.cancelling() - before
        forget_leaked_cancel(me, before)
        await wait_any(asyncio.Event(), None, 0.01)  # raised CancelledError while the request was left
        return leaked, me.cancelling() - before

    leaked, left = asyncio.run(main())
    assert left == 0
    # The expectation rests on CPython's TaskGroup: 3.11 leaves one request (3.12 takes it back itself).
    assert leaked == (1 if sys.version_info < (3, 12) else 0)
