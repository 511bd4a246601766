"""A coder that ran dry (Leibinger error 5043: a PrintGo found the mailing FIFO empty) and stopped.

Why its own scenario: at 500 products/s a FIFO of 7 lasts 14 ms, and on a busy machine the agent is
descheduled longer than that, so the coder ran dry in the feeder test under load. That stop clears
nothing of ours. The wire log of the failing runs showed the harm: the feeder looked (printing),
the coder printed out its FIFO and stopped with 5043, then the refill arrived and was stored for the
next start; the driver's look after the push saw "stopped", took it for a stop that cleared the
records, put them in doubt and the feeder sent replacements; the operator restarted the coder, which
printed the in-doubt records AND then the replacements (122-138 prints for a 120-item job).

Here that order of events is made exact: the products that run the coder dry pass just as the refill
leaves (a wrapper around the driver's push triggers them, then hands the records to the real driver),
and the operator restarts the coder at once. The simulator's own record of prints is the judge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.feeder import Alarm, AlarmEvent, FeederState, ReconcileReason
from agent.ledger import Ledger
from drivers.printers.base import PrinterState, Record
from drivers.sim.leibinger import LeibingerSim
from tests.agent.test_feeder import check_invariants, feeder, make_job, open_line, run, states, until


@pytest.mark.parametrize("kind", ["leibinger-tcp", "leibinger-pty"])
def test_a_refill_that_reaches_a_coder_just_run_dry_is_printed_once_and_never_replaced(
        db_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=12, pool=40)
        alarms: list[AlarmEvent] = []
        async with open_line(kind, rate=0, operator=False) as line:  # products only when the test says
            sim = line.sim
            assert isinstance(sim, LeibingerSim)
            real_push = line.printer.push
            dry_stops: list[int] = []

            async def push(records: Sequence[Record]) -> None:
                if sim.running and not dry_stops:  # the feeder decided this refill from a "printing" look
                    left = len(sim.fifo)
                    assert sim.trigger(left + 1) == left and not sim.running  # ran dry: error 5043
                    dry_stops.append(len(records))
                await real_push(records)
                if dry_stops and not sim.running:
                    sim.start_printing()  # the operator restarts it before the agent looks again

            monkeypatch.setattr(line.printer, "push", push)
            f = feeder(ledger, line, job, alarms)
            task = asyncio.create_task(f.run())
            await until(lambda: len(sim.fifo) == 7, "the FIFO primed (capacity 8 less one)")
            sim.start_printing()
            await until(lambda: f._last_state is PrinterState.PRINTING, "the feeder has seen it printing")
            assert sim.trigger(5) == 5  # room for 5: the refill that will meet a dry coder
            while not task.done():  # the conveyor: a product whenever the running coder holds a record
                if sim.running and sim.fifo:
                    sim.trigger(1)
                await asyncio.sleep(0.005)
            await task
        assert dry_stops == [5]
        by_state = check_invariants(ledger, job, sim.printed)
        assert len(sim.printed) == 12  # exactly the job: no in-doubt code printed beside its replacement
        assert set(by_state) == {"printed"} and len(by_state["printed"]) == 12
        assert states(ledger, job).get("in_doubt") is None
        assert [r.reason for r in f.reports] == [ReconcileReason.STARTUP]
        assert f.state is FeederState.DONE and not f.alarms.active
        assert Alarm.IN_DOUBT not in {a.alarm for a in alarms}
        ledger.close()

    run(body())
