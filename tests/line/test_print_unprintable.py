"""Codes the coder cannot print, through the real print station, feeder and Leibinger driver against its
simulator on TCP: a typed outcome (voided with the reason, an alarm), never a traceback out of the feeder.

The job prints GS1 element strings on a coder that takes FNC1 as `<FNC1>` (characters of GS1 set 82,
so a serial may hold them too). Which codes cannot print, and why, is written out by hand:
- `C 7`: a space is not in the GS1 AI character set 82 (GS1 General Specifications 24.0, fig. 7.11-1);
- `C<FNC1>5`: the coder would read the serial's `<FNC1>` as a field separator.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

from agent.config.model import LineConfig
from agent.config.stations import StationConfig
from agent.jobs import Job, JobSpec, create_job, get_job, start_job
from agent.ledger import Ledger
from agent.line.alarms import AlarmBoard, Severity
from agent.line.printing import PrintState, PrintStation
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.sim.leibinger import LeibingerSim
from tests.helpers import seed_codes

CFG = LineConfig.model_validate({"site": {"id": "s"}, "line": {"id": "L1"},
                                 "security": {"cloud_public_key": "k.pem"},
                                 "templates": {"gs1dm": {"kind": "element_string"}, "plain": {"kind": "raw"}}})
STATION = StationConfig.model_validate({"type": "print", "coder": "c1",
                                        "feed": {"target_depth": 4, "poll_ms": 10}})
PREFIX = "0109506000134352" "17261231" "10LOT42<FNC1>21"  # (01)(17)(10) then (21), FNC1 as this coder takes it


def make_job(ledger: Ledger, codes: list[str], target: int, lot: str = "LOT42", template: str = "gs1dm") -> Job:
    seed_codes(ledger, codes)
    job_id = create_job(ledger, JobSpec(name="WO-1", gtin="09506000134352", product_name="Water", lot=lot,
                                        target_qty=target, template=template, expiry=date(2026, 12, 31)))
    start_job(ledger, job_id)
    return get_job(ledger, job_id)


async def run_station(ledger: Ledger, job: Job, *, print_all: bool) -> tuple[PrintStation, LeibingerSim]:
    """The station feeds the coder; the test plays the conveyor (a product whenever a record waits)
    until the job is done, or (print_all False) only until the station settles into a state."""
    sim = LeibingerSim(capacity=16)
    port = await sim.serve_tcp(0)
    printer = Leibinger(LeibingerSettings(url=f"tcp://127.0.0.1:{port}", capacity=16, confirm_s=0.5,
                                          gs1_fnc1="<FNC1>", timeout_s=1.0, retries=1))
    station = PrintStation("printer", STATION, CFG, ledger, AlarmBoard(), printer)
    stop = asyncio.Event()
    task = asyncio.create_task(station.run(job, stop))
    try:
        for _ in range(2000):  # up to 40 s on a loaded machine: a hang detector, not a timing assertion
            if task.done() or (not print_all and station.state is PrintState.STOPPED):
                break
            if not print_all and station.feeder is not None and station.feeder.state.value == "waiting":
                break
            if sim.running and sim.fifo:
                sim.trigger(1)
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 60)  # returns: no exception out of the station or its feeder
    finally:
        await printer.close()
        await sim.close()
    return station, sim


def journal(ledger: Ledger, kind: str) -> list[tuple[str, dict[str, str]]]:
    with ledger.lock:
        rows = ledger.conn.execute("SELECT code, payload FROM events WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
    return [(str(r[0]), json.loads(r[1])) for r in rows]


def state_of(ledger: Ledger, code: str) -> str:
    with ledger.lock:
        return str(ledger.conn.execute("SELECT state FROM codes WHERE code = ?", (code,)).fetchone()[0])


def test_codes_the_coder_cannot_print_are_voided_with_the_reason_and_the_job_completes(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    codes = ["C1", "C2", "C3", "C4", "C<FNC1>5", "C6", "C 7", "C8", "C9", "C10", "C11", "C12"]
    job = make_job(ledger, codes, target=10)
    station, sim = asyncio.run(run_station(ledger, job, print_all=True))
    good = ["C1", "C2", "C3", "C4", "C6", "C8", "C9", "C10", "C11", "C12"]
    assert station.state is PrintState.DONE
    assert sim.printed == [PREFIX + c for c in good]  # the coder's own record: each good code once, in order
    voided = journal(ledger, "codes.unprintable")
    assert [c for c, _ in voided] == ["C<FNC1>5", "C 7"]
    assert all(p["coder"] == "c1" and p["from"] == "allocated" for _, p in voided)
    assert "FNC1 spelling" in voided[0][1]["reason"] and "character set" in voided[1][1]["reason"]
    assert {state_of(ledger, c) for c in ("C<FNC1>5", "C 7")} == {"voided"}
    assert {state_of(ledger, c) for c in good} == {"printed"}
    alarm = next(a for a in station.board.active if a.key == "unprintable_code")
    assert alarm.severity is Severity.WARNING and "C 7" in alarm.detail
    assert "unprintable_job" not in {a.key for a in station.board.active}
    ledger.close()


def test_a_code_the_protocol_cannot_carry_is_voided_before_it_is_sent(tmp_path: Path) -> None:
    """A raw template sends the code as it is; a Leibinger mailing record is latin-1 and carries no TAB
    (drivers/printers/leibinger_codec.py FORBIDDEN): the driver's own check, asked before `sent`."""
    ledger = Ledger(tmp_path / "ledger.db")
    codes = ["R1", "R\t2", "R3", "R\u4e2d4", "R5"]
    job = make_job(ledger, codes, target=3, template="plain")
    station, sim = asyncio.run(run_station(ledger, job, print_all=True))
    assert station.state is PrintState.DONE and sim.printed == ["R1", "R3", "R5"]
    voided = journal(ledger, "codes.unprintable")
    assert [c for c, _ in voided] == ["R\t2", "R\u4e2d4"]
    assert "cannot carry" in voided[0][1]["reason"] and "latin-1" in voided[1][1]["reason"]
    with ledger.lock:  # never sent: no seq was taken for them, nothing is in doubt
        assert ledger.conn.execute("SELECT COUNT(*) FROM coder_feed").fetchone()[0] == 3
    ledger.close()


def test_a_job_none_of_whose_codes_can_be_printed_stops_feeding_after_three(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    codes = [f"A<FNC1>{i}" for i in range(1, 10)]  # every serial holds the coder's FNC1 spelling
    job = make_job(ledger, codes, target=5)
    station, sim = asyncio.run(run_station(ledger, job, print_all=False))
    assert sim.printed == [] and not sim.fifo and not station.primed.is_set()  # nothing reached the coder
    assert [c for c, _ in journal(ledger, "codes.unprintable")] == ["A<FNC1>1", "A<FNC1>2", "A<FNC1>3"]
    assert {state_of(ledger, c) for c in codes[3:]} <= {"allocated", "available"}  # the rest not burned
    assert station.state is PrintState.STOPPED
    stopping = [(a.source, a.key) for a in station.board.active if a.severity is Severity.STOP]
    assert stopping == [("c1", "unprintable_job")]
    ledger.close()


def test_a_job_whose_own_data_cannot_be_printed_on_the_coder_is_refused_at_start(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    job = make_job(ledger, [f"C{i}" for i in range(1, 6)], target=5, lot="L<FNC1>1")  # the lot holds it
    station, sim = asyncio.run(run_station(ledger, job, print_all=False))
    assert sim.requests == 0 and sim.printed == []  # refused before the coder was even opened
    assert station.state is PrintState.STOPPED and station.feeder is None
    alarm = next(a for a in station.board.active if a.key == "unprintable_job")
    assert alarm.severity is Severity.STOP and "WO-1" in alarm.detail and "FNC1 spelling" in alarm.detail
    assert journal(ledger, "codes.unprintable") == []  # no code was burned
    ledger.close()
