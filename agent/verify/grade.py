"""Indicative print-quality grades after ISO/IEC 15415 (2D) and 15416 (1D), from the camera image.

These are PROCESS-CONTROL grades, not certified verification: certified grading needs calibrated
reflectance, a defined aperture and 45-degree lighting, none of which a line camera has. Grey levels
stand in for reflectance. What they are for: catching a drifting printer (fading ink, a clogging head,
a skewed label) long before its codes stop reading, and rejecting prints below a configured minimum.

2D parameters, from the symbol's four corners and its module grid (the decoder's version string):
- symbol contrast: spread of the brightest and darkest 2.5% of the symbol area and its quiet border;
- modulation: how far the module centres sit from the global threshold, relative to that contrast
  (the 5th percentile over modules, so a few weak modules count, not just the average);
- axial non-uniformity: module pitch along one axis vs the other, from the corners;
- grid non-uniformity: the largest gap between the module grid through the four corners and the
  affine grid through three of them, in module widths (perspective and tilt);
- unused error correction: zxing-cpp reports it (Barcode.extra["UEC"]) for QR and DataMatrix. The
  decoder's own figure is used; fixed pattern damage is not measured.
1D: symbol contrast and modulation (ECmin / SC) over 10 scan lines, averaged as 15416 says.
Overall = the lowest parameter grade; no decode = F.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
import numpy.typing as npt

from agent.config.base import Strict
from agent.verify.decode import CodeFormat, DecodeResult, Symbol
from drivers.cameras.base import Image

F64 = npt.NDArray[np.float64]
INDICATIVE = (
    "indicative process-control grades from a camera image after ISO/IEC 15415/15416; "
    "not certified verification"
)


class Grade(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    F = "F"

    @property
    def points(self) -> int:
        return {"A": 4, "B": 3, "C": 2, "D": 1, "F": 0}[self.value]

    @classmethod
    def from_points(cls, points: float) -> Grade:
        """ISO rounding of an averaged grade: 3.5 and up is A, 2.5 B, 1.5 C, 0.5 D."""
        for grade, floor in ((cls.A, 3.5), (cls.B, 2.5), (cls.C, 1.5), (cls.D, 0.5)):
            if points >= floor:
                return grade
        return cls.F


# Grade floors A, B, C, D (ISO/IEC 15415 Table 3-ish and 15416); below D is F.
SC_2D = (0.70, 0.55, 0.40, 0.20)
MOD_2D = (0.50, 0.40, 0.30, 0.20)
UEC = (0.62, 0.50, 0.37, 0.25)
AN = (0.06, 0.08, 0.10, 0.12)  # lower is better
GN = (0.38, 0.50, 0.63, 0.75)  # lower is better
SC_1D = (0.70, 0.55, 0.40, 0.20)
MOD_1D = (0.70, 0.60, 0.50, 0.40)
SAMPLES_PER_MODULE = 8


def grade_of(value: float, floors: tuple[float, float, float, float], higher_is_better: bool = True) -> Grade:
    for grade, floor in zip((Grade.A, Grade.B, Grade.C, Grade.D), floors, strict=True):
        if (value >= floor) if higher_is_better else (value <= floor):
            return grade
    return Grade.F


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    value: float | None  # None: could not be measured (the note says why)
    grade: Grade
    note: str = ""


@dataclass(frozen=True, slots=True)
class GradeReport:
    overall: Grade
    parameters: tuple[Parameter, ...]
    text: str | None  # the decoded text graded (None: no read)
    disclaimer: str = INDICATIVE

    def passes(self, minimum: Grade) -> bool:
        return self.overall.points >= minimum.points

    @classmethod
    def no_read(cls) -> GradeReport:
        return cls(Grade.F, (Parameter("decode", None, Grade.F, "no symbol decoded"),), None)


class GradeSettings(Strict):
    minimum: Grade = Grade.C  # prints graded below this are rejected as low grade


def module_grid(symbol: Symbol) -> tuple[int, int] | None:
    """(rows, columns) of a 2D symbol from the decoder's version string; None when unknown."""
    v = symbol.version
    if not v:
        return None
    if symbol.format is CodeFormat.QR and v.isdigit():
        n = 17 + 4 * int(v)
        return n, n
    if symbol.format is CodeFormat.DATAMATRIX and "x" in v:
        r, _, c = v.partition("x")
        if r.isdigit() and c.isdigit():
            return int(r), int(c)
    return None


class Grader:
    def __init__(self, settings: GradeSettings | None = None) -> None:
        self.settings = settings or GradeSettings()

    def grade_result(self, image: Image, result: DecodeResult) -> list[GradeReport]:
        """One report per symbol read; a single F report when nothing was read."""
        if not result.symbols:
            return [GradeReport.no_read()]
        return [self.grade(image, s) for s in result.symbols]

    def grade(self, image: Image, symbol: Symbol) -> GradeReport:
        grey = image if image.ndim == 2 else np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), np.uint8)
        params = _grade_1d(grey, symbol) if symbol.format.linear else _grade_2d(grey, symbol)
        overall = min((p.grade for p in params), key=lambda g: g.points)
        return GradeReport(overall, tuple(params), symbol.text)


def _corners(symbol: Symbol) -> F64:
    return np.array(symbol.corners, dtype=np.float64)


def _grade_2d(grey: Image, symbol: Symbol) -> list[Parameter]:
    grid = module_grid(symbol)
    if grid is None:
        return [Parameter("module grid", None, Grade.F, f"unknown symbol version {symbol.version!r}")]
    rows, cols = grid
    c = _corners(symbol)
    k = SAMPLES_PER_MODULE
    # Map the symbol plus one module of quiet zone all round onto a regular grid of k px per module.
    dst = np.array([[k, k], [(cols + 1) * k, k], [(cols + 1) * k, (rows + 1) * k], [k, (rows + 1) * k]], np.float32)
    h = cv2.getPerspectiveTransform(c.astype(np.float32), dst)
    size = ((cols + 2) * k, (rows + 2) * k)
    warped = np.asarray(cv2.warpPerspective(grey, h, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    area = warped.astype(np.float64) / 255.0
    r_min, r_max = float(np.percentile(area, 2.5)), float(np.percentile(area, 97.5))
    sc = r_max - r_min
    params = [Parameter("symbol contrast", sc, grade_of(sc, SC_2D))]
    # Module centres: the mean of the central quarter of each module cell.
    cells = area[k : (rows + 1) * k, k : (cols + 1) * k].reshape(rows, k, cols, k)
    q = k // 4
    centres = cells[:, q : k - q, :, q : k - q].mean(axis=(1, 3))
    gt = (r_max + r_min) / 2
    mod = float(np.percentile(2 * np.abs(centres - gt) / sc, 5)) if sc > 0 else 0.0
    params.append(Parameter("modulation", mod, grade_of(mod, MOD_2D)))
    an, gn = _geometry(c, rows, cols)
    params.append(Parameter("axial non-uniformity", an, grade_of(an, AN, higher_is_better=False)))
    params.append(Parameter("grid non-uniformity", gn, grade_of(gn, GN, higher_is_better=False)))
    if symbol.unused_ec is None:
        params.append(Parameter("unused error correction", None, Grade.A, "not reported by this decoder; ungraded"))
    else:
        params.append(Parameter("unused error correction", symbol.unused_ec, grade_of(symbol.unused_ec, UEC)))
    return params


def _geometry(c: F64, rows: int, cols: int) -> tuple[float, float]:
    """Axial and grid non-uniformity from the four corners (TL, TR, BR, BL)."""
    tl, tr, br, bl = c
    x_pitch = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2 / cols
    y_pitch = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2 / rows
    an = float(abs(x_pitch - y_pitch) / ((x_pitch + y_pitch) / 2))
    # The grid through all four corners against the affine grid through TL, TR, BL.
    u, v = np.meshgrid((np.arange(cols) + 0.5) / cols, (np.arange(rows) + 0.5) / rows)
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    hom = cv2.getPerspectiveTransform(unit, c.astype(np.float32))
    pts = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=0)
    proj = hom @ pts
    actual = (proj[:2] / proj[2]).T
    affine = tl + np.outer(u.ravel(), tr - tl) + np.outer(v.ravel(), bl - tl)
    pitch = (x_pitch + y_pitch) / 2
    gn = float(np.max(np.linalg.norm(actual - affine, axis=1)) / pitch) if pitch > 0 else math.inf
    return an, gn


def _grade_1d(grey: Image, symbol: Symbol) -> list[Parameter]:
    """15416: grade 10 scan lines across the bar height, average each parameter's grade."""
    c = _corners(symbol)
    x0, x1 = int(max(0, c[:, 0].min() - 10)), int(min(grey.shape[1], c[:, 0].max() + 10))
    y_lo, y_hi = c[:, 1].min(), c[:, 1].max()
    if y_hi - y_lo < 4:  # the decoder gave a scan line, not a box: sample a band around it
        y_lo, y_hi = y_lo - 10, y_hi + 10
    ys = np.linspace(max(0, y_lo), min(grey.shape[0] - 1, y_hi), 12)[1:-1].astype(int)
    scs, mods = [], []
    for y in ys:
        profile = grey[y, x0:x1].astype(np.float64) / 255.0
        r_min, r_max = float(profile.min()), float(profile.max())
        sc = r_max - r_min
        scs.append(sc)
        mods.append(_edge_contrast_min(profile, (r_min + r_max) / 2) / sc if sc > 0 else 0.0)
    sc_grade = Grade.from_points(float(np.mean([grade_of(s, SC_1D).points for s in scs])))
    mod_grade = Grade.from_points(float(np.mean([grade_of(m, MOD_1D).points for m in mods])))
    return [
        Parameter("symbol contrast", float(np.mean(scs)), sc_grade),
        Parameter("modulation", float(np.mean(mods)), mod_grade),
        Parameter("unused error correction", None, Grade.A, "linear symbols carry no error correction"),
    ]


def _edge_contrast_min(profile: F64, threshold: float) -> float:
    """The smallest contrast between neighbouring bar and space (ECmin), each element at its extreme."""
    dark = profile < threshold
    edges = np.flatnonzero(np.diff(dark.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(profile)]
    extremes = [
        (float(profile[a:b].min()) if dark[a] else float(profile[a:b].max()))
        for a, b in itertools.pairwise(bounds)
        if b > a
    ]
    if len(extremes) < 3:
        return 0.0
    return min(abs(p - q) for p, q in itertools.pairwise(extremes))
