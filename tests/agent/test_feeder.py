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
from drivers.printers.base import Printer, PrinterError
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.printers.modbus_marker import ModbusMarker, ModbusMarkerSettings
from drivers.sim.faults import SimFault
from drivers.sim.leibinger import LeibingerSim
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
    returned: Counter[str] = Counter()
    with ledger.lock:
        for kind, payload in ledger.conn.execute(
                "SELECT kind, payload FROM events WHERE kind IN ('codes.sent', 'codes.returned')"):
            (sent_events if kind == "codes.sent" else returned).update(json.loads(payload)["codes"])
    # A code goes out again only after the coder proved it flushed and never printed (sent -> returned).
    assert not [c for c, n in sent_events.items() if n > returned[c] + 1], "a code was sent twice"
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


KINDS = ["modbus-tcp", "leibinger-pty", "leibinger-tcp"]


@dataclass
class Line:
    """A coder simulator, the driver talking to it, and what a test can do to the coder."""

    kind: str
    printer: Printer
    sim: ModbusMarkerSim | LeibingerSim
    address: str  # what a driver in another process connects to (port or url)

    @property
    def printed(self) -> list[str]:
        return self.sim.printed

    def panel_stop(self) -> None:
        """The operator presses stop on the coder: its FIFO is cleared."""
        if isinstance(self.sim, ModbusMarkerSim):
            self.sim.model.stop()
        else:
            self.sim.stop_printing()

    async def power_loss(self, down_s: float = 0.2) -> None:
        if isinstance(self.sim, ModbusMarkerSim):
            await self.sim.power_loss()
            await asyncio.sleep(down_s)
            await self.sim.start()
        else:
            await self.sim.power_off()
            await asyncio.sleep(down_s)
            await self.sim.power_on()

    async def nak_storm(self, requests: int = 30) -> None:
        if isinstance(self.sim, ModbusMarkerSim):
            self.sim.nak = True
            await asyncio.sleep(0.3)
            self.sim.nak = False
        else:
            self.sim.inject(SimFault.NAK, requests)

    def depth(self) -> int:
        return self.sim.model.depth if isinstance(self.sim, ModbusMarkerSim) else len(self.sim.fifo)

    def press_start_if_stopped(self) -> None:
        if isinstance(self.sim, ModbusMarkerSim):
            m = self.sim.model
            if not m.running and not m.stopped_by_fault and self.sim._server is not None:
                m.running = True
        elif self.sim.powered and not self.sim.running:
            self.sim.start_printing()


def make_printer(kind: str, address: str, capacity: int) -> Printer:
    if kind == "modbus-tcp":
        return ModbusMarker(ModbusMarkerSettings(port=int(address), slots=capacity, text_registers=8,
                                                 timeout_s=0.3))
    return Leibinger(LeibingerSettings(url=address, capacity=capacity, timeout_s=0.2, retries=1))


@asynccontextmanager
async def open_line(
    kind: str, *, rate: float, capacity: int = 8, operator: bool = True, connect: bool = True
) -> AsyncIterator[Line]:
    """`rate`: products per second on the simulated conveyor (0: none)."""
    sim: ModbusMarkerSim | LeibingerSim
    if kind == "modbus-tcp":
        port = free_port()
        sim = ModbusMarkerSim(ModbusMarkerSettings(port=port, slots=capacity, text_registers=8),
                              rate_per_s=rate or None)
        await sim.start()
        address = str(port)
    else:
        sim = LeibingerSim(capacity=max(capacity, 2), rate_per_min=rate * 60 or None)
        address = await sim.serve_pty() if kind == "leibinger-pty" else f"tcp://127.0.0.1:{await sim.serve_tcp(0)}"
    printer = make_printer(kind, address, max(capacity, 2) if kind != "modbus-tcp" else capacity)
    if connect:  # a loaded machine may stall a local server past a connect timeout (0.5 s for a marker)
        for attempt in range(10):
            try:
                await printer.connect()
                break
            except PrinterError:
                if attempt == 9:
                    raise
    line = Line(kind, printer, sim, address)
    task = asyncio.create_task(_operator(line)) if operator else None
    try:
        yield line
    finally:
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await printer.close()
        await sim.close()


async def _operator(line: Line) -> None:
    """Presses start on the coder's panel whenever it stands still without a fault (a real line's PLC)."""
    while True:
        await asyncio.sleep(0.005)
        line.press_start_if_stopped()


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

@pytest.mark.parametrize("kind", KINDS)
def test_a_job_prints_every_code_exactly_once(db_path: Path, kind: str) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=120, pool=400)
        async with open_line(kind, rate=500) as line:
            f = feeder(ledger, line, job)
            await f.run()
        by_state = check_invariants(ledger, job, line.printed)
        assert len(by_state["printed"]) == 120
        # 500 products/s against a FIFO of 7 (14 ms): on a busy machine the coder runs dry now and
        # then. That costs nothing of ours (tests/agent/test_feeder_dry.py), except where one look
        # cannot tell a dry stop before a lone refilled record from a stop that cleared it: that one
        # record goes in doubt, and if the coder still printed it, the item carries the in-doubt code
        # (which a camera read proves), never the same code twice and never a replacement's twin.
        extra = {unrender(t) for t in line.printed} - by_state["printed"]
        assert extra <= by_state.get("in_doubt", set()) and len(line.printed) == 120 + len(extra)
        assert f.reports[0].reason is ReconcileReason.STARTUP
        assert all(r.reason is ReconcileReason.FIFO_LOST and len(r.in_doubt) <= 1 for r in f.reports[1:])
        assert len(by_state.get("in_doubt", ())) <= f.target_depth
        ledger.close()

    run(body())


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_that_clears_the_fifo_puts_unconfirmed_codes_in_doubt(db_path: Path, kind: str) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=120, pool=600)
        # 40 products/s on every coder: slow enough that a serial link keeps the FIFO filled, so the stop
        # has something to discard. On the Modbus marker this was the slow-line reconcile loop (its
        # clear_fifo stopped the marker, each stop looked like a new loss: ~70 reconciles, ~500 codes
        # in doubt); one stop is now one reconcile with at most the FIFO's depth in doubt.
        async with open_line(kind, rate=40) as line:
            f = feeder(ledger, line, job)
            task = asyncio.create_task(f.run())
            await until(lambda: n_printed(ledger, job) >= 40 and line.depth() >= 3, "40 printed, FIFO filled")
            before = len(f.reports)
            line.panel_stop()
            await task
        by_state = check_invariants(ledger, job, line.printed)
        assert len(by_state["printed"]) == 120
        # Every driver must see the stop, the Modbus marker's included: its queue count is a
        # compare-and-set, so a push racing the stop is refused instead of undoing it.
        after = f.reports[before:]
        assert len(after) == 1, f"one stop, {len(after)} reconciles: {[r.reason for r in after]}"
        assert after[0].reason in {ReconcileReason.FIFO_LOST, ReconcileReason.STOP, ReconcileReason.PUSH_FAILED,
                                   ReconcileReason.COUNTER}
        doubt = by_state.get("in_doubt", set())
        assert doubt, "the stop discarded queued records, so some codes must be in doubt"
        assert len(doubt) <= f.target_depth
        ledger.close()

    run(body())


@pytest.mark.parametrize("kind", KINDS)
def test_power_loss_and_a_nak_storm_are_reconciled(db_path: Path, kind: str) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=200, pool=1000)
        alarms: list[AlarmEvent] = []
        async with open_line(kind, rate=400) as line:
            f = feeder(ledger, line, job, alarms)
            task = asyncio.create_task(f.run())
            await until(lambda: n_printed(ledger, job) >= 40, "40 printed")
            await line.power_loss()
            await until(lambda: n_printed(ledger, job) >= 100, "100 printed")
            await line.nak_storm()
            await task
        by_state = check_invariants(ledger, job, line.printed)
        assert len(by_state["printed"]) == 200
        assert len(f.reports) >= 2
        assert Alarm.COMMUNICATION in {a.alarm for a in alarms if a.active} or kind == "leibinger-tcp"
        assert not f.alarms.active - {Alarm.IN_DOUBT}
        ledger.close()

    run(body())


def test_slow_feed_and_empty_fifo_alarms_come_before_and_when_the_coder_runs_dry(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=400, pool=60)  # the pool runs out mid-job
        alarms: list[AlarmEvent] = []
        async with open_line("leibinger-pty", rate=300, capacity=16) as line:
            f = feeder(ledger, line, job, alarms, low_water=8)
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
    from tests.agent.test_feeder import make_printer, render

    async def main() -> None:
        printer = make_printer(sys.argv[2], sys.argv[3], 8)
        await printer.connect()
        f = Feeder(Ledger(sys.argv[1]), printer, coder="c1", job=int(sys.argv[4]), level="item",
                   render=render, poll_s=0.005)
        await f.run()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("kind", KINDS)
def test_an_agent_killed_mid_job_is_reconciled_by_a_new_feeder(db_path: Path, kind: str) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=200, pool=800)
        # A pty has one reader: this process connects only once the first agent is dead.
        async with open_line(kind, rate=300, connect=kind != "leibinger-pty") as line:
            agent = subprocess.Popen(
                [sys.executable, "-c", AGENT, str(db_path), kind, line.address, str(job)],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            try:
                await until(lambda: n_printed(ledger, job) >= 60 and bool(states(ledger, job).get("sent")),
                            "60 printed by the first agent and more in its coder's FIFO")
            finally:
                agent.send_signal(signal.SIGKILL)
                agent.wait()
            assert states(ledger, job).get("sent"), "the killed agent left codes in the coder's FIFO"
            if kind == "leibinger-pty":
                await line.printer.connect()
            f = feeder(ledger, line, job)
            await f.run()
        by_state = check_invariants(ledger, job, line.printed)
        assert len(by_state["printed"]) == 200
        assert f.reports[0].reason is ReconcileReason.STARTUP
        ledger.close()

    run(body())


def test_in_doubt_codes_are_voided_or_proven_and_never_sent_again(db_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=100, pool=300)
        async with open_line("leibinger-tcp", rate=300, operator=False) as line:  # primed, never started
            f = feeder(ledger, line, job)
            task = asyncio.create_task(f.run())
            depth = f.target_depth  # what the driver promises (an indexed coder keeps one index free)
            await until(lambda: len(states(ledger, job).get("sent", ())) == depth, "FIFO primed")
            f.stop()
            await task
            assert line.printed == []
        doubt = sorted(states(ledger, job)["in_doubt"])
        # The Leibinger driver proves its flush for what its ?SM shows it held: those come back to the pool.
        back = states(ledger, job).get("returned", set()) | states(ledger, job).get("allocated", set())
        assert len(doubt) + len(back & set(f.reports[-1].returned)) == depth
        assert doubt, "a record the coder may have loaded into its head stays in doubt"
        proven = doubt[0]
        prove_printed(ledger, proven)
        assert ledger.state_of(proven) is CodeState.PRINTED
        assert coder_of(ledger, proven) is not None
        assert void_in_doubt(ledger, job) == len(doubt) - 1
        assert all(ledger.state_of(c) is CodeState.VOIDED for c in doubt[1:])
        async with open_line("leibinger-tcp", rate=300) as line:
            await feeder(ledger, line, job).run()
        assert not set(doubt) & {unrender(t) for t in line.printed}
        assert len(states(ledger, job)["printed"]) == 100  # 99 fresh prints + the proven one
        ledger.close()

    run(body())


@pytest.mark.parametrize(("kind", "capacity"), [("modbus-tcp", 1), ("leibinger-pty", 2), ("modbus-tcp", 3)])
def test_tiny_fifos_still_print_each_code_once(db_path: Path, kind: str, capacity: int) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=40, pool=200)
        async with open_line(kind, rate=300, capacity=capacity) as line:
            await feeder(ledger, line, job).run()
        assert len(check_invariants(ledger, job, line.printed)["printed"]) == 40
        ledger.close()

    run(body())
