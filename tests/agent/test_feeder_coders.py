"""The feeder against every coder (tests/agent/coders.py), each on its real driver and simulator over TCP.

What each coder must show, whatever its CoderKind: a panel stop costs ONE reconcile and at most the
FIFO's depth in doubt, and the line prints on to the job's target. A coder that cannot confirm a print
is fed too: there the camera's read proves each print (tests/agent/coders.py Camera).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest

from agent.feeder import Feeder, FeederState, ReconcileReason
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import Ledger
from drivers.printers.base import PrinterError
from drivers.printers.fifo import CoderKind
from tests.agent.coders import (
    CODERS,
    Camera,
    PushWatch,
    check_ledger_against_prints,
    ledger_states,
    may_pass,
    press_start,
    render,
    serve,
)
from tests.helpers import seed_codes

CAPACITY = 8


def make_job(ledger: Ledger, target: int, pool: int) -> int:
    seed_codes(ledger, [f"{i:07d}" for i in range(pool)], package_id="pkg")
    job = create_job(ledger, JobSpec(name="j", gtin="09506000134352", product_name="Water", lot="L1",
                                     target_qty=target))
    start_job(ledger, job)
    return job


async def until(check: Callable[[], bool], limit_s: float = 60.0, state: Callable[[], object] = str) -> None:
    """A hang detector: on timeout it says what `state` shows, not just that time ran out."""
    try:
        async with asyncio.timeout(limit_s):
            while not check():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"no progress in {limit_s:.0f} s: {state()}") from None


@pytest.mark.parametrize("name", sorted(CODERS))
def test_a_panel_stop_costs_one_reconcile_and_at_most_the_fifo_depth(db_path: Path, name: str) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=60, pool=400)
        served = await serve(CODERS[name], CAPACITY)
        sim, driver = served.sim, served.driver
        await driver.connect()
        f = Feeder(ledger, driver, coder="c1", job=job, level="item", render=render, poll_s=0.005,
                   retry_s=0.01, max_retry_s=0.1, line_rate_per_min=60.0)
        watch = PushWatch(driver)
        task = asyncio.create_task(f.run())

        stopped_at = [float("-inf")]
        camera = Camera(ledger, sim) if not f.can_confirm else None

        async def line() -> None:  # products pass every few ms; the operator restarts a stopped coder
            while True:
                await asyncio.sleep(0.006)
                # A hand on the panel takes a moment: the drivers on main that cannot see a stop undone
                # at once (no depth in their protocol, see coders.NO_DEPTH_REPORT) get to see it.
                if asyncio.get_running_loop().time() - stopped_at[0] > 0.3:
                    press_start(sim)
                    if camera is not None and f.open:
                        # The Hitachi buffer prints again only after the host's restart (RX manual
                        # 5.9.3-2): the print station starts a primed coder, as on the line.
                        with suppress(PrinterError):
                            await driver.start()
                # Products come while the coder holds codes of ours (a line's PLC holds the belt while a
                # coder is being refilled: a Leibinger faults on a product with its FIFO empty, 5043).
                if f.open and may_pass(ledger, sim, driver.capabilities.kind, watch.busy):
                    sim.trigger(1)
                if camera is not None:
                    camera.look()

        conveyor = asyncio.create_task(line())

        def seen() -> str:
            counts = {k: len(v) for k, v in ledger_states(ledger, job).items()}
            return (f"feeder {f.state} open {f.open} reports {[r.reason for r in f.reports]}, ledger {counts}, "
                    f"the coder printed {len(sim.printed)}, conveyor {'done' if conveyor.done() else 'running'}")
        try:
            # The stop comes once the coder has printed and holds records of ours.
            await until(lambda: len(ledger_states(ledger, job).get("printed", ())) >= 10 and f.open >= 1, state=seen)
            before = len(f.reports)
            at_stop = len(ledger_states(ledger, job).get("printed", ()))
            sim.stop_printing()
            stopped_at[0] = asyncio.get_running_loop().time()
            # The line resumes: five more prints confirmed. What the stop cost is what was settled until then.
            await until(lambda: len(ledger_states(ledger, job).get("printed", ())) >= min(60, at_stop + 5), state=seen)
            after = f.reports[before:]
            await asyncio.wait_for(task, 30)
        finally:
            conveyor.cancel()
            with suppress(asyncio.CancelledError):
                await conveyor
            if not task.done():
                f.stop()
                with suppress(Exception):
                    await asyncio.wait_for(task, 20)
            await driver.close()
            await sim.close()
        assert f.state is FeederState.DONE, "the line did not print on to the job's target"
        by_state = check_ledger_against_prints(ledger, job, sim.printed)
        if f.can_confirm:
            assert len(by_state["printed"]) == 60
        else:  # codes a reconcile put in doubt and the camera later proved count too: the job may overshoot
            assert len(by_state["printed"]) >= 60
        # A FIFO coder's stop clears its queue: one reconcile settles it. A single slot keeps its code
        # over a stop: nothing to settle at all.
        assert len(after) <= 1, f"one stop, {len(after)} reconciles: {[r.reason for r in after]}"
        if driver.capabilities.kind is not CoderKind.SINGLE_SLOT:
            assert len(after) == 1, "a stop that cleared the FIFO was not reconciled"
        for report in after:
            assert report.reason is not ReconcileReason.STARTUP
            assert len(report.in_doubt) + len(report.returned) <= f.target_depth
        ledger.close()

    asyncio.run(asyncio.wait_for(body(), 90))
