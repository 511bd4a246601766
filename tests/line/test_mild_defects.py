"""The simulated line's mild defects grade C or better, as its docstring claims, through the real decoder
and grader with the settings the line uses (config/line.sim.yaml's camera and verify station): every
mild kind from no defect up to its bound, on prints carrying the line's own kind of text. C is the
line's minimum grade and the ISO/IEC 15415 grade a verifier passes; tests/control judges every item the
plant printed without a heavy defect as good on the strength of this.

A partial print (a blocked group of nozzles) is not among them, and the second test says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_config
from agent.config.verify import Grade
from agent.line.simulated import MILD
from agent.verify.decode import Decoder
from agent.verify.grade import Grader, GradeReport
from drivers.sim.camera import Defect, Defects, SimCameraSettings, render

CONFIG = load_config(Path(__file__).resolve().parents[2] / "config" / "line.sim.yaml")
STATION = CONFIG.stations["camera"]
CAMERA = SimCameraSettings.model_validate(CONFIG.device_settings("cameras", "cam1").model_dump())
# Decoded without a deadline: which stage reads a print is the question here, not how fast on a busy machine.
DECODER = Decoder(STATION.decode.model_copy(update={"deadline_ms": None}))
GRADER = Grader(STATION.grade)
# What the line prints: the sim config's GS1 Digital Link template, its GTIN, lot L1, serials as the demo's
# code packages make them (DW + 12 characters). Each serial is a different QR matrix (mask, codeword layout).
TEXTS = [f"https://id.example.com/01/09506000134352/10/L1/21/DW{serial}" for serial in
         ("6MWUT4A5HTGH", "ZK7Q2R9XN3CD", "23456789ABCD", "YYXW5PT8JM2E", "HF3NQ7VKR6BA", "M9C4XTE2W8PZ")]
SEED = 7 * 1_000_003  # the plant's per-item seed: settings.seed * 1_000_003 + the item's conveyor seq


def graded(text: str, defects: Defects, seq: int) -> GradeReport:
    image = render(text, defects, SEED + seq, CAMERA).image
    result = DECODER.decode(image)
    return GRADER.grade_result(image, result)[0]


@pytest.mark.parametrize("kind", list(MILD), ids=[k.value for k in MILD])
def test_every_mild_defect_up_to_its_bound_grades_c_or_better(kind: Defect) -> None:
    bound = MILD[kind]
    assert 0 < bound <= 1  # a severity on Defects.of's scale, where 1 is about the edge of readable
    for severity in (0.0, bound / 2, bound):
        for i, text in enumerate(TEXTS):
            for seq in range(i, len(TEXTS) * 3, len(TEXTS)):  # three placements on the label per text
                report = graded(text, Defects.of(kind, severity), seq)
                assert report.text == text, (kind, severity, seq, report)
                assert report.overall.points >= Grade.C.points, (kind, severity, seq, report)


def test_a_partial_print_is_no_mild_defect() -> None:
    """Even the smallest band (severity 0: 2% of the symbol high) wipes a module row through the middle
    40% of the symbol: on some of these prints that uses up more than the 63% of error correction grade
    C allows (ISO/IEC 15415 unused error correction: C from 0.37), a D/F a certified verifier would give
    too, since the figure comes from the decode, not from optics."""
    reports = [graded(text, Defects.of(Defect.PARTIAL, 0.0), seq) for seq, text in enumerate(TEXTS)]
    assert all(r.text == t for r, t in zip(reports, TEXTS, strict=True))  # still reads...
    low = [r for r in reports if r.overall.points < Grade.C.points]
    assert low, reports  # ...but not always at grade C
    for r in low:
        uec = next(p for p in r.parameters if p.name == "unused error correction")
        assert uec.value is not None and uec.value < 0.37 and uec.grade.points < Grade.C.points, r
