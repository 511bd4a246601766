"""A verify station restarted with items between print head and gate: each judged on its own print.

The line: the PLC simulator over Modbus/TCP under positive release, the sim camera's rendered images
through the real decoder (zxing-cpp). A first station binds, judges and releases items; it stops with
items still between head and camera (and between camera and gate); a second station, a new object on
the same ledger file, takes over as a restarted agent would. What counts is the plant's record: which
items the gate removed or let pass, and the ledger's outbox, against what each item really carries.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agent.epcis import LineContext
from agent.ledger import CodeState, Ledger
from agent.verify.decode import Decoder, DecoderSettings
from agent.verify.grade import Grader
from agent.verify.regions import Region
from agent.verify.station import VerifySettings, VerifyStation, observe_image
from agent.verify.verdict import Verdict
from drivers.plc import GateMode, LinePlc, PlcSettings
from drivers.sim.camera import Defects, SimCameraSettings, render
from drivers.sim.plc import PlcSim, example_map
from tests.conftest import free_port
from tests.verify.test_station import ledger_with_printed

CAM = SimCameraSettings()
S = VerifySettings(camera_at=3, read_window=1, gate_at=8, confirm_margin=2, max_consecutive_rejects=3)
READ_POINT = "urn:epc:id:sgln:0614141.00777.L1"


class Rig:
    """One plant (PLC sim, what is printed on each item) and the agent's station of the moment."""

    def __init__(self, ledger: Ledger, codes: list[str], sim: PlcSim, plc: LinePlc) -> None:
        self.ledger, self.codes, self.sim, self.plc = ledger, codes, sim, plc
        self.decoder = Decoder(DecoderSettings(region=Region.of(CAM.region)))
        self.grader = Grader()
        self.on_item: dict[int, str | None] = {}  # the plant: seq -> the code printed on it
        self.defects: dict[int, Defects] = {}
        self.verdicts: dict[int, Verdict] = {}
        self.station: VerifyStation | None = None

    async def start_station(self) -> VerifyStation:
        st = VerifyStation(self.ledger, self.plc, S, line=LineContext(READ_POINT, None))
        st.on_verdict.append(lambda item, j: self.verdicts.__setitem__(item.seq, j.verdict))
        await st.start()
        self.station = st
        return st

    async def pitch(self, *, bind: bool = True) -> None:
        """One item passes the head (the coder prints codes[seq-1] on it), the camera shows its item."""
        st = self.station
        assert st is not None
        self.sim.model.step()
        seq = self.sim.model.counter
        self.on_item[seq] = self.codes[seq - 1] if seq <= len(self.codes) else None
        if bind and self.on_item[seq] is not None:
            st.printed(seq, self.codes[seq - 1])
        await st.tick()
        at_camera = seq - S.camera_at
        if at_camera >= 1:
            image = render(self.on_item[at_camera], self.defects.get(at_camera, Defects()), at_camera, CAM).image
            obs = await asyncio.to_thread(observe_image, at_camera, image, self.decoder, self.grader)
            await st.observe(obs)
        await st.flush()  # the verdict committed and its release written before the next pitch

    async def stop_station(self) -> None:
        assert self.station is not None
        await self.station.flush()
        self.station.close()
        self.station = None


async def open_rig(tmp: Path, n: int) -> Rig:
    ledger, codes = ledger_with_printed(tmp / "ledger.db", n)
    ledger.group_window_s = 0.005
    sim = PlcSim(example_map(), port=free_port(), camera_at=S.camera_at, gate_at=S.gate_at, gate=GateMode.RELEASE)
    await sim.start()
    plc = LinePlc(PlcSettings(url=sim.url, timeout_s=1.0, registers=example_map(), gate=GateMode.RELEASE))
    await plc.open()
    await plc.run_line(True)
    return Rig(ledger, codes, sim, plc)


async def close_rig(rig: Rig) -> None:
    if rig.station is not None:
        await rig.stop_station()
    await rig.plc.close()
    await rig.sim.close()
    rig.ledger.close()


def decommissioned(ledger: Ledger) -> set[str]:
    rows = ledger.conn.execute("SELECT code, payload FROM events WHERE uplink = 1").fetchall()
    return {r[0] for r in rows if json.loads(r[1])["epcis"]["bizStep"] == "decommissioning"}


def test_items_in_flight_across_a_restart_get_their_own_verdict(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = await open_rig(tmp_path, 30)
        rig.defects[5] = Defects(blur=3.0)  # unreadable: the only reject the plant makes
        await rig.start_station()
        for _ in range(12):
            await rig.pitch()
        # Stop: items 10, 11, 12 are between head and camera, 5..9 between camera and gate.
        await rig.stop_station()
        st = await rig.start_station()
        assert st.plan is not None and st.plan.head == 12
        assert [b.seq for b in st.plan.restore] == list(range(5, 13)) and st.plan.unbound == []
        for _ in range(18):
            await rig.pitch()
        await rig.stop_station()
        v = rig.verdicts
        assert {s: v[s] for s in (10, 11, 12)} == dict.fromkeys((10, 11, 12), Verdict.GOOD)
        assert {s for s, x in v.items() if x is not Verdict.GOOD} == {5}
        assert v[5] is Verdict.NO_READ
        model = rig.sim.model
        assert [s for s in model.rejected if s <= 22] == [5]  # the plant's gate: only the unreadable one
        assert set(range(1, 23)) - {5} == {s for s in model.passed if s <= 22}
        assert model.late_releases == [] and model.late == []
        assert decommissioned(rig.ledger) == {rig.codes[4]}
        assert rig.ledger.state_of(rig.codes[4]) is CodeState.REJECTED
        assert all(rig.ledger.state_of(rig.codes[s - 1]) is CodeState.VERIFIED for s in range(6, 23))
        await close_rig(rig)

    asyncio.run(scenario())


def test_in_flight_items_without_a_durable_binding_are_rejected_as_unbound(tmp_path: Path) -> None:
    """A kill before the bindings of items 11 and 12 were committed: they leave at the gate as
    unbound_after_restart, their reads are never taken for another item, no code is decommissioned
    for them (their codes are still `printed`: no proof which product carries them)."""

    async def scenario() -> None:
        rig = await open_rig(tmp_path, 30)
        await rig.start_station()
        for _ in range(12):
            await rig.pitch()
        await rig.stop_station()
        with rig.ledger.atomic(durable=True) as conn:  # what a SIGKILL before the group's commit leaves
            conn.execute("DELETE FROM conveyor_items WHERE seq IN (11, 12)")
        st = await rig.start_station()
        assert st.plan is not None and st.plan.unbound == [11, 12]
        for _ in range(18):
            await rig.pitch()
        await rig.stop_station()
        v = rig.verdicts
        assert v[11] is Verdict.UNBOUND and v[12] is Verdict.UNBOUND
        assert {s for s, x in v.items() if x is not Verdict.GOOD} == {11, 12}
        assert Verdict.MISMATCH not in v.values()
        assert st.alarms == []  # restart rejects do not count towards "N rejects in a row"
        assert [s for s in rig.sim.model.rejected if s <= 22] == [11, 12]
        assert decommissioned(rig.ledger) == set()
        assert {rig.ledger.state_of(rig.codes[s - 1]) for s in (11, 12)} == {CodeState.PRINTED}
        await close_rig(rig)

    asyncio.run(scenario())


def test_a_release_lost_in_a_restart_is_read_back_and_written_again_in_time(tmp_path: Path) -> None:
    """Items verified but whose release never reached the PLC (the agent died in between): after the
    restart the release register says how far releases got; an item still in time is released now, one
    past the gate is known removed: its verified code is decommissioned after the fact."""

    async def scenario() -> None:
        rig = await open_rig(tmp_path, 30)
        await rig.start_station()
        for _ in range(10):
            await rig.pitch()
        await rig.stop_station()
        assert await rig.plc.last_released() == 7  # items 1..7 judged (camera at 3) and released
        # The kill: the rows of 6 and 7 never got `released` committed, and the write of 7's release never
        # reached the PLC: its queue lacks 7 and its register still reads 6.
        with rig.ledger.atomic(durable=True) as conn:
            conn.execute("UPDATE conveyor_items SET released = 0 WHERE seq IN (6, 7)")
        rig.sim.model.released.discard(7)
        await rig.plc.release(6)
        st = await rig.start_station()
        assert st.plan is not None and st.plan.released_upto == 6
        for _ in range(12):
            await rig.pitch()
        await rig.stop_station()
        model = rig.sim.model
        assert 6 in model.passed and 7 in model.passed  # 6 was released; 7 is released again in time
        assert [s for s in model.rejected if s <= 14] == []
        assert decommissioned(rig.ledger) == set()
        await close_rig(rig)

    asyncio.run(scenario())


def test_a_reject_the_gate_never_confirms_escapes_and_is_never_reported_void(tmp_path: Path) -> None:
    """Reject-only gate whose confirm sensor stays silent: the line stops, the item may have left, so
    its code goes printed -> escaped with no decommissioning event on the outbox; a confirmed reject
    next to it is decommissioned. `lineagent codes stats` shows the escaped code to the operator."""
    from typer.testing import CliRunner

    from agent.cli.main import app
    from tests.verify.test_station import Item, close_line, open_line

    settings = VerifySettings(camera_at=2, read_window=1, gate_at=5, confirm_margin=1)

    async def scenario() -> list[str]:
        line, plc = await open_line(tmp_path, 20, settings)
        await line.run({3: Item(texts=())}, 9)  # item 3 unread: fired, removed and confirmed at 8
        line.sim.model.confirm_never = True  # from now on the sensor sees nothing
        # Items 8 and 9 were at the camera when the first run ended: their reads never come, they are
        # fired, and no confirm follows: the line stops on 8.
        await line.run({}, 12)
        await line.station.flush()
        assert [(a.reason.value, a.seq) for a in line.station.alarms] == [("reject_unconfirmed", 8)]
        assert line.ledger.state_of(line.codes[2]) is CodeState.REJECTED
        assert line.ledger.state_of(line.codes[7]) is CodeState.ESCAPED
        assert decommissioned(line.ledger) == {line.codes[2]}
        kinds = [r[0] for r in line.ledger.conn.execute(
            "SELECT kind FROM events WHERE code = ? ORDER BY seq", (line.codes[7],))]
        assert kinds[-2:] == ["verify.no_read", "code.escaped"]
        codes = list(line.codes)
        await close_line(line, plc)
        return codes

    codes = asyncio.run(scenario())
    result = CliRunner().invoke(app, ["codes", "stats", "--json", "--db", str(tmp_path / "ledger.db")])
    assert result.exit_code == 0, result.output
    rows = {r["state"]: r["count"] for r in json.loads(result.output)["rows"]}
    assert rows["escaped"] == 1 and rows["rejected"] == 1
    assert codes[7] not in decommissioned_in(tmp_path / "ledger.db")


def decommissioned_in(path: Path) -> set[str]:
    led = Ledger(path)
    try:
        return decommissioned(led)
    finally:
        led.close()
