"""Stations: where on the line a job is printed, verified or aggregated, and which devices serve it."""

from __future__ import annotations

from enum import StrEnum

from agent.config.base import Strict


class StationKind(StrEnum):
    PRINT = "print"  # a coder fed from the job's codes
    VERIFY = "verify"  # a camera or reader judges every printed code; rejects through the PLC
    AGGREGATE = "aggregate"  # children collected, a parent code obtained, the link committed


class StationConfig(Strict):
    type: StationKind
    coder: str | None = None
    camera: str | None = None
    reader: str | None = None
    plc: str | None = None
    label_printer: str | None = None
    level: str | None = None  # aggregate: the parent level this station closes

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
