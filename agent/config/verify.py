"""Settings of verify stations (decoding, grading, positions) and the enums they use.

Why here and not beside the decoder: the line config must load without the runtime. Importing these
from agent/verify/ pulled in OpenCV, zxing-cpp, the ledger and (through agent/epcis) the config again,
a circle; agent/verify/ now imports them from here, and an import-linter contract in scripts/test
keeps agent/config free of runtime modules.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from agent.config.regions import Region
from confkit.base import Strict


class CodeFormat(StrEnum):
    QR = "qr"
    DATAMATRIX = "datamatrix"
    CODE128 = "code128"
    EAN13 = "ean13"
    CODE39 = "code39"

    @property
    def linear(self) -> bool:
        return self in (CodeFormat.CODE128, CodeFormat.EAN13, CodeFormat.CODE39)


class Backend(StrEnum):
    ZXING = "zxing"  # zxing-cpp: QR, DataMatrix (incl. GS1), 1D; the fast, robust default
    PYZBAR = "pyzbar"  # ZBar: QR and 1D only; kept as a cross-check and for sites that standardised on it


class Gs1Text(StrEnum):
    ELEMENT_STRING = "element_string"  # 01...<GS>21... (GS = 0x1D)
    HRI = "hri"  # (01)...(21)...


class Stage(StrEnum):
    CROP = "crop"  # the print region (the whole frame when no region is set)
    BLUR = "blur"  # the region, Gaussian-blurred
    HALF = "half"  # the region at half scale
    DOUBLE = "double"  # the region at twice the scale
    FULL = "full"  # the whole frame (a print outside its region)
    NONE = "none"  # nothing read


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


class DecoderSettings(Strict):
    """Decode options; sits under a verify station or a camera in the line config."""

    backend: Backend = Backend.ZXING
    formats: list[CodeFormat] = Field(default_factory=lambda: [CodeFormat.QR, CodeFormat.DATAMATRIX], min_length=1)
    region: Region | None = None  # the print region in frame pixels; None decodes the whole frame
    fallback: list[Stage] = Field(default_factory=lambda: [Stage.BLUR, Stage.HALF, Stage.DOUBLE, Stage.FULL])
    blur_sigma: float = Field(1.5, gt=0, le=10)
    deadline_ms: float | None = Field(25.0, gt=0)  # per item; None: every stage runs
    try_invert: bool = False  # light-on-dark prints (laser on dark cartons) need True
    gs1_text: Gs1Text = Gs1Text.ELEMENT_STRING
    expect: int = Field(1, ge=1, le=500)  # codes per image (aggregation: the case's count)

    @model_validator(mode="after")
    def _backend_formats(self) -> DecoderSettings:
        if self.backend is Backend.PYZBAR and CodeFormat.DATAMATRIX in self.formats:
            raise ValueError("the pyzbar backend cannot read DataMatrix; use backend: zxing")
        if Stage.CROP in self.fallback or Stage.NONE in self.fallback:
            raise ValueError("fallback lists only blur, half, double and full (crop always runs first)")
        return self


class GradeSettings(Strict):
    minimum: Grade = Grade.C  # prints graded below this are rejected as low grade
    # Grade one read in `every` (the first always): 1, the default, grades every item. A larger value
    # trades the grade of the items between samples (they are judged on their read alone, so a print
    # below `minimum` between samples passes) for CPU per item; for lines where the grade is watched
    # as a process trend rather than enforced per item.
    every: int = Field(1, ge=1)


class VerifySettings(Strict):
    """Positions in pitches (items) downstream of the print head; see agent.verify.tracker."""

    camera_at: int = Field(3, ge=0)
    read_window: int = Field(1, ge=0)  # pitches after the camera a late read still counts
    gate_at: int = Field(8, ge=1)
    confirm_margin: int = Field(2, ge=0)  # pitches after the gate the confirm may take
    max_consecutive_rejects: int = Field(5, ge=1)
    min_grade: Grade = Grade.C
    # PLC counter reads (agent/verify/pacing.py): at most once per pitch of the line, at least twice
    # within an item's read window and within the way from the window's end to the gate. poll_ms is the
    # fastest interval, and the interval while the pitch is not known yet; poll_max_ms the slowest
    # (a slow line that may speed up). pace: false reads every poll_ms, whatever the line does.
    poll_ms: float = Field(5.0, gt=0)
    poll_max_ms: float = Field(100.0, gt=0)
    pace: bool = True
    # How long a verdict may wait for its commit (agent/verify/recorder.py): its report (packing) and,
    # under positive release, its release wait with it; a good verdict whose item would otherwise come
    # too near the gate is committed sooner. Rejects are fired before their commit either way.
    commit_ms: float = Field(100.0, gt=0, le=10_000)
    # A camera that stamps its images with its own trigger count (drivers/cameras/base.py Frame.index):
    # item seq = that count + this offset (0: the camera's count and the PLC counter started together).
    frame_index_offset: int = Field(0, ge=-(2**31), le=2**31)

    @model_validator(mode="after")
    def _order(self) -> VerifySettings:
        if not self.camera_at + self.read_window < self.gate_at:
            raise ValueError(f"camera_at + read_window ({self.camera_at + self.read_window}) must be "
                             f"below gate_at ({self.gate_at}): every item is judged before the gate")
        return self
