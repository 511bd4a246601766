"""The decoder on real rendered prints: every defect kind, fallbacks only after a miss, the deadline,
GS1 text forms, multi-code case tops, and the >= 99% read rate on prints of grade C or better."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from agent.verify.decode import Backend, CodeFormat, Decoder, DecoderSettings, Gs1Text, Stage
from agent.verify.regions import Region
from drivers.sim.camera import Defect, Defects, SimCameraSettings, Symbology, render, render_case_top

QR = SimCameraSettings(symbology=Symbology.QR)
DM = SimCameraSettings(symbology=Symbology.DATAMATRIX)
TEXT = "HTTPS://QR.EXAMPLE.CN/Q/7XK29F4TQ"
READABLE = [d for d in Defect if d not in (Defect.MISSING, Defect.WRONG_CODE)]


def decoder_for(settings: SimCameraSettings, **kw: object) -> Decoder:
    return Decoder(DecoderSettings(region=Region.of(settings.region), deadline_ms=None, **kw))


@pytest.mark.parametrize("cam", [QR, DM], ids=["qr", "datamatrix"])
@pytest.mark.parametrize("kind", READABLE)
def test_every_defect_kind_at_moderate_severity_reads_the_printed_text(cam: SimCameraSettings, kind: Defect) -> None:
    decoder = decoder_for(cam)
    for seed in range(3):
        r = render(TEXT, Defects.of(kind, 0.3), seed, cam)
        assert decoder.decode(r.image).text == TEXT, (kind, seed)


@pytest.mark.parametrize("cam", [QR, DM], ids=["qr", "datamatrix"])
def test_missing_print_gives_no_symbol(cam: SimCameraSettings) -> None:
    r = render(TEXT, Defects.of(Defect.MISSING), 7, cam)
    result = decoder_for(cam).decode(r.image)
    assert r.text is None
    assert result.symbols == [] and result.stage is Stage.NONE
    assert result.stages_tried == (Stage.CROP, Stage.BLUR, Stage.HALF, Stage.DOUBLE, Stage.FULL)


def test_wrong_code_reads_as_the_other_text() -> None:
    r = render(TEXT, Defects.of(Defect.WRONG_CODE), 3, QR)
    assert r.text is not None and r.text != TEXT and len(r.text) == len(TEXT)
    assert decoder_for(QR).decode(r.image).text == r.text
    given = render(TEXT, Defects(wrong_text="SOMETHING-ELSE-1"), 3, QR)
    assert decoder_for(QR).decode(given.image).text == "SOMETHING-ELSE-1"


def test_clean_print_reads_in_the_crop_stage_without_fallbacks() -> None:
    result = decoder_for(QR).decode(render(TEXT, Defects(), 0, QR).image)
    assert result.stage is Stage.CROP and result.stages_tried == (Stage.CROP,)
    (sym,) = result.symbols
    x, y, w, h = QR.region
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in sym.corners)  # frame coordinates
    assert sym.format is CodeFormat.QR and sym.ec_level in {"L", "M", "Q", "H"} and sym.version


def test_inkjet_dot_matrix_qr_needs_and_gets_the_blur_stage() -> None:
    r = render(TEXT, Defects(dot_matrix=0.8, blur=0.6), 1, QR)
    no_fallback = Decoder(DecoderSettings(region=Region.of(QR.region), fallback=[], deadline_ms=None))
    assert no_fallback.decode(r.image).symbols == []
    result = decoder_for(QR).decode(r.image)
    assert result.text == TEXT and result.stage is Stage.BLUR


def test_print_outside_its_region_is_found_by_the_full_frame_stage() -> None:
    r = render(TEXT, Defects(), 0, QR)
    wrong_place = Region(x=0, y=0, width=150, height=150)
    result = Decoder(DecoderSettings(region=wrong_place, deadline_ms=None)).decode(r.image)
    assert result.text == TEXT and result.stage is Stage.FULL


def test_deadline_stops_further_stages_and_says_so() -> None:
    r = render(TEXT, Defects(missing=True), 0, QR)
    result = decoder_for(QR).decode(r.image, deadline_s=0.0)
    assert result.deadline_hit and result.symbols == [] and result.stages_tried == (Stage.CROP,)
    clean = decoder_for(QR).decode(render(TEXT, Defects(), 0, QR).image, deadline_s=0.0)
    assert clean.text == TEXT and not clean.deadline_hit  # the crop stage always runs


def test_gs1_datamatrix_element_string_keeps_gs_separators_and_hri_is_bracketed() -> None:
    cam = SimCameraSettings(symbology=Symbology.GS1_DATAMATRIX)
    r = render("(01)09506000134352(17)261231(10)AB12(21)SN0001", Defects(), 0, cam)
    es = decoder_for(cam).decode(r.image).symbols[0]
    assert es.gs1 and es.text == "01095060001343521726123110AB12\x1d21SN0001"
    hri = decoder_for(cam, gs1_text=Gs1Text.HRI).decode(r.image).symbols[0]
    assert hri.text == "(01)09506000134352(17)261231(10)AB12(21)SN0001"


def test_code128_reads_with_zxing_and_pyzbar() -> None:
    cam = SimCameraSettings(symbology=Symbology.CODE128, module_px=2, region=(100, 180, 440, 120))
    r = render("SN12345678", Defects(), 0, cam)
    for backend in Backend:
        result = decoder_for(cam, backend=backend, formats=[CodeFormat.CODE128]).decode(r.image)
        assert result.text == "SN12345678" and result.symbols[0].format is CodeFormat.CODE128, backend


def test_pyzbar_backend_reads_qr_and_refuses_datamatrix() -> None:
    r = render(TEXT, Defects(), 0, QR)
    assert decoder_for(QR, backend=Backend.PYZBAR, formats=[CodeFormat.QR]).decode(r.image).text == TEXT
    with pytest.raises(ValidationError, match="cannot read DataMatrix"):
        DecoderSettings(backend=Backend.PYZBAR, formats=[CodeFormat.DATAMATRIX])


def test_colour_frames_are_accepted() -> None:
    grey = render(TEXT, Defects(), 0, QR).image
    bgr = np.repeat(grey[:, :, None], 3, axis=2)
    assert decoder_for(QR).decode(bgr).text == TEXT


def test_a_region_outside_the_frame_is_refused_with_where() -> None:
    with pytest.raises(ValueError, match=r"outside the 640x480 frame"):
        Decoder().decode(render(TEXT, Defects(), 0, QR).image, region=Region(x=700, y=0, width=10, height=10))


CASES = [(6, Symbology.QR), (12, Symbology.DATAMATRIX), (24, Symbology.DATAMATRIX)]


@pytest.mark.parametrize(("n", "symbology"), CASES)
def test_case_top_reads_every_code(n: int, symbology: Symbology) -> None:
    texts: list[str | None] = [f"CASE7-ITEM-{i:03d}" for i in range(n)]
    cam = SimCameraSettings(width=1280, height=960, module_px=3, symbology=symbology)
    r = render_case_top(texts, seed=n, settings=cam)
    result = Decoder(DecoderSettings(expect=n, deadline_ms=None)).decode(r.image)
    assert sorted(s.text for s in result.symbols) == sorted(t for t in texts if t)
    # each code was found inside its own cell
    for sym in result.symbols:
        box = r.regions[texts.index(sym.text)]
        cx, cy = sym.centre
        assert box.x <= cx <= box.x + box.width and box.y <= cy <= box.y + box.height


def test_case_top_with_a_missing_item_reads_the_rest() -> None:
    texts: list[str | None] = [f"C-{i}" for i in range(8)]
    defects = [Defects()] * 8
    defects[5] = Defects(missing=True)
    r = render_case_top(texts, defects, seed=1)
    result = Decoder(DecoderSettings(expect=8, deadline_ms=None)).decode(r.image)
    assert r.printed[5] is None
    assert sorted(s.text for s in result.symbols) == sorted(f"C-{i}" for i in range(8) if i != 5)


def grade_c_or_better(rng: np.random.Generator) -> Defects:
    """A print inside the sim's grade-C envelope: one or two defects at severity up to 0.5."""
    kinds = [Defect.BLUR, Defect.MOTION_BLUR, Defect.NOISE, Defect.ROTATION, Defect.PERSPECTIVE,
             Defect.LOW_CONTRAST, Defect.DOT_MATRIX, Defect.SMEAR, Defect.PARTIAL]
    picks = rng.choice(len(kinds), size=int(rng.integers(1, 3)), replace=False)
    d = Defects()
    for i in picks:
        d = d.merge(Defects.of(kinds[int(i)], float(rng.uniform(0.0, 0.5))))
    return d


def read_rate_check(cam: SimCameraSettings, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    decoder = Decoder(DecoderSettings(region=Region.of(cam.region)))  # with the default 25 ms deadline
    good = wrong = 0
    for i in range(n):
        text = f"HTTPS://QR.EXAMPLE.CN/Q/{i:08d}"
        r = render(text, grade_c_or_better(rng), 10_000 + i, cam)
        got = decoder.decode(r.image).text
        good += got == text
        wrong += got is not None and got != text
    assert wrong == 0
    assert good / n >= 0.99, f"{good}/{n}"


@pytest.mark.parametrize("cam", [QR, DM], ids=["qr", "datamatrix"])
def test_read_rate_on_grade_c_or_better_prints_is_at_least_99_percent(cam: SimCameraSettings) -> None:
    read_rate_check(cam, 150, 2026)


@pytest.mark.soak
@pytest.mark.parametrize("cam", [QR, DM], ids=["qr", "datamatrix"])
def test_read_rate_soak_over_5000_prints(cam: SimCameraSettings) -> None:
    read_rate_check(cam, 5000, 7)
