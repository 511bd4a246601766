"""Where a 2D symbol's module edges really are: the grid measurement behind the grader's axial and
grid non-uniformity (agent.verify.grade, whose docstring says what is measured and why).

Input is the symbol's rectified lattice of SAMPLES_PER_MODULE x SAMPLES_PER_MODULE grey samples per
module. The phase of the edge signal at the module frequency gives each block of ~BLOCK_MODULES
modules its grid offset; a weighted straight line through the offsets per axis is the fitted grid.
Split from grade.py to keep each module readable; everything here is whole-array numpy work with the
per-grid-size matrices cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

SAMPLES_PER_MODULE = 4  # 4 x 4 bilinear samples per module: centre pair for modulation, edges for the grid
BLOCK_MODULES = 5  # grid offsets are measured per block of about this many modules a side
MIN_EDGE_SHARE = 0.25  # blocks with less edge signal than this share of the strongest are not trusted
MIN_SHARPNESS = 0.1  # edge phasor / edge signal: a Gaussian blur of 0.34 module sigma is the limit
MIN_BLOCKS = 3  # trusted blocks needed to fit a grid and grade it
# ... and at least this share of the blocks that have edges at all. Smear from the camera (a motion streak,
# defocus) lies over the whole symbol: where most blocks cannot place the grid, the few that pass do so on
# residue (8-bit quantisation of a ramp, the truncated last column) and their phase is noise. Measured on
# the simulated camera (QR and DataMatrix, 4 and 6 px modules): a streak of about one module leaves at
# most 8% of the blocks trusted; every other defect, blur up to past MIN_SHARPNESS included, at least 49%.
MIN_TRUSTED_SHARE = 0.25
MIN_AGREEMENT = 0.5  # edge phasor / sum of per-row phasor sizes: do the rows agree on the grid?


@dataclass(frozen=True, slots=True)
class Fit:
    """Where the module edges really are against the nominal grid: offset + slope * position, per axis,
    in module widths. The offset is mostly where the decoder put the corners (zxing-cpp gives DataMatrix
    corners on the last pixel, QR corners on the edge); the slope is a pitch error."""

    x_offset: float = 0.0
    x_slope: float = 0.0
    y_offset: float = 0.0
    y_slope: float = 0.0


@functools.lru_cache(maxsize=4)
def _edge_weights() -> F32:
    """cos, -sin of 2 pi x and 1 at each of the k differences inside a module (x in module units): the
    difference between samples j and j+1 sits at (j + 1) / k, so a module edge has phase zero."""
    k = SAMPLES_PER_MODULE
    x = 2 * np.pi * (np.arange(k) + 1) / k
    w = np.stack([np.cos(x), -np.sin(x), np.ones(k)], axis=1).astype(np.float32)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=64)
def _block_centres(rows: int, cols: int, block: int) -> tuple[F64, F64]:
    """(row, column) of each block's centre in modules, as 2D arrays over the blocks."""

    def along(n: int) -> F64:
        starts = np.arange(0, n, block)
        out: F64 = starts + np.minimum(block, n - starts) / 2
        return out

    cy, cx = np.meshgrid(along(rows), along(cols), indexing="ij")
    cy.setflags(write=False)
    cx.setflags(write=False)
    return cy, cx


@functools.lru_cache(maxsize=64)
def _stacked_centres(rows: int, cols: int, block: int) -> F64:
    """The block centres along each block's own axis: [column positions, row positions]."""
    cy, cx = _block_centres(rows, cols, block)
    out: F64 = np.stack([cx, cy])
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=64)
def _per_module(cols: int) -> tuple[F32, F32]:
    """Matrices over a row of cols * k samples: (edge weights per module, cols * 3 out; sum per module,
    cols out). Cached per grid width: they turn the per-module sums into two small matrix products.
    Most of their entries are zero, yet BLAS multiplies them faster than numpy sums a (..., k) view over
    its last axis (33 x 33 modules: 9 us against 56 us), and the grades were set with BLAS's order of
    additions: a reshape-and-sum moves values in the 8th digit, never a grade, but for no gain."""
    k = SAMPLES_PER_MODULE
    weighted = np.kron(np.eye(cols, dtype=np.float32), _edge_weights()).astype(np.float32)
    summed = np.kron(np.eye(cols, dtype=np.float32), np.ones((k, 1), np.float32)).astype(np.float32)
    weighted.setflags(write=False)
    summed.setflags(write=False)
    return weighted, summed


def _edge_phasors(grad_x: F32, grad_y: F32, rows: int, cols: int, block: int) -> F64:
    """Per block of modules, for x (out[0]) and for y (out[1]): [re, im, edge, spread].

    re + i im sums the edge signal times e^(-2 pi i x): its angle is the block's grid offset on that axis.
    edge sums the edge signal: |re + i im| / edge falls as edges smear (a Gaussian blur of sigma s
    modules gives exp(-2 pi^2 s^2); a streak one module long gives 0, where no edge can be placed).
    spread sums |re + i im| per module first: |re + i im| / spread is 1 when the modules agree on
    where the grid is, and falls when they do not (a pitch that changes inside the block)."""
    k = SAMPLES_PER_MODULE
    weighted, summed = _per_module(cols)
    cells = np.empty((2, rows, cols, 4), np.float32)
    # grad_x lacks the last column and grad_y the last row (the border's edge, 0): the matrices' last
    # row is left out, and the last row of the y sums is 0.
    # x: add each module's k sample lines, then weight the k differences across it.
    cells[0, ..., :3] = (grad_x.reshape(rows, k, cols * k - 1).sum(axis=1) @ weighted[:-1]).reshape(rows, cols, 3)
    # y: add each module's k sample columns, then weight the k differences down it.
    down = np.empty((rows * k, cols), np.float32)
    np.matmul(grad_y, summed, out=down[:-1])
    down[-1] = 0
    across = down.reshape(rows, k, cols).transpose(0, 2, 1)
    cells[1, ..., :3] = (across.reshape(rows * cols, k) @ _edge_weights()).reshape(rows, cols, 3)
    np.hypot(cells[..., 0], cells[..., 1], out=cells[..., 3])
    starts_rows, starts_cols = _block_starts(rows, cols, block)
    by_rows = np.add.reduceat(cells, starts_rows, axis=1)
    out: F64 = np.add.reduceat(by_rows, starts_cols, axis=2).astype(np.float64)
    return out


@functools.lru_cache(maxsize=64)
def _block_starts(rows: int, cols: int, block: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """First row and first column of each block, as np.add.reduceat takes them."""
    starts_rows, starts_cols = np.arange(0, rows, block), np.arange(0, cols, block)
    starts_rows.setflags(write=False)
    starts_cols.setflags(write=False)
    return starts_rows, starts_cols


@dataclass(frozen=True, slots=True)
class GridFit:
    """The measured grid, and its non-uniformities where enough sharp edges allowed measuring them."""

    fit: Fit
    axial: float | None
    grid: float | None


def _axes(phasors: F64, at: F64) -> list[tuple[npt.NDArray[np.bool_], F64, float, float]]:
    """Per axis (x, then y; both axes in one pass over the stacked blocks), per block: trusted?, offset
    in modules; then the fitted grid's offset and slope (0, 0: the nominal grid, when too few blocks
    are trusted to fit one)."""
    weight = np.hypot(phasors[..., 0], phasors[..., 1])
    # A block counts when it has enough edges, sharp enough to place, that agree on where the grid is.
    # Edges smeared over a module (blur, motion) cannot place it: modulation grades that damage.
    ok = ((weight >= MIN_SHARPNESS * phasors[..., 2]) & (weight >= MIN_AGREEMENT * phasors[..., 3])
          & (weight >= MIN_EDGE_SHARE * weight.max(axis=(1, 2), keepdims=True)) & (weight > 0))
    offset = -np.arctan2(phasors[..., 1], phasors[..., 0]) / (2 * np.pi)  # wraps at half a module
    edge = phasors[..., 2]
    with_edges = (edge >= MIN_EDGE_SHARE * edge.max(axis=(1, 2), keepdims=True)) & (edge > 0)
    out: list[tuple[npt.NDArray[np.bool_], F64, float, float]] = []
    counts = ok.sum(axis=(1, 2)).tolist()  # both axes in one call each: the arrays are tiny, calls are the cost
    edged_counts = with_edges.sum(axis=(1, 2)).tolist()
    for trusted, off, w, a, n, edged in zip(ok, offset, weight, at, counts, edged_counts, strict=True):
        if n < MIN_BLOCKS or n < MIN_TRUSTED_SHARE * edged:
            out.append((np.zeros_like(trusted), off, 0.0, 0.0))
            continue
        where = a[trusted]
        if where.max() == where.min():  # all trusted blocks in one row (column): no slope to fit
            out.append((np.zeros_like(trusted), off, 0.0, 0.0))
        else:
            out.append((trusted, off, *_trend(where, off[trusted], w[trusted])))
    return out


def non_uniformity(symbol_area: F32, rows: int, cols: int) -> GridFit:
    """Where the module edges sit, from their phase at the module frequency per block of modules.

    Axial non-uniformity is the difference of the pitch trends along x and y; grid non-uniformity is
    the largest block offset left over after the fitted straight grid. What a straight, evenly pitched
    grid explains is the corners' placement or a uniform stretch; the print's own distortion is what is
    left. Each is None when fewer than MIN_BLOCKS blocks could be trusted."""
    block = max(3, min(BLOCK_MODULES, min(rows, cols) // 3))
    # |difference| of neighbouring samples; the last column's (row's) edge would be the border's and
    # counts as 0, which _edge_phasors does by leaving it out. cv2.absdiff: one pass, exact in float32.
    grad_x = np.asarray(cv2.absdiff(symbol_area[:, 1:], symbol_area[:, :-1]), np.float32)
    grad_y = np.asarray(cv2.absdiff(symbol_area[1:, :], symbol_area[:-1, :]), np.float32)
    cy, cx = _block_centres(rows, cols, block)
    (ok_x, dx, x_off, x_slope), (ok_y, dy, y_off, y_slope) = _axes(
        _edge_phasors(grad_x, grad_y, rows, cols, block), _stacked_centres(rows, cols, block))
    fit = Fit(x_off, x_slope, y_off, y_slope)
    axial = None
    if ok_x.any() and ok_y.any():
        axial = abs(x_slope - y_slope) / (1.0 + (x_slope + y_slope) / 2)
    both = ok_x & ok_y
    if both.sum() < MIN_BLOCKS:
        return GridFit(fit, axial, None)
    rx = dx[both] - (x_off + x_slope * cx[both])
    ry = dy[both] - (y_off + y_slope * cy[both])
    return GridFit(fit, axial, float(np.sqrt(np.max(rx * rx + ry * ry))))


def _trend(at: F64, offset: F64, weight: F64) -> tuple[float, float]:
    """Weighted least-squares line through (position, offset): (offset at 0, slope in modules/module)."""
    total = float(weight.sum())
    mean_at = float(weight @ at) / total
    mean_off = float(weight @ offset) / total
    centred = at - mean_at
    var = float(weight @ (centred * centred))
    slope = float(weight @ (centred * (offset - mean_off))) / var if var > 0 else 0.0
    return mean_off - slope * mean_at, slope
