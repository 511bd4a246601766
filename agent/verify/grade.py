"""Indicative print-quality grades after ISO/IEC 15415 (2D) and 15416 (1D), from the camera image.

These are PROCESS-CONTROL grades, not certified verification: certified grading needs calibrated
reflectance, a defined aperture and 45-degree lighting, none of which a line camera has. Grey levels
stand in for reflectance. What they are for: catching a drifting printer (fading ink, a clogging head,
a stretching stroke) long before its codes stop reading, and rejecting prints below a configured minimum.

Why it is cheap (about a quarter of the CPU of the full-warp grader it replaced; bench decode.grade_p50_ms
and verify.grade_p50_ms): nothing is searched for again. The decoder already found the symbol's four
corners and its version (hence the module grid), so one small warpPerspective whose output IS the sampling
lattice (4 x 4 samples per module plus a one-module border, ~10k samples for QR version 2) reads only the
symbol; everything after is a few whole-array numpy operations and small matrix products on that lattice
(per-grid-size matrices are cached). No per-module Python loop, no second pass over the frame. The
homography is solved in closed form, and OpenCV runs single-threaded (agent.verify.decode): on a
lattice this small its worker pool only added CPU. In a line (an item every 30 ms on a shared 2-core
machine, caches cold) grading costs ~0.85 ms CPU per item and decoding ~0.6 ms, 2.5-3x their hot-loop
figures (~0.33 and ~0.25 ms): what is left is the arithmetic itself, cold, and any cheaper formulation
of it must give the same figures (tests/verify/test_grade_unchanged.py holds them to a table).
`grade.every: N` grades one read in N for lines that cannot afford it on every item (default 1).

2D parameters, measured in the symbol's own rectified grid:
- symbol contrast: spread of the brightest and darkest 2.5% of the samples (symbol plus a one-module
  quiet border);
- modulation: how far module centres sit from the global threshold, relative to that contrast (the 5th
  percentile over modules, so a few weak modules count, not just the average);
- axial and grid non-uniformity: where the module edges actually are against the nominal grid through
  the corners. The phase of the edge signal at the module frequency gives each block of ~5x5 modules its
  grid offset in module widths; a straight line through those offsets per axis is the fitted grid (it also
  re-centres the modulation samples, so a decoder's corner a pixel off costs no modulation). The difference
  of the x and y pitch trends is axial non-uniformity; the largest block offset off the fitted grid is grid
  non-uniformity. Because the grid is rectified first, a label tilted or skewed under the camera
  (perspective) is not counted as print damage; what is counted is the print's own distortion: a stroke
  stretched part-way (encoder slip), displaced modules. A uniform stretch of the whole symbol looks exactly
  like a tilted label in one image and is absorbed. Blocks whose edges are too smeared to place (blur,
  motion: modulation grades that) or disagree inside the block are not trusted; with fewer than three
  trusted blocks, or fewer than a quarter of the blocks with edges, an axis keeps the nominal grid and
  both parameters are reported ungraded. The share matters for a streak about one module long (a
  camera exposing too long for the belt): it nulls the edge phase everywhere, and the few blocks that
  pass on residue would pull the modulation samples ~0.3 module off the centres and grade D/F a print
  that ISO/IEC 15415, sampling at the centres its reference decode's grid gives, measures at MOD ~0.75
  (A). Offsets wrap at half a module (grade B/C); a pitch error of more than ~10% inside a block breaks
  the block's agreement instead and shows in modulation.
- tilt (reported, not graded): how far the fourth corner lies off the parallelogram through the other
  three, in module widths; it tells a crooked label or camera apart from a bad print.
- unused error correction: zxing-cpp reports it (Barcode.extra["UEC"]) for QR and DataMatrix.
1D: symbol contrast and modulation (ECmin / SC) over 10 scan lines, averaged as 15416 says.
Overall = the lowest graded parameter; no decode = F.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from agent.config.verify import CodeFormat, Grade, GradeSettings
from agent.verify.decode import DecodeResult, Symbol, single_threaded_cv
from agent.verify.grid import SAMPLES_PER_MODULE, Fit, non_uniformity
from drivers.cameras.base import Image

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
INDICATIVE = (
    "indicative process-control grades from a camera image after ISO/IEC 15415/15416; "
    "not certified verification"
)

# Grade floors A, B, C, D (ISO/IEC 15415 and 15416); below D is F.
SC_2D = (0.70, 0.55, 0.40, 0.20)
MOD_2D = (0.50, 0.40, 0.30, 0.20)
UEC = (0.62, 0.50, 0.37, 0.25)
AN = (0.06, 0.08, 0.10, 0.12)  # lower is better
GN = (0.38, 0.50, 0.63, 0.75)  # lower is better, in module widths
SC_1D = (0.70, 0.55, 0.40, 0.20)
MOD_1D = (0.70, 0.60, 0.50, 0.40)
# Lattice index (column, row) -> module units: sample j sits at (j + 0.5) / k - 1 (one border module).
_K = SAMPLES_PER_MODULE
LATTICE_TO_MODULES = np.array([[1 / _K, 0, 0.5 / _K - 1], [0, 1 / _K, 0.5 / _K - 1], [0, 0, 1]], np.float64)
# Frame coordinates (pixel i covers [i, i + 1)) -> pixel index (pixel i's value sits at i): cv2's convention.
FRAME_TO_INDEX = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], np.float64)


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
    """Stateless apart from the shared lattice cache: safe to call from an executor thread."""

    def __init__(self, settings: GradeSettings | None = None) -> None:
        single_threaded_cv()  # the lattice is ~120x120 samples: OpenCV's pool costs more than it saves
        self.settings = settings or GradeSettings()
        self._offered = itertools.count()  # next() is atomic under the GIL: safe across executor threads

    def sampled(self, image: Image, symbol: Symbol) -> GradeReport | None:
        """The grade of one read in `settings.every` (the first offered, then every every-th); None for
        the reads in between, which are judged ungraded. With the default every = 1, always the grade."""
        every = self.settings.every
        if every > 1 and next(self._offered) % every:
            return None
        return self.grade(image, symbol)

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


def _lattice_to_pixel(corners: F64, rows: int, cols: int) -> F64:
    """The homography from lattice index to pixel index: the module grid [0, cols] x [0, rows] onto the
    four corners (Heckbert's closed-form square-to-quad, in plain floats: a twentieth of the CPU of
    cv2.getPerspectiveTransform's 8x8 solve plus two 3x3 matrix products), with LATTICE_TO_MODULES on
    the right and FRAME_TO_INDEX on the left folded in. The corners are taken in float32, as the solve
    took them."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = corners.astype(np.float32).astype(np.float64).tolist()
    dx1, dx2, dx3 = x1 - x2, x3 - x2, x0 - x1 + x2 - x3
    dy1, dy2, dy3 = y1 - y2, y3 - y2, y0 - y1 + y2 - y3
    den = dx1 * dy2 - dx2 * dy1
    if den == 0:  # three corners on a line: no homography; let OpenCV say what it makes of it
        unit = np.array([[0, 0], [cols, 0], [cols, rows], [0, rows]], np.float32)
        hom = np.asarray(cv2.getPerspectiveTransform(unit, corners.astype(np.float32)), np.float64)
        out: F64 = FRAME_TO_INDEX @ hom @ LATTICE_TO_MODULES
        return out
    g = (dx3 * dy2 - dx2 * dy3) / den
    h = (dx1 * dy3 - dx3 * dy1) / den
    a, b, d, e = x1 - x0 + g * x1, x3 - x0 + h * x3, y1 - y0 + g * y1, y3 - y0 + h * y3
    # Unit square -> quad is [[a, b, x0], [d, e, y0], [g, h, 1]]; lattice index j -> module (j + 0.5) / k - 1
    # -> unit square ((j + 0.5) / k - 1) / cols: scale su and shift tu per axis.
    k = SAMPLES_PER_MODULE
    su, tu = 1 / (k * cols), (0.5 / k - 1) / cols
    sv, tv = 1 / (k * rows), (0.5 / k - 1) / rows
    m = ((a * su, b * sv, a * tu + b * tv + x0),
         (d * su, e * sv, d * tu + e * tv + y0),
         (g * su, h * sv, g * tu + h * tv + 1.0))
    # FRAME_TO_INDEX: pixel index = frame coordinate - 0.5 (times w, in homogeneous coordinates).
    return np.array([[m[0][i] - 0.5 * m[2][i] for i in range(3)],
                     [m[1][i] - 0.5 * m[2][i] for i in range(3)],
                     list(m[2])], np.float64)


def _sample(grey: Image, corners: F64, rows: int, cols: int) -> Image:
    """Grey levels on the lattice: k x k samples per module over the symbol and a one-module border,
    mapped onto the frame through the corners' homography (bilinear; only these pixels are read)."""
    to_pixel = _lattice_to_pixel(corners, rows, cols)  # lattice index -> pixel index
    k = SAMPLES_PER_MODULE
    size = ((cols + 2) * k, (rows + 2) * k)
    return np.asarray(cv2.warpPerspective(grey, to_pixel, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                          borderMode=cv2.BORDER_REPLICATE), np.uint8)


def _extremes(samples: Image) -> tuple[float, float]:
    """The 2.5th and 97.5th percentile grey levels (0..1), from a histogram: no sort of the samples."""
    # cv2.calcHist counts a uint8 image directly; np.bincount first widens every sample to int64. Counts
    # and their running sum are whole numbers below 2^24 (the lattice is far smaller), exact in float32.
    cumulative = np.cumsum(cv2.calcHist([samples], [0], None, [256], [0, 256]).ravel())
    n = float(cumulative[-1])
    lo, hi = np.searchsorted(cumulative, (0.025 * n, 0.975 * n))
    return float(lo) / 255, float(hi) / 255


def _module_centres(area: F32, rows: int, cols: int, fit: Fit) -> F32:
    """Each module's reflectance at its measured centre (the nominal grid moved by the fitted edge
    offsets), through a small synthetic aperture: the mean of four points a quarter module apart. The
    2 x 2 box filter makes that mean; the fit is affine, so one warpAffine reads every centre."""
    k = SAMPLES_PER_MODULE
    box = cv2.blur(area, (2, 2), borderType=cv2.BORDER_REPLICATE)  # box[i] averages area[i - 1 : i + 1]
    # Module centre c + 0.5 -> lattice index ((c + 0.5) * (1 + slope) + offset + 1) * k - 0.5, and + 0.5
    # for the box's half-sample shift.
    sx, sy = (1 + fit.x_slope) * k, (1 + fit.y_slope) * k
    to_lattice = np.array([[sx, 0, 0.5 * sx + (fit.x_offset + 1) * k],
                           [0, sy, 0.5 * sy + (fit.y_offset + 1) * k]], np.float64)
    centres = cv2.warpAffine(box, to_lattice, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(centres, np.float32)


def _grade_2d(grey: Image, symbol: Symbol) -> list[Parameter]:
    grid = module_grid(symbol)
    if grid is None:
        return [Parameter("module grid", None, Grade.F, f"unknown symbol version {symbol.version!r}")]
    rows, cols = grid
    corners = _corners(symbol)
    warped = _sample(grey, corners, rows, cols)
    r_min, r_max = _extremes(warped)
    area: F32 = np.multiply(warped, np.float32(1 / 255), dtype=np.float32)
    sc = r_max - r_min
    params = [Parameter("symbol contrast", sc, grade_of(sc, SC_2D))]
    k = SAMPLES_PER_MODULE
    measured = non_uniformity(area[k : (rows + 1) * k, k : (cols + 1) * k], rows, cols)
    centres = _module_centres(area, rows, cols, measured.fit)
    gt = (r_max + r_min) / 2
    # The 5th percentile of module modulation: a few weak modules count, as they do against the EC budget.
    margins = np.abs(centres.ravel() - gt)
    i = int(0.05 * (margins.size - 1))
    mod = float(2 * np.partition(margins, i)[i] / sc) if sc > 0 else 0.0
    params.append(Parameter("modulation", mod, grade_of(mod, MOD_2D)))
    ungraded = "too few sharp module edges to place the grid (blur grades as modulation); ungraded"
    for name, value, floors in (("axial non-uniformity", measured.axial, AN),
                                ("grid non-uniformity", measured.grid, GN)):
        params.append(Parameter(name, None, Grade.A, ungraded) if value is None
                      else Parameter(name, value, grade_of(value, floors, higher_is_better=False)))
    params.append(Parameter("tilt", _tilt(corners, rows, cols), Grade.A,
                            "label or camera tilt in module widths; presentation, not print quality; not graded"))
    if symbol.unused_ec is None:
        params.append(Parameter("unused error correction", None, Grade.A, "not reported by this decoder; ungraded"))
    else:
        params.append(Parameter("unused error correction", symbol.unused_ec, grade_of(symbol.unused_ec, UEC)))
    return params


def _tilt(c: F64, rows: int, cols: int) -> float:
    """Distance of the bottom-right corner from the parallelogram through the other three, in modules."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = c.tolist()
    pitch = (math.hypot(x1 - x0, y1 - y0) / cols + math.hypot(x3 - x0, y3 - y0) / rows) / 2
    return math.hypot(x2 - (x1 + x3 - x0), y2 - (y1 + y3 - y0)) / pitch if pitch > 0 else math.inf


def _grade_1d(grey: Image, symbol: Symbol) -> list[Parameter]:
    """15416: grade 10 scan lines across the bar height, average each parameter's grade."""
    c = _corners(symbol)
    x0, x1 = int(max(0, c[:, 0].min() - 10)), int(min(grey.shape[1], c[:, 0].max() + 10))
    y_lo, y_hi = c[:, 1].min(), c[:, 1].max()
    if y_hi - y_lo < 4:  # the decoder gave a scan line, not a box: sample a band around it
        y_lo, y_hi = y_lo - 10, y_hi + 10
    ys = np.linspace(max(0, y_lo), min(grey.shape[0] - 1, y_hi), 12)[1:-1].astype(int)
    profiles = grey[ys, x0:x1].astype(np.float64) / 255.0
    r_min, r_max = profiles.min(axis=1), profiles.max(axis=1)
    scs = r_max - r_min
    mods = [_edge_contrast_min(p, (lo + hi) / 2) / sc if sc > 0 else 0.0
            for p, lo, hi, sc in zip(profiles, r_min, r_max, scs, strict=True)]
    sc_grade = Grade.from_points(float(np.mean([grade_of(float(s), SC_1D).points for s in scs])))
    mod_grade = Grade.from_points(float(np.mean([grade_of(m, MOD_1D).points for m in mods])))
    return [
        Parameter("symbol contrast", float(np.mean(scs)), sc_grade),
        Parameter("modulation", float(np.mean(mods)), mod_grade),
        Parameter("unused error correction", None, Grade.A, "linear symbols carry no error correction"),
    ]


def _edge_contrast_min(profile: F64, threshold: float) -> float:
    """The smallest contrast between neighbouring bar and space (ECmin), each element at its extreme."""
    dark = profile < threshold
    starts = np.concatenate(([0], np.flatnonzero(np.diff(dark.astype(np.int8))) + 1))
    if starts.size < 3:
        return 0.0
    extremes = np.where(dark[starts], np.minimum.reduceat(profile, starts), np.maximum.reduceat(profile, starts))
    return float(np.min(np.abs(np.diff(extremes))))
