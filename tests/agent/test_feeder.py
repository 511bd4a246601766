"""The FIFO feeder end to end against real coder simulators on real links, with a real ledger file.

Each scenario checks the same invariants (`check_invariants`): no code pushed twice, the simulator
printed no text twice, every code the ledger calls printed was printed by the simulator, and every
code the simulator printed is printed or in doubt in the ledger (never sent-and-forgotten).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.feeder import Alarm, AlarmEvent, Feeder, ReconcileReason, prove_printed, void_in_doubt
from agent.feeder_store import coder_of
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import CodeState, Ledger
from drivers.printers.base import Printer
from drivers.printers.modbus_marker import ModbusMarker, ModbusMarkerSettings
from drivers.sim.modbus_marker import ModbusMarkerSim
from tests.conftest import free_port
from tests.helpers import seed_codes

ROOT = Path(__file__).resolve().parents[2]


def render(code: str) -> str:
    return f"C{code}"


def unrender(text: str) -> str:
    return text[1:]


def make_job(ledger: Ledger, target: int, pool: int, name: str = "j1") -> int:
    seed_codes(ledger, [f"{i:07d}" for i in range(pool)], package_id=f"pkg-{name}")
    job = create_job(ledger, JobSpec(name=name, gtin="09506000134352", product_name="Water", lot="L1",
                                     target_qty=target))
    start_job(ledger, job)
    return job


def states(ledger: Ledger, job: int) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with ledger.lock:
        for code, state in ledger.conn.execute("SELECT code, state FROM codes WHERE job = ?", (job,)):
            out.setdefault(state, set()).add(code)
    return out


def check_invariants(ledger: Ledger, job: int, sim_printed: list[str]) -> dict[str, set[str]]:
    printed_codes = [unrender(t) for t in sim_printed]
    dupes = [c for c, n in Counter(printed_codes).items() if n > 1]
    assert not dupes, f"the simulator printed these codes twice: {dupes[:5]}"
    sent_events: Counter[str] = Counter()
    with ledger.lock:
        for (payload,) in ledger.conn.execute("SELECT payload FROM events WHERE kind = 'codes.sent'"):
            sent_events.update(json.loads(payload)["codes"])
    assert not [c for c, n in sent_events.items() if n > 1], "a code was sent twice"
    by_state = states(ledger, job)
    ledger_printed = by_state.get("printed", set())
    in_doubt = by_state.get("in_doubt", set()) | by_state.get("voided", set())
    assert ledger_printed <= set(printed_codes), (
        f"ledger says printed but the coder never printed: {sorted(ledger_printed - set(printed_codes))[:5]}"
    )
    unexplained = set(printed_codes) - ledger_printed - in_doubt
    assert not unexplained, f"the coder printed codes the ledger does not count: {sorted(unexplained)[:5]}"
    for code in sent_events:
        assert code in ledger_printed | in_doubt | by_state.get("sent", set())
    return by_state


@dataclass
class Line:
    """A coder simulator, the driver talking to it, and an 'operator' who restarts it after stops."""

    printer: Printer
    sim: ModbusMarkerSim
    settings: ModbusMarkerSettings

    @property
    def printed(self) -> list[str]:
        return self.sim.printed


@asynccontextmanager
async def modbus_line(*, rate: float, slots: int = 8, operator: bool = True) -> AsyncIterator[Line]:
    settings = ModbusMarkerSettings(port=free_port(), slots=slots, text_registers=8, timeout_s=0.3)
    sim = ModbusMarkerSim(settings, rate_per_s=rate)
    await sim.start()
    printer = ModbusMarker(settings)
    await printer.connect()
    line = Line(printer, sim, settings)
    task = asyncio.create_task(_operator(sim)) if operator else None
    try:
        yield line
    finally:
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await printer.close()
        await sim.close()


async def _operator(sim: ModbusMarkerSim) -> None:
    """Presses start on the coder's panel whenever it stands still without a fault (a real line's PLC)."""
    while True:
        await asyncio.sleep(0.005)
        if not sim.model.running and not sim.model.stopped_by_fault and sim._server is not None:
            sim.model.running = True


def feeder(ledger: Ledger, line: Line, job: int, alarms: list[AlarmEvent] | None = None,
           low_water: int | None = None) -> Feeder:
    return Feeder(ledger, line.printer, coder="c1", job=job, level="item", render=render,
                  low_water=low_water, poll_s=0.005, retry_s=0.01, max_retry_s=0.1,
                  on_alarm=alarms.append if alarms is not None else None)


async def until(check: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    async with asyncio.timeout(limit_s):
        while not check():
            await asyncio.sleep(0.005)
    del what


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def n_printed(ledger: Ledger, job: int) -> int:
    return len(states(ledger, job).get("printed", set()))


# ---- scenarios ----------------------------------------------------------------------------------

def test_a_job_prints_every_code_exactly_once(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=150, pool=400)
        async with modbus_line(rate=500) as line:
            f = feeder(ledger, line, job)
            await f.run()
        by_state = check_invariants(ledger, job, line.printed)
        assert len(by_state["printed"]) == 150
        assert len(line.printed) == 150
        assert [r.reason for r in f.reports] == [ReconcileReason.STARTUP]
        ledger.close()

    run(body())


def test_a_stop_that_clears_the_fifo_puts_unconfirmed_codes_in_doubt(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=200, pool=500)
        async with modbus_line(rate=400) as line:
            f = feeder(ledger, line, job)
            task = asyncio.create_task(f.run())
            await until(lambda: n_printed(ledger, job) >= 40, "40 printed")
            line.sim.model.stop()  # the operator hits stop: the marker discards its queue
            await task
        by_state = check_invariants(ledger, job, line.printed)
        assert len(by_state["printed"]) == 200
        # The Modbus marker driver can miss a stop that lands between its status read and its next
        # push (the push rewrites the queue register); then nothing was lost and nothing is in doubt.
        if ReconcileReason.FIFO_LOST in {r.reason for r in f.reports}:
            doubt = by_state.get("in_doubt", set())
            assert doubt, "the stop discarded queued records, so some codes must be in doubt"
            assert not doubt & {unrender(t) for t in line.printed}
        ledger.close()

    run(body())


def test_power_loss_and_a_nak_storm_are_reconciled(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=300, pool=900)
        alarms: list[AlarmEvent] = []
        async with modbus_line(rate=400) as line:
            f = feeder(ledger, line, job, alarms)
            task = asyncio.create_task(f.run())
            await until(lambda: n_printed(ledger, job) >= 50, "50 printed")
            await line.sim.power_loss()
            await asyncio.sleep(0.2)
            await line.sim.start()
            await until(lambda: n_printed(ledger, job) >= 150, "150 printed")
            line.sim.nak = True
            await asyncio.sleep(0.3)
            line.sim.nak = False
            await task
        by_state = check_invariants(ledger, job, line.printed)
        assert len(by_state["printed"]) == 300
        assert len(f.reports) >= 2
        raised = {a.alarm for a in alarms if a.active}
        assert Alarm.COMMUNICATION in raised
        assert not f.alarms.active - {Alarm.IN_DOUBT}
        ledger.close()

    run(body())


def test_slow_feed_and_empty_fifo_alarms_come_before_and_when_the_coder_runs_dry(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=400, pool=60)  # the pool runs out mid-job
        alarms: list[AlarmEvent] = []
        async with modbus_line(rate=300) as line:
            f = feeder(ledger, line, job, alarms, low_water=5)
            task = asyncio.create_task(f.run())
            await until(lambda: Alarm.FIFO_EMPTY in f.alarms.active, "FIFO empty alarm")
            f.stop()
            await task
        order = [a.alarm for a in alarms if a.active]
        assert Alarm.CODES_SHORT in order
        assert Alarm.SLOW_FEED in order
        assert order.index(Alarm.SLOW_FEED) < order.index(Alarm.FIFO_EMPTY)
        check_invariants(ledger, job, line.printed)
        assert states(ledger, job).get("sent", set()) == set()  # stop() reconciled
        ledger.close()

    run(body())


AGENT = textwrap.dedent(
    """
    import asyncio, sys
    from agent.feeder import Feeder
    from agent.ledger import Ledger
    from drivers.printers.modbus_marker import ModbusMarker, ModbusMarkerSettings

    async def main() -> None:
        settings = ModbusMarkerSettings(port=int(sys.argv[2]), slots=8, text_registers=8, timeout_s=0.3)
        printer = ModbusMarker(settings)
        await printer.connect()
        f = Feeder(Ledger(sys.argv[1]), printer, coder="c1", job=int(sys.argv[3]), level="item",
                   render=lambda c: "C" + c, poll_s=0.005)
        await f.run()

    asyncio.run(main())
    """
)


def test_an_agent_killed_mid_job_is_reconciled_by_a_new_feeder(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=300, pool=800)
        async with modbus_line(rate=300) as line:
            agent = subprocess.Popen(
                [sys.executable, "-c", AGENT, str(db_path), str(line.settings.port), str(job)],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            try:
                await until(lambda: n_printed(ledger, job) >= 60, "60 printed by the first agent")
            finally:
                agent.send_signal(signal.SIGKILL)
                agent.wait()
            assert states(ledger, job).get("sent"), "the killed agent left codes in the coder's FIFO"
            f = feeder(ledger, line, job)
            await f.run()
        by_state = check_invariants(ledger, job, line.printed)
        assert len(by_state["printed"]) == 300
        assert f.reports[0].reason is ReconcileReason.STARTUP
        ledger.close()

    run(body())


def test_in_doubt_codes_are_voided_or_proven_and_never_sent_again(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=100, pool=300)
        async with modbus_line(rate=300, operator=False) as line:  # primed, never started
            f = feeder(ledger, line, job)
            task = asyncio.create_task(f.run())
            await until(lambda: len(states(ledger, job).get("sent", ())) == 8, "FIFO primed")
            f.stop()
            await task
            assert line.printed == []
        doubt = sorted(states(ledger, job)["in_doubt"])
        assert len(doubt) == 8
        proven = doubt[0]
        prove_printed(ledger, proven)
        assert ledger.state_of(proven) is CodeState.PRINTED
        assert coder_of(ledger, proven) is not None
        assert void_in_doubt(ledger, job) == len(doubt) - 1
        assert all(ledger.state_of(c) is CodeState.VOIDED for c in doubt[1:])
        async with modbus_line(rate=300) as line:
            await feeder(ledger, line, job).run()
        assert not set(doubt) & {unrender(t) for t in line.printed}
        assert len(states(ledger, job)["printed"]) == 100  # 99 fresh prints + the proven one
        ledger.close()

    run(body())


@pytest.mark.parametrize("slots", [1, 3])
def test_tiny_fifos_still_print_each_code_once(db_path: Path, slots: int) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=40, pool=200)
        async with modbus_line(rate=300, slots=slots) as line:
            await feeder(ledger, line, job).run()
        assert len(check_invariants(ledger, job, line.printed)["printed"]) == 40
        ledger.close()

    run(body())
