"""A GS1 job's prints must read back AS GS1: real symbols made by zxing-cpp's encoder (through the sim
camera's renderer), read by the real decoder, judged by the real verify station against the PLC
simulator and a ledger file.

The pairs that matter are made from the same data: a GS1 DataMatrix (FNC1 first, ]d2) and a plain
DataMatrix carrying the same characters (]d1) decode to the same text, so only the symbology
identifier tells the print a coder in GS1 mode made from the one a coder in plain mode made.
Expected verdicts are written per item by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config.model import LineConfig
from agent.epcis import LineContext
from agent.ledger import CodeState
from agent.line.verifying import code_parser
from agent.verify.decode import Decoder, DecoderSettings
from agent.verify.grade import Grade
from agent.verify.regions import Region
from agent.verify.station import VerifySettings, VerifyStation, observe_image
from agent.verify.verdict import Judgement, Observation, Verdict, judge
from drivers.plc import GateMode, LinePlc, PlcSettings
from drivers.sim.camera import Defects, SimCameraSettings, Symbology, render
from drivers.sim.plc import PlcSim, example_map
from tests.conftest import free_port
from tests.verify.test_station import READ_POINT, ledger_with_printed

GS = "\x1d"


def printed(code: str, *, gtin: str = "09506000134352") -> str:
    """The element string of the job's template, written out: (01)(17)(10) then GS, then (21)."""
    return f"01{gtin}17261231" + "10LOT42" + GS + f"21{code}"


def hri(code: str, *, gtin: str = "09506000134352") -> str:
    """The same data in brackets, as the GS1 encoder takes it."""
    return f"(01){gtin}(17)261231(10)LOT42(21){code}"


# ---- the rules, without images ---------------------------------------------------------------------

E = printed("C000001")


def state(text: str) -> CodeState | None:
    return {E: CodeState.PRINTED, printed("C000009"): CodeState.VERIFIED}.get(text)


@pytest.mark.parametrize(("texts", "syms", "grade", "verdict"), [
    ((E,), ("]d2",), None, Verdict.GOOD),
    ((E,), ("]Q3",), None, Verdict.GOOD),
    ((E,), ("]d1",), None, Verdict.NOT_GS1),  # the same data in a plain DataMatrix
    ((E,), ("]Q1",), None, Verdict.NOT_GS1),
    ((E,), ("]d1",), Grade.F, Verdict.NOT_GS1),  # unusable downstream however it is graded
    ((E,), ("]d2",), Grade.F, Verdict.LOW_GRADE),
    ((E,), (), None, Verdict.GOOD),  # a reader's string: no identifier, judged on the data
    ((printed("C000009"),), ("]d1",), None, Verdict.DUPLICATE),  # a duplicate stays a duplicate
    ((printed("ZZZ"),), ("]d2",), None, Verdict.FOREIGN),
    ((E.replace("4352", "4353"),), ("]d2",), None, Verdict.BAD_GS1),  # GTIN check digit
    ((E.replace(GS, ""),), ("]d2",), None, Verdict.BAD_GS1),  # lot ran into the serial
    ((E.replace(GS, "~1"),), ("]d1",), None, Verdict.BAD_GS1),  # FNC1 spelling printed as text
])
def test_gs1_verdicts(texts: tuple[str, ...], syms: tuple[str, ...], grade: Grade | None, verdict: Verdict) -> None:
    obs = Observation(1, texts, grade, symbologies=syms)
    assert judge(E, obs, state, minimum=Grade.C, gs1=True).verdict is verdict


def test_a_job_that_is_not_gs1_ignores_the_symbology() -> None:
    obs = Observation(1, (E,), None, symbologies=("]d1",))
    assert judge(E, obs, state, minimum=Grade.C).verdict is Verdict.GOOD


def test_the_reasons_name_what_to_fix() -> None:
    plain = judge(E, Observation(1, (E,), None, symbologies=("]d1",)), state, minimum=Grade.C, gs1=True)
    assert "]d1" in plain.reason and "gs1_fnc1_first" in plain.reason and plain.read == E
    bad = judge(E, Observation(1, (E.replace("4352", "4353"),), None, symbologies=("]d2",)), state,
                minimum=Grade.C, gs1=True)
    assert "check digit 3" in bad.reason


def test_the_line_reads_the_serial_of_an_element_string_without_a_lot() -> None:
    """(21) right after the fixed-length (01): no GS, and the code is still found (it was not before)."""
    cfg = LineConfig.model_validate({"site": {"id": "s"}, "line": {"id": "L1"},
                                     "security": {"cloud_public_key": "k.pem"},
                                     "templates": {"gs1dm": {"kind": "element_string"}}})
    serial = code_parser(cfg, "gs1dm")
    assert serial("0109506000134352" + "21C000001") == "C000001"
    assert serial("0109506000134352" + "17261231" + "21C000001") == "C000001"
    assert serial(E) == "C000001"
    assert serial(E.replace(GS, "")) is None  # no serial can be told


# ---- real images through the decoder and the station ----------------------------------------------

CAM = SimCameraSettings()
SETTINGS = VerifySettings(camera_at=2, read_window=0, gate_at=5, max_consecutive_rejects=50)

# seq -> (symbology printed, text given to the encoder, the verdict it must get)
PLAN: dict[int, tuple[Symbology, str, Verdict]] = {
    1: (Symbology.GS1_DATAMATRIX, hri("C000001"), Verdict.GOOD),
    2: (Symbology.DATAMATRIX, printed("C000002"), Verdict.NOT_GS1),  # the coder not in GS1 mode
    3: (Symbology.GS1_QR, hri("C000003"), Verdict.GOOD),
    4: (Symbology.QR, printed("C000004"), Verdict.NOT_GS1),
    5: (Symbology.GS1_DATAMATRIX, hri("C000005", gtin="09506000134353"), Verdict.BAD_GS1),  # check digit
    6: (Symbology.GS1_DATAMATRIX, "(01)09506000134352(17)261231(10)LOT4221C000006", Verdict.BAD_GS1),  # no FNC1
    7: (Symbology.DATAMATRIX, printed("C000007").replace(GS, "~1"), Verdict.BAD_GS1),  # "~1" as text
    8: (Symbology.DATAMATRIX, printed("C000001"), Verdict.DUPLICATE),  # item 1's code again, plain
    9: (Symbology.GS1_DATAMATRIX, hri("C000009"), Verdict.GOOD),
}


def test_gs1_prints_through_the_decoder_and_the_station(tmp_path: Path) -> None:
    n = len(PLAN)
    cfg = LineConfig.model_validate({"site": {"id": "s"}, "line": {"id": "L1"},
                                     "security": {"cloud_public_key": "k.pem"},
                                     "templates": {"gs1dm": {"kind": "element_string"}}})

    async def scenario() -> dict[int, Judgement]:
        ledger, codes = ledger_with_printed(tmp_path / "ledger.db", n)
        sim = PlcSim(example_map(), port=free_port(), camera_at=SETTINGS.camera_at, gate_at=SETTINGS.gate_at)
        await sim.start()
        plc = LinePlc(PlcSettings(url=sim.url, timeout_s=1.0, registers=example_map(), gate=GateMode.REJECT))
        await plc.open()
        await plc.run_line(True)
        station = VerifyStation(ledger, plc, SETTINGS, line=LineContext(READ_POINT, None),
                                code_of=code_parser(cfg, "gs1dm"), gs1=True)
        await station.start()
        verdicts: dict[int, Judgement] = {}
        station.on_verdict.append(lambda item, j: verdicts.__setitem__(item.seq, j))
        decoder = Decoder(DecoderSettings(region=Region.of(CAM.region)))
        seen: dict[int, str | None] = {}
        for _ in range(n + SETTINGS.gate_at + SETTINGS.confirm_margin + 1):
            sim.model.step()
            seq = sim.model.counter
            if seq <= n:
                station.printed(seq, codes[seq - 1], printed(codes[seq - 1]))
            await station.tick()
            at_camera = sim.model.counter - SETTINGS.camera_at
            if 1 <= at_camera <= n:
                symbology, text, _ = PLAN[at_camera]
                image = render(text, Defects(), at_camera, CAM.model_copy(update={"symbology": symbology})).image
                obs = observe_image(at_camera, image, decoder)
                seen[at_camera] = obs.symbologies[0] if obs.symbologies else None
                await station.observe(obs)
        await station.flush()
        assert seen == {1: "]d2", 2: "]d1", 3: "]Q3", 4: "]Q1", 5: "]d2", 6: "]d2", 7: "]d1", 8: "]d1", 9: "]d2"}
        rejected = sorted(s for s, j in verdicts.items() if s <= n and j.verdict.rejects)
        assert [s for s in sim.model.rejected if s <= n] == rejected
        states = {c: ledger.state_of(c) for c in codes}
        assert states["C000002"] is CodeState.REJECTED  # read as printed: the code is proven on the item
        assert states["C000001"] is CodeState.VERIFIED and states["C000009"] is CodeState.VERIFIED
        reasons = dict(ledger.conn.execute("SELECT seq, verdict FROM items").fetchall())
        assert reasons[2] == "not_gs1_symbol" and reasons[5] == "bad_gs1_data"
        station.close()
        await plc.close()
        await sim.close()
        ledger.close()
        return verdicts

    verdicts = asyncio.run(scenario())
    assert {s: j.verdict for s, j in verdicts.items() if s <= n} == {s: v for s, (_, _, v) in PLAN.items()}
