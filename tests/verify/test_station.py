"""The verify station end to end: a real ledger file, the PLC simulator over Modbus/TCP, reader strings.

Each scenario runs the conveyor pitch by pitch: the simulator moves, the feeder reports the print, the
reader's string arrives some pitches after the camera (or never), the station polls the PLC. At the
end the gate's own record of removed items is compared with the verdicts and the ledger.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.epcis import LineContext, document, validate
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import CodeState, Ledger
from agent.verify.grade import Grade
from agent.verify.rejects import StopReason
from agent.verify.station import VerifySettings, VerifyStation
from agent.verify.verdict import Judgement, Observation, Verdict
from drivers.plc import GateMode, LinePlc, PlcSettings, Signal
from drivers.sim.plc import PlcSim, example_map
from tests.conftest import free_port
from tests.helpers import seed_codes

READ_POINT = "urn:epc:id:sgln:0614141.00777.L1"


def ledger_with_printed(path: Path, n: int, *, spare: int = 0, state: CodeState = CodeState.PRINTED
                        ) -> tuple[Ledger, list[str]]:
    """A ledger whose job holds n codes in `state` (plus `spare` printed codes on no item)."""
    ledger = Ledger(path, group_window_s=0.25)  # fewer fsyncs: the suite tests logic, bench/ times it
    seed_codes(ledger, [f"C{i:06d}" for i in range(1, n + spare + 1)])
    job = create_job(ledger, JobSpec(name="j1", gtin="09506000134352", product_name="Water", lot="L1",
                                     target_qty=n + spare))
    start_job(ledger, job)
    codes = ledger.allocate(job, "item", n + spare)
    ledger.transition_many(codes, CodeState.SENT, expect=CodeState.ALLOCATED)
    if state is CodeState.PRINTED:
        ledger.transition_many(codes, CodeState.PRINTED, expect=CodeState.SENT)
    ledger.commit()
    return ledger, codes


@dataclass
class Item:
    """What happens to one item: what the coder printed, what the reader says, and when."""

    printed: bool = True
    texts: tuple[str, ...] | None = None  # None: the code printed on it; () no read
    grade: Grade | None = None
    blank: bool = False
    delay: int | None = 0  # pitches after the camera the read arrives; None: never


@dataclass
class Line:
    ledger: Ledger
    codes: list[str]
    sim: PlcSim
    station: VerifyStation
    verdicts: dict[int, Judgement] = field(default_factory=dict)

    def reader_string(self, seq: int, item: Item) -> Observation:
        texts = item.texts if item.texts is not None else ((self.codes[seq - 1],) if item.printed else ())
        return Observation(seq, texts, item.grade, blank=item.blank)

    async def run(self, plan: dict[int, Item], pitches: int, *, default: Item | None = None,
                  source: Callable[[int, Item], Observation] | None = None) -> None:
        """Move the conveyor `pitches` times; item seq N carries codes[N-1] unless the plan says not.

        `source` turns a planned item into what the camera or reader reports (default: reader strings).
        """
        make = source or self.reader_string
        s = self.station.settings
        reads: dict[int, list[Observation]] = {}
        for _ in range(pitches):
            self.sim.model.step()
            seq = self.sim.model.counter
            if seq <= len(self.codes):
                item = plan.get(seq, default or Item())
                if item.printed:
                    self.station.printed(seq, self.codes[seq - 1])
                if item.delay is not None:
                    obs = make(seq, item)
                    reads.setdefault(seq + s.camera_at + item.delay, []).append(obs)
            await self.station.tick()
            for obs in reads.pop(self.sim.model.counter, []):
                await self.station.observe(obs)
            if not self.sim.model.running:
                break
        await self.station.flush()  # verdicts are reported (on_verdict) once committed


async def open_line(tmp: Path, n: int, settings: VerifySettings, *, spare: int = 0,
                    state: CodeState = CodeState.PRINTED) -> tuple[Line, LinePlc]:
    ledger, codes = ledger_with_printed(tmp / "ledger.db", n, spare=spare, state=state)
    sim = PlcSim(example_map(), port=free_port(), camera_at=settings.camera_at, gate_at=settings.gate_at)
    await sim.start()
    plc = LinePlc(PlcSettings(url=sim.url, timeout_s=1.0, registers=example_map(), gate=GateMode.REJECT))
    await plc.open()
    await plc.run_line(True)
    station = VerifyStation(ledger, plc, settings, line=LineContext(READ_POINT, None))
    await station.start()
    line = Line(ledger, codes[:n], sim, station)
    station.on_verdict.append(lambda item, j: line.verdicts.__setitem__(item.seq, j))
    return line, plc


async def close_line(line: Line, plc: LinePlc) -> None:
    await plc.close()
    await line.sim.close()
    line.ledger.close()


def test_every_verdict_lands_on_its_item_and_only_rejects_leave_at_the_gate(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=3, read_window=2, gate_at=8, max_consecutive_rejects=10)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 12, settings, spare=1)
        spare = (await asyncio.to_thread(lambda: line.ledger.conn.execute(
            "SELECT code FROM codes ORDER BY id DESC LIMIT 1").fetchone()[0]))
        plan = {
            2: Item(texts=(spare,)),  # a code of this line, printed on no item here: mismatch
            3: Item(texts=("C000001",)),  # item 1's code, already verified: duplicate
            4: Item(texts=("FOREIGN-1",)),  # foreign
            5: Item(grade=Grade.D),  # low grade
            6: Item(printed=False, texts=(), blank=True),  # missing print
            7: Item(delay=None),  # the read never comes: no read at the window's end
            8: Item(delay=2),  # late but inside the window: good
            9: Item(delay=3),  # too late: no read, and the late string is ignored
            10: Item(texts=()),  # the reader answered its no-read string
        }
        await line.run(plan, 12 + settings.gate_at + settings.confirm_margin + 1)
        v = {seq: j.verdict for seq, j in line.verdicts.items() if seq <= 12}  # later pitches: empty
        assert v == {1: Verdict.GOOD, 2: Verdict.MISMATCH, 3: Verdict.DUPLICATE, 4: Verdict.FOREIGN,
                     5: Verdict.LOW_GRADE, 6: Verdict.MISSING_PRINT, 7: Verdict.NO_READ, 8: Verdict.GOOD,
                     9: Verdict.NO_READ, 10: Verdict.NO_READ, 11: Verdict.GOOD, 12: Verdict.GOOD}
        rejected = sorted(s for s, verdict in v.items() if verdict.rejects)
        assert [s for s in line.sim.model.rejected if s <= 12] == rejected  # exactly the rejected items
        assert line.sim.model.passed == [1, 8, 11, 12]
        assert line.station.tracker.late_reads == 1
        assert line.station.alarms == [] and line.sim.model.running
        states = {c: line.ledger.state_of(c) for c in line.codes}
        assert states["C000001"] is CodeState.VERIFIED  # read again on item 3: item 1 keeps its verdict
        assert states["C000008"] is CodeState.VERIFIED
        assert states["C000006"] is CodeState.PRINTED  # not printed on item 6: no verdict moves it
        for seq in (2, 3, 4, 5, 7, 9, 10):
            assert states[line.codes[seq - 1]] is CodeState.REJECTED
        await close_line(line, plc)

    asyncio.run(scenario())


def test_verdicts_are_on_the_outbox_with_their_epcis_event(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=1, read_window=0, gate_at=3)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 2, settings)
        await line.run({2: Item(texts=("NOPE",))}, 6)
        rows = line.ledger.conn.execute(
            "SELECT kind, code, payload FROM events WHERE uplink = 1 ORDER BY seq").fetchall()
        # the rejected code was never commissioned: commissioned first, then decommissioned (CBV lifecycle)
        assert [(r["kind"], r["code"]) for r in rows] == [("code.verified", "C000001"),
                                                          ("code.commissioned", "C000002"),
                                                          ("code.rejected", "C000002")]
        good, first, bad = (json.loads(r["payload"]) for r in rows)
        assert first["epcis"]["action"] == "ADD" and first["epcis"]["bizStep"] == "commissioning"
        assert first["epcis"]["epcList"] == bad["epcis"]["epcList"]
        assert first["epcis"]["eventTime"] < bad["epcis"]["eventTime"]
        assert good["epcis"]["bizStep"] == "commissioning" and good["epcis"]["action"] == "ADD"
        assert good["epcis"]["epcList"] == ["urn:example:lineagent:code:C000001"]
        assert good["epcis"]["ilmd"] == {"cbvmda:lotNumber": "L1"}
        assert bad["epcis"]["lineagent:reason"] == "foreign"
        validate(document([good["epcis"], bad["epcis"]]))  # schema-valid EPCIS 2.0
        assert good["epcis"]["readPoint"] == {"id": READ_POINT}
        assert bad["epcis"]["bizStep"] == "decommissioning" and bad["epcis"]["disposition"] == "inactive"
        assert bad["epcis"]["action"] == "DELETE"  # CBV 2.0, 7.2
        assert bad["verdict"] == "foreign" and bad["read"] == "NOPE" and bad["seq"] == 2
        item = line.ledger.conn.execute("SELECT seq, verdict FROM items ORDER BY seq").fetchall()
        assert [tuple(r) for r in item] == [(1, "good"), (2, "foreign")]
        await close_line(line, plc)

    asyncio.run(scenario())


def test_a_reject_without_confirm_stops_the_line_with_an_alarm(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=2, read_window=1, gate_at=5, confirm_margin=1)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 20, settings)
        line.sim.model.confirm_never = True
        await line.run({3: Item(texts=())}, 20)
        assert line.sim.model.rejected == [3]  # the gate fired, the sensor stayed silent
        assert [a.reason for a in line.station.alarms] == [StopReason.REJECT_UNCONFIRMED]
        assert line.station.alarms[0].seq == 3
        assert not line.sim.model.running
        assert line.sim.model.counter == 3 + settings.gate_at + settings.confirm_margin + 1
        assert await plc.read(Signal.LIGHT_RED) == 1 and await plc.read(Signal.BUZZER) == 1
        kinds = [r[0] for r in line.ledger.conn.execute("SELECT kind FROM events WHERE kind LIKE 'alarm.%'")]
        assert kinds == ["alarm.reject_unconfirmed"]
        await close_line(line, plc)

    asyncio.run(scenario())


def test_confirmed_rejects_do_not_stop_the_line(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=2, read_window=1, gate_at=5, confirm_margin=1)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 20, settings)
        await line.run({3: Item(texts=()), 4: Item(texts=()), 9: Item(delay=None)}, 20 + 7)
        assert [s for s in line.sim.model.rejected if s <= 20] == [3, 4, 9]  # later pitches: empty
        assert line.station.book.confirmed[:3] == [3, 4, 9]
        assert line.station.alarms == [] and line.sim.model.running
        await close_line(line, plc)

    asyncio.run(scenario())


def test_n_consecutive_rejects_stop_the_line(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=2, read_window=1, gate_at=6, max_consecutive_rejects=3)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 30, settings)
        plan = {4: Item(texts=()), 5: Item(texts=("X",)), 7: Item(texts=()), 8: Item(texts=()),
                9: Item(grade=Grade.F)}
        await line.run(plan, 30)
        assert [a.reason for a in line.station.alarms] == [StopReason.CONSECUTIVE_REJECTS]
        assert line.station.alarms[0].seq == 9  # 4, 5 then a good 6 reset the count; 7, 8, 9 stop
        assert not line.sim.model.running
        await close_line(line, plc)

    asyncio.run(scenario())


def test_a_read_proves_a_code_the_feeder_had_not_confirmed(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=1, read_window=0, gate_at=3)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 2, settings, state=CodeState.SENT)
        await line.run({2: Item(texts=())}, 6)
        assert line.ledger.state_of("C000001") is CodeState.VERIFIED  # sent -> printed (read) -> verified
        # Unread and still sent: nothing proves the print and the item left at the gate, so the code
        # is voided (sent -> in_doubt -> voided) with its decommissioning event; never verified.
        assert line.ledger.state_of("C000002") is CodeState.VOIDED
        assert line.verdicts[2].verdict is Verdict.NO_READ
        assert line.sim.model.rejected[:1] == [2]
        kinds = [r[0] for r in line.ledger.conn.execute("SELECT kind FROM events WHERE code = 'C000001'")]
        assert kinds[-2:] == ["code.printed", "code.verified"]
        rows = line.ledger.conn.execute(
            "SELECT kind, uplink, payload FROM events WHERE code = 'C000002' ORDER BY seq").fetchall()
        assert [(r[0], r[1]) for r in rows][-3:] == [("code.in_doubt", 0), ("code.commissioned", 1),
                                                     ("code.voided", 1)]  # commissioned before it is retired
        void = json.loads(rows[-1][2])
        assert void["epcis"]["bizStep"] == "decommissioning" and void["verdict"] == "no_read"
        assert line.ledger.conn.execute("SELECT verdict FROM items WHERE seq = 2").fetchone()[0] == "no_read"
        await close_line(line, plc)

    asyncio.run(scenario())


async def wait_for(condition: Callable[[], bool], *, within_s: float = 10.0) -> None:
    """Yield to the loop until `condition` holds (a bound against hangs, not a timing assert)."""
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.005)


def test_run_polls_a_moving_line_and_survives_a_dead_plc(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=1, read_window=0, gate_at=6, poll_ms=2, max_consecutive_rejects=10_000)

    async def scenario() -> None:
        ledger, _ = ledger_with_printed(tmp_path / "ledger.db", 5)
        async with PlcSim(example_map(), port=free_port(), camera_at=1, gate_at=6, rate_per_s=50) as sim:
            plc = LinePlc(PlcSettings(url=sim.url, timeout_s=0.1, registers=example_map(), gate=GateMode.REJECT))
            await plc.open()
            await plc.run_line(True)
            station = VerifyStation(ledger, plc, settings, line=LineContext(READ_POINT, None))
            stop = asyncio.Event()
            task = asyncio.create_task(station.run(stop))
            await wait_for(lambda: station.counts[Verdict.MISSING_PRINT] >= 5)  # nothing is printing
            await wait_for(lambda: len(sim.model.rejected) >= 3)  # and the gate removes them
            assert station.alarms == [] and sim.model.late == []
            sim.dead.add(1)
            await wait_for(lambda: any(a.reason is StopReason.PLC_FAILED for a in station.alarms))
            assert not task.done()  # a dead PLC is an alarm, not the end of the station
            stop.set()
            await task
            await plc.close()
        ledger.close()

    asyncio.run(scenario())
