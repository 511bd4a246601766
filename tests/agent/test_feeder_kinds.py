"""What the feeder does per kind of coder and per capability, on real drivers and simulators over TCP:
a single slot gets the next code only once the last is confirmed; a link slower than the line raises
an alarm (and the runtime does not start the conveyor); a proven flush returns codes to the pool; a
Modbus marker that stops answering for a while is a fault the feeder reconciles from, not its end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from contextlib import suppress
from pathlib import Path

from rich.console import Console

from agent.feeder import Alarm, Feeder, FeederState, ReconcileReason
from agent.ledger import CodeState, Ledger
from drivers.printers.base import Printer
from drivers.printers.fifo import CoderKind
from drivers.sim.faults import SimFault
from tests.agent.coders import (
    CODERS,
    check_ledger_against_prints,
    journal_counts,
    ledger_states,
    may_pass,
    press_start,
    render,
    serve,
)
from tests.agent.test_feeder_coders import make_job, until


def single_slot(driver: Printer, limit: float | None) -> None:
    """Make a driver on main declare what the single-slot rewrite will: one record, a rate limit."""
    driver.capabilities = dataclasses.replace(driver.capabilities, kind=CoderKind.SINGLE_SLOT, fifo_capacity=1,
                                              max_items_per_min=limit)


def test_a_single_slot_gets_the_next_code_only_once_the_last_is_confirmed(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=30, pool=200)
        served = await serve(CODERS["videojet_wsi"], 4)
        sim, driver = served.sim, served.driver
        single_slot(driver, 6000.0)
        await driver.connect()
        f = Feeder(ledger, driver, coder="c1", job=job, level="item", render=render, poll_s=0.003,
                   retry_s=0.01, line_rate_per_min=600.0)
        assert f.target_depth == 1
        task = asyncio.create_task(f.run())
        most = 0
        try:
            while not task.done():
                press_start(sim)
                if may_pass(ledger, sim, CoderKind.SINGLE_SLOT):
                    sim.trigger(1)
                most = max(most, len(ledger_states(ledger, job).get("sent", ())))
                await asyncio.sleep(0.005)
            await task
        finally:
            await driver.close()
            await sim.close()
        assert most <= 1, "a single slot held two codes of ours at once"
        assert f.state is FeederState.DONE
        assert len(check_ledger_against_prints(ledger, job, sim.printed)["printed"]) == 30
        ledger.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_a_line_faster_than_the_link_raises_an_alarm_and_nothing_is_sent(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=30, pool=200)
        served = await serve(CODERS["videojet_wsi"], 4)
        single_slot(served.driver, 300.0)
        await served.driver.connect()
        f = Feeder(ledger, served.driver, coder="c1", job=job, level="item", render=render, poll_s=0.003,
                   line_rate_per_min=600.0)
        task = asyncio.create_task(f.run())
        try:
            await until(lambda: Alarm.RATE_LIMIT in f.alarms.active)
            assert f.state is FeederState.WAITING
            assert not ledger_states(ledger, job).get("sent")
            f.stop()
            await asyncio.wait_for(task, 20)
        finally:
            await served.driver.close()
            await served.sim.close()
        ledger.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_the_runtime_refuses_to_start_the_conveyor_faster_than_a_coder_can_be_fed(tmp_path: Path) -> None:
    from agent.demo import prepare
    from agent.line.runtime import LineRuntime

    with Path(os.devnull).open("w") as sink:
        cfg = prepare(tmp_path, 10, Console(file=sink))
    served_driver = CODERS["videojet_wsi"].make_driver("tcp://127.0.0.1:1", 4)
    single_slot(served_driver, 300.0)
    ledger = Ledger(cfg.resolve(cfg.storage.ledger))
    try:
        runtime = LineRuntime(cfg.model_copy(update={"mqtt": None}), ledger,
                              overrides={("coders", "coder1"): served_driver})

        async def scenario() -> None:
            job_stop = asyncio.Event()
            conveyor = asyncio.create_task(runtime.belt.conveyor(job_stop))
            await until(lambda: any(a.key == "line_rate" for a in runtime.board.active))
            assert not runtime.line_running
            job_stop.set()
            await asyncio.wait_for(conveyor, 10)

        asyncio.run(scenario())
        alarm = next(a for a in runtime.board.active if a.key == "line_rate")
        assert "line_rate_per_min" in alarm.detail
    finally:
        ledger.close()


def test_a_proven_flush_returns_codes_to_the_pool_and_they_print_once_later(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=20, pool=200)
        served = await serve(CODERS["modbus_marker"], 8)
        sim, driver = served.sim, served.driver
        await driver.connect()
        f = Feeder(ledger, driver, coder="c1", job=job, level="item", render=render, poll_s=0.003)
        task = asyncio.create_task(f.run())  # the coder is never started: the FIFO is primed, nothing prints
        try:
            await until(lambda: f.open == 8)
            f.stop()
            await asyncio.wait_for(task, 20)
            report = f.reports[-1]
            assert (report.reason, len(report.returned), report.in_doubt) == (ReconcileReason.SHUTDOWN, 8, [])
            back = set(report.returned)
            assert all(ledger.state_of(c) is CodeState.RETURNED for c in back)
            f2 = Feeder(ledger, driver, coder="c1", job=job, level="item", render=render, poll_s=0.003)
            task = asyncio.create_task(f2.run())
            while not task.done():
                press_start(sim)
                sim.trigger(1)
                await asyncio.sleep(0.004)
            await task
        finally:
            await driver.close()
            await sim.close()
        by_state = check_ledger_against_prints(ledger, job, sim.printed)
        assert len(by_state["printed"]) == 20
        assert back <= by_state["printed"], "returned codes went back to the pool and printed"
        assert all(n == 2 for c, n in journal_counts(ledger, "codes.sent").items() if c in back)
        ledger.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_a_marker_that_stops_answering_under_load_is_a_fault_not_the_feeders_end(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=60, pool=400)
        served = await serve(CODERS["modbus_marker"], 8)
        sim, driver = served.sim, served.driver
        await driver.connect()
        f = Feeder(ledger, driver, coder="c1", job=job, level="item", render=render, poll_s=0.003,
                   retry_s=0.01, max_retry_s=0.05)
        task = asyncio.create_task(f.run())

        async def line() -> None:
            while True:
                press_start(sim)
                sim.trigger(1)
                await asyncio.sleep(0.005)

        conveyor = asyncio.create_task(line())
        try:
            await until(lambda: len(ledger_states(ledger, job).get("printed", ())) >= 10)
            sim.inject(SimFault.SILENCE, 6)  # six requests in a row never answered: reads time out
            await until(lambda: Alarm.COMMUNICATION in f.alarms.active)
            await asyncio.wait_for(task, 40)
        finally:
            conveyor.cancel()
            with suppress(asyncio.CancelledError):
                await conveyor
            await driver.close()
            await sim.close()
        assert f.state is FeederState.DONE
        assert Alarm.COMMUNICATION not in f.alarms.active
        assert len(check_ledger_against_prints(ledger, job, sim.printed)["printed"]) == 60
        ledger.close()

    asyncio.run(asyncio.wait_for(body(), 90))
