"""Benchmarks behind `scripts/bench [--quick]`: each part measures itself beside a baseline from the same run.

A part is a module in bench/ with `run(quick: bool) -> dict[str, Figure]`; bench/__main__.py lists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Figure:
    value: float
    unit: str
    baseline: float | None  # the same work done the plain way (raw sqlite3, raw paho, pyzbar, link rate)
    target: float | None
    note: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return round(self.value / self.baseline, 3)

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["value"] = round(self.value, 3)
        if self.baseline is not None:
            d["baseline"] = round(self.baseline, 3)
        d["meets_target"] = (
            None
            if self.target is None
            else (self.value >= self.target if self.higher_is_better else self.value <= self.target)
        )
        return d
