"""The simulated camera: renders what was printed at a position, with seeded, realistic print defects.

Why render rather than ship fixture images: verification must be proven against every defect a line
produces (blur, motion, noise, skew, perspective, faded ink, dot-matrix inkjet, smear, a dropped
nozzle band, a missing print, the wrong code) at controlled severities, reproducibly (a seed per item),
through the real decoder. Symbols come from zxing-cpp's own encoder as a module matrix; this module
then paints ink on a label, so ink spread, dots and smear act on modules the way a printer's do.

Reflectances are floats (paper 0.85, conveyor 0.25, ink 0.06); the frame is greyscale uint8.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import zxingcpp
from pydantic import Field, model_validator

from confkit.base import Strict
from drivers.cameras.base import Camera, Image

F32 = npt.NDArray[np.float32]

PAPER = 0.85
CONVEYOR = 0.25
INK = 0.06


class Symbology(StrEnum):
    QR = "qr"
    DATAMATRIX = "datamatrix"
    GS1_DATAMATRIX = "gs1_datamatrix"  # text in bracketed HRI: (01)...(21)...
    GS1_QR = "gs1_qr"  # QR Code with FNC1 in first position; text in bracketed HRI as above
    CODE128 = "code128"


class Defect(StrEnum):
    BLUR = "blur"
    MOTION_BLUR = "motion_blur"
    NOISE = "noise"
    ROTATION = "rotation"
    PERSPECTIVE = "perspective"
    LOW_CONTRAST = "low_contrast"
    DOT_MATRIX = "dot_matrix"
    SMEAR = "smear"
    PARTIAL = "partial"
    MISSING = "missing"
    WRONG_CODE = "wrong_code"


@dataclass(frozen=True, slots=True)
class Defects:
    """How one print went wrong. Zero/None everywhere is a clean print."""

    blur: float = 0.0  # Gaussian sigma in pixels (focus, vibration)
    motion_blur: int = 0  # length in pixels of a linear motion streak
    noise: float = 0.0  # sensor noise, standard deviation in reflectance units (0.05 = 5%)
    rotation: float = 0.0  # degrees, the symbol's skew on the label
    perspective: float = 0.0  # corner displacement as a fraction of the symbol size (tilted label)
    contrast: float = 1.0  # fraction of full ink density (faded ink, a dry head)
    dot_matrix: float = 0.0  # inkjet dots: 0 off; else dot diameter in modules (0.7 = gaps between dots)
    smear: int = 0  # pixels wet ink is dragged along the conveyor direction
    partial: float = 0.0  # fraction of the symbol's height not printed (a blocked group of nozzles)
    missing: bool = False  # nothing printed
    wrong_text: str | None = None  # the coder printed this instead of the expected text

    @classmethod
    def of(cls, kind: Defect, severity: float = 1.0) -> Defects:
        """One defect at a severity in 0..1 (1 is about the edge of readable for a good decoder)."""
        s = max(0.0, severity)
        match kind:
            case Defect.BLUR:
                return cls(blur=0.5 + 2.0 * s)
            case Defect.MOTION_BLUR:
                return cls(motion_blur=max(2, round(2 + 8 * s)))
            case Defect.NOISE:
                return cls(noise=0.02 + 0.12 * s)
            case Defect.ROTATION:
                return cls(rotation=5.0 + 40.0 * s)
            case Defect.PERSPECTIVE:
                return cls(perspective=0.03 + 0.12 * s)
            case Defect.LOW_CONTRAST:
                # Up to 0.5 the ink fades from ISO symbol contrast 55% to 40% (paper 0.85, ink 0.06):
                # grade B to C, as the severity scale promises; beyond, on towards unreadable.
                fade = 0.7 - 0.38 * s if s <= 0.5 else 0.51 - 0.86 * (s - 0.5)
                return cls(contrast=max(0.08, fade))
            case Defect.DOT_MATRIX:
                return cls(dot_matrix=max(0.45, 0.9 - 0.3 * s), blur=0.6)
            case Defect.SMEAR:
                return cls(smear=max(1, round(1 + 2 * s)))
            case Defect.PARTIAL:
                return cls(partial=0.02 + 0.14 * s)
            case Defect.MISSING:
                return cls(missing=True)
            case Defect.WRONG_CODE:
                return cls(wrong_text="")  # "" = the renderer invents a different code
        raise ValueError(f"unknown defect {kind!r}")

    def merge(self, other: Defects) -> Defects:
        """Two defects on one print (the stronger value of each field wins)."""
        return replace(
            self,
            blur=max(self.blur, other.blur),
            motion_blur=max(self.motion_blur, other.motion_blur),
            noise=max(self.noise, other.noise),
            rotation=self.rotation or other.rotation,
            perspective=max(self.perspective, other.perspective),
            contrast=min(self.contrast, other.contrast),
            dot_matrix=self.dot_matrix or other.dot_matrix,
            smear=max(self.smear, other.smear),
            partial=max(self.partial, other.partial),
            missing=self.missing or other.missing,
            wrong_text=self.wrong_text if self.wrong_text is not None else other.wrong_text,
        )


@dataclass(frozen=True, slots=True)
class Box:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Rendered:
    image: Image
    printed: tuple[str | None, ...]  # per region, the text actually printed (None: nothing printed)
    regions: tuple[Box, ...]  # the print region(s) in frame pixels

    @property
    def text(self) -> str | None:
        """What was printed in the first (for a single item: the only) region."""
        return self.printed[0]


def _f32(a: object) -> F32:
    return np.asarray(a, dtype=np.float32)


def module_matrix(text: str, symbology: Symbology, qr_ec_level: str = "M") -> npt.NDArray[np.bool_]:
    """The symbol as a boolean module grid (True = ink), without quiet zone, from zxing-cpp's encoder."""
    fmt = {
        Symbology.QR: zxingcpp.BarcodeFormat.QRCode,
        Symbology.GS1_QR: zxingcpp.BarcodeFormat.QRCode,
        Symbology.DATAMATRIX: zxingcpp.BarcodeFormat.DataMatrix,
        Symbology.GS1_DATAMATRIX: zxingcpp.BarcodeFormat.DataMatrix,
        Symbology.CODE128: zxingcpp.BarcodeFormat.Code128,
    }[symbology]
    if symbology is Symbology.GS1_DATAMATRIX:
        barcode = zxingcpp.create_barcode(text, fmt, gs1=True, force_square=True)
    elif symbology is Symbology.DATAMATRIX:
        barcode = zxingcpp.create_barcode(text, fmt, force_square=True)
    elif symbology is Symbology.QR:
        barcode = zxingcpp.create_barcode(text, fmt, ec_level=qr_ec_level)
    elif symbology is Symbology.GS1_QR:
        barcode = zxingcpp.create_barcode(text, fmt, gs1=True, ec_level=qr_ec_level)
    else:
        barcode = zxingcpp.create_barcode(text, fmt)
    pixels = np.asarray(barcode.to_image(scale=1, add_quiet_zones=False))
    if symbology is Symbology.CODE128:
        pixels = pixels[:1, :]  # one row of bars; height is added when painting
    return pixels < 128


def wrong_text_for(text: str, rng: np.random.Generator) -> str:
    """A plausible other code of the same shape: one character changed (what a mixed-up FIFO prints)."""
    alphabet = "0123456789" if text[-1:].isdigit() else "ABCDEFGHJKLMNPQRSTUVWXYZ"
    i = len(text) - 1 - int(rng.integers(0, min(4, len(text))))
    choices = [c for c in alphabet if c != text[i]]
    return text[:i] + choices[int(rng.integers(0, len(choices)))] + text[i + 1 :]


def _ink_mask(matrix: npt.NDArray[np.bool_], module_px: int, bar_height_px: int, d: Defects) -> F32:
    """Ink coverage 0..1 of the symbol at pixel scale, with dots, nozzle drop-out and smear applied."""
    rows, cols = matrix.shape
    if rows == 1:  # linear code: stretch the bars to their height
        matrix = np.repeat(matrix, max(1, bar_height_px // module_px), axis=0)
        rows = matrix.shape[0]
    if d.dot_matrix > 0:
        mask = np.zeros((rows * module_px, cols * module_px), np.float32)
        radius = max(1, round(d.dot_matrix * module_px / 2))
        for r, c in zip(*np.nonzero(matrix), strict=True):
            centre = (int(c * module_px + module_px // 2), int(r * module_px + module_px // 2))
            cv2.circle(mask, centre, radius, 1.0, thickness=-1, lineType=cv2.LINE_AA)
    else:
        mask = np.kron(matrix.astype(np.float32), np.ones((module_px, module_px), np.float32))
    if d.partial > 0:
        # A blocked group of nozzles for part of the stroke: a hole in the middle of the print. Finder
        # patterns at the edges survive, so the error correction decides whether it still reads.
        h, w = mask.shape
        band = max(1, round(d.partial * h))
        top = (h - band) // 2
        mask[top : top + band, w * 3 // 10 : w - w * 3 // 10] = 0.0
    if d.smear > 0:
        kernel = np.zeros((1, 2 * d.smear + 1), np.float32)
        kernel[0, d.smear :] = np.linspace(1.0, 0.3, d.smear + 1)  # ink dragged to one side
        mask = _f32(np.clip(cv2.filter2D(mask, -1, kernel, borderType=cv2.BORDER_CONSTANT), 0.0, 1.0))
    return mask


def _symbol_patch(mask: F32, quiet_px: int, d: Defects, rng: np.random.Generator) -> F32:
    """Reflectance of the symbol on paper, skewed and tilted as the label sits under the camera."""
    h, w = mask.shape
    pad = int(0.5 * max(h, w)) + quiet_px
    ink = PAPER - d.contrast * (PAPER - INK)
    patch = np.full((h + 2 * pad, w + 2 * pad), PAPER, np.float32)
    patch[pad : pad + h, pad : pad + w] = PAPER + (ink - PAPER) * mask
    ph, pw = patch.shape
    if d.rotation:
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), d.rotation, 1.0)
        patch = _f32(cv2.warpAffine(patch, m, (pw, ph), flags=cv2.INTER_LINEAR, borderValue=PAPER))
    if d.perspective:
        shift = d.perspective * max(h, w)
        src = np.array([[pad, pad], [pad + w, pad], [pad + w, pad + h], [pad, pad + h]], np.float32)
        jitter = rng.uniform(-shift, shift, size=(4, 2)).astype(np.float32)
        jitter[:, 0] = np.sign(jitter[:, 0] + 1e-6) * np.maximum(np.abs(jitter[:, 0]), shift / 2)
        m = cv2.getPerspectiveTransform(src, src + jitter)
        patch = _f32(cv2.warpPerspective(patch, m, (pw, ph), flags=cv2.INTER_LINEAR, borderValue=PAPER))
    return patch


def _camera_effects(frame: F32, d: Defects, rng: np.random.Generator) -> Image:
    if d.blur > 0:
        frame = _f32(cv2.GaussianBlur(frame, (0, 0), d.blur))
    if d.motion_blur > 1:
        kernel = np.zeros((d.motion_blur, d.motion_blur), np.float32)
        kernel[d.motion_blur // 2, :] = 1.0 / d.motion_blur  # along the conveyor (x)
        frame = _f32(cv2.filter2D(frame, -1, kernel))
    if d.noise > 0:
        frame = frame + rng.normal(0.0, d.noise, frame.shape).astype(np.float32)
    return np.asarray(np.clip(frame * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def _paste(frame: F32, patch: F32, cx: int, cy: int) -> None:
    """Paste a patch centred at (cx, cy), clipped at the frame edges."""
    ph, pw = patch.shape
    x0, y0 = cx - pw // 2, cy - ph // 2
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(frame.shape[1], x0 + pw), min(frame.shape[0], y0 + ph)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    # Ink only darkens: taking the minimum keeps neighbouring labels and the conveyor as they were.
    region = frame[fy0:fy1, fx0:fx1]
    np.minimum(region, patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0], out=region)


class SimCameraSettings(Strict):
    width: int = Field(640, ge=64)
    height: int = Field(480, ge=64)
    symbology: Symbology = Symbology.QR
    module_px: int = Field(4, ge=1, le=40)  # pixels per module at the camera
    bar_height_px: int = Field(60, ge=8)  # linear codes
    qr_ec_level: Literal["L", "M", "Q", "H"] = "M"
    region: tuple[int, int, int, int] = (220, 140, 200, 200)  # x, y, width, height of the print region
    label_margin_px: int = Field(40, ge=0)  # label paper beyond the print region
    seed: int = 0

    @model_validator(mode="after")
    def _region_inside(self) -> SimCameraSettings:
        x, y, w, h = self.region
        if min(x, y) < 0 or w <= 0 or h <= 0 or x + w > self.width or y + h > self.height:
            raise ValueError(f"region {self.region} is not inside the {self.width}x{self.height} frame")
        return self


class SimCamera(Camera):
    """A camera whose next frames show what was queued with show(); an empty label when nothing was.

    The verification engineer's line simulator calls show(text, defects, seed) when an item reaches the
    camera position; tests call render() directly for a frame without the async interface.
    """

    Settings = SimCameraSettings

    def __init__(self, settings: SimCameraSettings | None = None, name: str = "sim") -> None:
        super().__init__(name)
        self.settings = settings or SimCameraSettings()
        self._queue: deque[tuple[str | None, Defects, int]] = deque()
        self._count = 0

    @property
    def region(self) -> Box:
        return Box(*self.settings.region)

    def show(self, text: str | None, defects: Defects | None = None, seed: int | None = None) -> None:
        """Queue what the next grab sees: `text` printed with `defects` (None text: no item printed)."""
        self._queue.append((text, defects or Defects(), self.settings.seed + self._count if seed is None else seed))
        self._count += 1

    def render(self, text: str | None, defects: Defects | None = None, seed: int = 0) -> Rendered:
        return render(text, defects or Defects(), seed, self.settings)

    async def _open(self) -> None:
        pass  # items shown before open() stay queued: the line may reach the camera first

    async def _grab(self) -> tuple[Image, float, str]:
        text, defects, seed = self._queue.popleft() if self._queue else (None, Defects(missing=True), 0)
        rendered = await asyncio.to_thread(render, text, defects, seed, self.settings)
        return rendered.image, time.monotonic(), f"sim:{rendered.text}"

    async def _close(self) -> None:
        self._queue.clear()


def _background(settings: SimCameraSettings, boxes: list[Box], margin: int) -> F32:
    frame = np.full((settings.height, settings.width), CONVEYOR, np.float32)
    for b in boxes:
        y0, x0 = max(0, b.y - margin), max(0, b.x - margin)
        frame[y0 : b.y + b.height + margin, x0 : b.x + b.width + margin] = PAPER
    return frame


def render(text: str | None, defects: Defects, seed: int, settings: SimCameraSettings) -> Rendered:
    """One frame: a label at the print region, the code printed on it as the defects say, then the camera."""
    rng = np.random.default_rng(seed)
    box = Box(*settings.region)
    frame = _background(settings, [box], settings.label_margin_px)
    printed = _printed_text(text, defects, rng)
    if printed is not None:
        _print_symbol(frame, printed, box, defects, rng, settings)
    return Rendered(image=_camera_effects(frame, defects, rng), printed=(printed,), regions=(box,))


def _printed_text(text: str | None, defects: Defects, rng: np.random.Generator) -> str | None:
    if text is None or defects.missing:
        return None
    if defects.wrong_text is not None:
        return defects.wrong_text or wrong_text_for(text, rng)
    return text


def _print_symbol(
    frame: F32, text: str, box: Box, d: Defects, rng: np.random.Generator, settings: SimCameraSettings
) -> None:
    matrix = module_matrix(text, settings.symbology, settings.qr_ec_level)
    mask = _ink_mask(matrix, settings.module_px, settings.bar_height_px, d)
    patch = _symbol_patch(mask, 2 * settings.module_px, d, rng)
    jitter = settings.module_px * 2
    cx = box.x + box.width // 2 + int(rng.integers(-jitter, jitter + 1))
    cy = box.y + box.height // 2 + int(rng.integers(-jitter, jitter + 1))
    _paste(frame, patch, cx, cy)


def render_case_top(
    texts: list[str | None],
    defects: list[Defects] | None = None,
    seed: int = 0,
    settings: SimCameraSettings | None = None,
    columns: int | None = None,
) -> Rendered:
    """A case seen from above: one labelled item per text in a grid (6-24 for aggregation stations).

    Each cell's print region is returned in row-major order, so a test knows which code sits where.
    """
    s = settings or SimCameraSettings(width=1280, height=960, module_px=3)
    n = len(texts)
    if n == 0:
        raise ValueError("render_case_top needs at least one text")
    cols = columns or int(np.ceil(np.sqrt(n * s.width / s.height)))
    rows = int(np.ceil(n / cols))
    cell_w, cell_h = s.width // cols, s.height // rows
    rng = np.random.default_rng(seed)
    boxes = [
        Box((i % cols) * cell_w + cell_w // 8, (i // cols) * cell_h + cell_h // 8, cell_w * 3 // 4, cell_h * 3 // 4)
        for i in range(n)
    ]
    frame = _background(s, boxes, 0)
    per_item = defects or [Defects()] * n
    if len(per_item) != n:
        raise ValueError(f"render_case_top: {n} texts but {len(per_item)} defect specs")
    printed: list[str | None] = []
    camera = Defects()  # blur and noise belong to the camera: the strongest asked for applies to all
    for text, d, box in zip(texts, per_item, boxes, strict=True):
        p = _printed_text(text, d, rng)
        if p is not None:
            _print_symbol(frame, p, box, replace(d, blur=0, motion_blur=0, noise=0), rng, s)
        printed.append(p)
        camera = camera.merge(Defects(blur=d.blur, motion_blur=d.motion_blur, noise=d.noise))
    return Rendered(image=_camera_effects(frame, camera, rng), printed=tuple(printed), regions=tuple(boxes))
