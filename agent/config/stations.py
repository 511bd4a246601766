"""Stations: where on the line a job is printed, verified or aggregated, and which devices serve it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from agent.config.verify import DecoderSettings, GradeSettings, VerifySettings
from confkit.base import Strict


class StationKind(StrEnum):
    PRINT = "print"  # a coder fed from the job's codes
    VERIFY = "verify"  # a camera or reader judges every printed code; rejects through the PLC
    AGGREGATE = "aggregate"  # children collected, a parent code obtained, the link committed


class FeedSettings(Strict):
    """How a print station keeps its coder's FIFO; None fields take the coder's capacity-based defaults."""

    target_depth: int | None = Field(None, ge=1, le=100_000)
    low_water: int | None = Field(None, ge=0, le=100_000)
    allocate_ahead: int | None = Field(None, ge=1, le=10_000_000)
    push_chunk: int = Field(64, ge=1, le=10_000)
    poll_ms: float = Field(20.0, gt=0, le=60_000)  # the shortest wait between two looks at the coder
    # The longest: looks are paced by the FIFO's headroom at the line's rate (agent/feeder_pace.py), so a
    # comfortably full FIFO is looked at only this often. Never below poll_ms.
    max_poll_ms: float = Field(250.0, gt=0, le=60_000)
    # The highest rate items pass this coder. Needed for a coder whose link limits the rate (a single
    # slot: one code per item, each confirmed before the next): the line is not started faster.
    line_rate_per_min: float | None = Field(None, gt=0, le=1_000_000)


class StationConfig(Strict):
    type: StationKind
    coder: str | None = None
    camera: str | None = None
    reader: str | None = None
    plc: str | None = None
    label_printer: str | None = None
    level: str | None = None  # aggregate: the parent level this station closes
    # print stations
    feed: FeedSettings = Field(default_factory=FeedSettings)
    # verify stations: positions, reject limits, decoding and grading. `print_station` names the print
    # station whose prints this station judges (default: the only one).
    verify: VerifySettings = Field(default_factory=VerifySettings)
    decode: DecoderSettings = Field(default_factory=DecoderSettings)
    grade: GradeSettings = Field(default_factory=GradeSettings)
    print_station: str | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> StationConfig:
        if self.type is StationKind.PRINT and not self.coder:
            raise ValueError("a print station needs 'coder'")
        if self.type is StationKind.VERIFY and not (self.camera or self.reader):
            raise ValueError("a verify station needs 'camera' or 'reader'")
        if self.type is StationKind.AGGREGATE and not self.level:
            raise ValueError("an aggregate station needs 'level' (the parent level it closes)")
        return self

    def device_refs(self) -> dict[str, str]:
        """(device group, name) pairs this station refers to, for cross-checks."""
        refs = {
            "coders": self.coder,
            "cameras": self.camera,
            "readers": self.reader,
            "plcs": self.plc,
            "label_printers": self.label_printer,
        }
        return {k: v for k, v in refs.items() if v}
