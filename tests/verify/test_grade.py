"""Indicative grades move the right way on controlled defects: clean A/B, faded and blurred worse,
heavily damaged D/F, no read F; a tilted label is presentation, not print damage, while a print stretched
part-way is; the report always carries the not-certified disclaimer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agent.config.verify import CodeFormat, DecoderSettings, Grade, GradeSettings
from agent.verify.decode import Decoder, Symbol
from agent.verify.grade import AN, GN, INDICATIVE, Grader, GradeReport, module_grid
from agent.verify.regions import Region
from drivers.sim.camera import Defect, Defects, SimCameraSettings, Symbology, render

TEXT = "HTTPS://QR.EXAMPLE.CN/Q/7XK29F4TQ"
CAMS = {
    "qr": SimCameraSettings(symbology=Symbology.QR),
    "datamatrix": SimCameraSettings(symbology=Symbology.DATAMATRIX),
}


def grade(cam: SimCameraSettings, defects: Defects, seed: int = 0, text: str = TEXT) -> GradeReport:
    r = render(text, defects, seed, cam)
    result = Decoder(DecoderSettings(region=Region.of(cam.region), deadline_ms=None)).decode(r.image)
    return Grader().grade_result(r.image, result)[0]


def param(report: GradeReport, name: str) -> float:
    value = next(p.value for p in report.parameters if p.name == name)
    assert value is not None
    return value


@pytest.mark.parametrize("cam", CAMS.values(), ids=CAMS.keys())
def test_clean_print_grades_a_or_b_and_says_it_is_indicative(cam: SimCameraSettings) -> None:
    report = grade(cam, Defects())
    assert report.overall in (Grade.A, Grade.B)
    assert report.text == TEXT and report.passes(Grade.C)
    assert report.disclaimer == INDICATIVE and "not certified" in INDICATIVE


@pytest.mark.parametrize("cam", CAMS.values(), ids=CAMS.keys())
def test_fading_ink_lowers_symbol_contrast_and_grade_monotonically(cam: SimCameraSettings) -> None:
    reports = [grade(cam, Defects(contrast=c)) for c in (1.0, 0.7, 0.45, 0.2)]
    contrasts = [param(r, "symbol contrast") for r in reports]
    assert contrasts == sorted(contrasts, reverse=True)
    points = [r.overall.points for r in reports]
    assert points == sorted(points, reverse=True) and points[0] > points[-1]
    assert reports[-1].overall in (Grade.D, Grade.F) and not reports[-1].passes(Grade.C)


@pytest.mark.parametrize("cam", CAMS.values(), ids=CAMS.keys())
def test_blur_lowers_modulation_monotonically(cam: SimCameraSettings) -> None:
    reports = [grade(cam, Defects(blur=b)) for b in (0.0, 0.8, 1.2, 1.5)]
    mods = [param(r, "modulation") for r in reports]
    assert mods == sorted(mods, reverse=True) and mods[0] - mods[-1] > 0.2
    assert [r.overall.points for r in reports] == sorted((r.overall.points for r in reports), reverse=True)


def test_damage_uses_up_error_correction_and_heavy_damage_grades_d_or_f() -> None:
    cam = CAMS["datamatrix"]
    reports = [grade(cam, Defects(partial=p)) for p in (0.0, 0.1, 0.2, 0.3)]
    uecs = [param(r, "unused error correction") for r in reports if r.text is not None]
    assert uecs == sorted(uecs, reverse=True) and uecs[0] > uecs[-1]
    assert reports[-1].overall in (Grade.D, Grade.F)


@pytest.mark.parametrize("cam", CAMS.values(), ids=CAMS.keys())
@pytest.mark.parametrize("seed", range(4))
def test_mild_perspective_grades_c_or_better(cam: SimCameraSettings, seed: int) -> None:
    tilted = grade(cam, Defects.of(Defect.PERSPECTIVE, 0.5), seed)
    assert tilted.passes(Grade.C), tilted
    # Measured in the symbol's rectified grid, the tilt itself is no grid damage.
    assert param(tilted, "grid non-uniformity") < GN[0]
    assert param(tilted, "axial non-uniformity") < AN[0]


def test_perspective_is_reported_as_tilt_not_graded() -> None:
    cam = CAMS["qr"]
    flat = grade(cam, Defects())
    tilted = grade(cam, Defects(perspective=0.12), seed=4)
    assert param(flat, "tilt") < 0.1 < 1.0 < param(tilted, "tilt")
    tilt = next(p for p in tilted.parameters if p.name == "tilt")
    assert "not graded" in tilt.note and tilted.overall in (Grade.A, Grade.B)


def stretch_right_half(image: np.ndarray, factor: float, at_x: float) -> np.ndarray:
    """The print's right half drawn `factor` times wider than its left: an encoder slipping mid-stroke."""
    h, w = image.shape
    xs = np.arange(w, dtype=np.float32)
    src = np.where(xs > at_x, at_x + (xs - at_x) / factor, xs).astype(np.float32)
    map_x = np.ascontiguousarray(np.broadcast_to(src, (h, w)))
    map_y = np.ascontiguousarray(np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w)))
    return np.asarray(cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


@pytest.mark.parametrize("cam", CAMS.values(), ids=CAMS.keys())
def test_a_print_stretched_part_way_shows_as_grid_non_uniformity(cam: SimCameraSettings) -> None:
    clean = render(TEXT, Defects(), 0, cam).image
    x, _, w, _ = cam.region
    decoder = Decoder(DecoderSettings(region=Region.of(cam.region), deadline_ms=None))
    reports = []
    for image in (clean, stretch_right_half(clean, 1.11, x + w / 2)):
        result = decoder.decode(image)
        assert result.text == TEXT
        reports.append(Grader().grade_result(image, result)[0])
    assert param(reports[0], "grid non-uniformity") < 0.05 < 0.15 < param(reports[1], "grid non-uniformity")


def test_smeared_edges_leave_the_grid_ungraded_and_modulation_grades_the_blur() -> None:
    report = grade(CAMS["qr"], Defects(motion_blur=6))
    grid = next(p for p in report.parameters if p.name == "grid non-uniformity")
    assert grid.value is None and "ungraded" in grid.note
    assert param(report, "modulation") < param(grade(CAMS["qr"], Defects()), "modulation") - 0.3


@pytest.mark.parametrize("kind", [Defect.MISSING, Defect.BLUR])
def test_no_read_grades_f(kind: Defect) -> None:
    report = grade(CAMS["qr"], Defects.of(kind, 2.0))
    assert report.overall is Grade.F and report.text is None and not report.passes(Grade.D)


def test_code128_grades_contrast_and_modulation_over_scan_lines() -> None:
    cam = SimCameraSettings(symbology=Symbology.CODE128, module_px=2, region=(100, 180, 440, 120))
    dec = Decoder(DecoderSettings(region=Region.of(cam.region), formats=[CodeFormat.CODE128], deadline_ms=None))
    clean = render("SN12345678", Defects(), 0, cam)
    faded = render("SN12345678", Defects(contrast=0.4), 0, cam)
    g_clean = Grader().grade_result(clean.image, dec.decode(clean.image))[0]
    g_faded = Grader().grade_result(faded.image, dec.decode(faded.image))[0]
    assert g_clean.overall is Grade.A and g_faded.overall.points < g_clean.overall.points


def test_module_grid_from_the_decoder_version() -> None:
    corners = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    assert module_grid(Symbol("x", CodeFormat.QR, corners, version="3")) == (29, 29)
    assert module_grid(Symbol("x", CodeFormat.DATAMATRIX, corners, version="12x26")) == (12, 26)
    assert module_grid(Symbol("x", CodeFormat.QR, corners, version=None)) is None


def test_grade_rounding_follows_the_averaging_rule() -> None:
    assert [Grade.from_points(p) for p in (4.0, 3.5, 3.4, 2.5, 1.5, 0.5, 0.4)] == [
        Grade.A, Grade.A, Grade.B, Grade.B, Grade.C, Grade.D, Grade.F,
    ]


def test_every_item_is_graded_by_default_and_every_n_grades_one_in_n() -> None:
    cam = CAMS["qr"]
    r = render(TEXT, Defects(), 0, cam)
    symbol = Decoder(DecoderSettings(region=Region.of(cam.region), deadline_ms=None)).decode(r.image).symbols[0]
    default = Grader()
    assert GradeSettings().every == 1
    assert all(default.sampled(r.image, symbol) is not None for _ in range(5))
    third = Grader(GradeSettings(every=3))
    graded = [third.sampled(r.image, symbol) for _ in range(7)]
    assert [g is not None for g in graded] == [True, False, False, True, False, False, True]
    report = graded[0]
    assert report is not None and report == default.grade(r.image, symbol)
    with pytest.raises(ValueError):
        GradeSettings(every=0)


@pytest.mark.parametrize("cam", CAMS.values(), ids=CAMS.keys())
def test_a_streak_one_module_long_is_measured_at_the_module_centres(cam: SimCameraSettings) -> None:
    """Motion blur exactly one module long (4 px at 4 px a module) leaves no edge phase at the module
    frequency to place the grid by; the few blocks whose residue passed the sharpness test used to move
    the sampling grid by about 0.3 module and grade a readable print's modulation D/F. Sampled at the
    module centres, a lone module under a one-module box is a triangle peaking at full contrast, and the
    mean over points a quarter module either side of its centre is 7/8 of the way from the threshold's
    far side: modulation 2 * (7/8 - 1/2) = 0.75 by hand, grade A (ISO/IEC 15415: A from 0.50). The
    simulated line's text makes a symbol big enough (QR 33 x 33, DataMatrix 32 x 32) for stray blocks."""
    text = "https://id.example.com/01/09506000134352/10/L1/21/DW6MWUT4A5HTGH"
    for seed in range(6):
        report = grade(cam, Defects(motion_blur=4), seed, text)
        assert report.text == text
        assert 0.70 <= param(report, "modulation") <= 0.80, (seed, report)
        assert report.passes(Grade.C), (seed, report)
        grid = next(p for p in report.parameters if p.name == "grid non-uniformity")
        assert grid.value is None and "ungraded" in grid.note, (seed, report)
