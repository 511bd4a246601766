"""Benchmarks behind `scripts/bench [--quick]`: each part measures itself beside a baseline from the same run.

A part is a module in bench/ with `run(quick: bool) -> dict[str, Figure]`; bench/__main__.py lists them.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field


@dataclass
class Figure:
    value: float
    unit: str
    baseline: float | None  # the same work done the plain way (raw sqlite3, raw paho, pyzbar, link rate)
    target: float | None
    note: str = ""
    higher_is_better: bool = True
    runs: list[float] = field(default_factory=list)  # the value of every repeat (bench/__main__.py --repeat)
    baseline_runs: list[float] = field(default_factory=list)

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
        if len(self.runs) > 1:
            d["runs"] = [round(r, 3) for r in self.runs]
            d["spread"] = [round(min(self.runs), 3), round(max(self.runs), 3)]
        else:
            d.pop("runs")
        if len(self.baseline_runs) <= 1:
            d.pop("baseline_runs")
        else:
            d["baseline_runs"] = [round(r, 3) for r in self.baseline_runs]
        d["meets_target"] = (
            None
            if self.target is None
            else (self.value >= self.target if self.higher_is_better else self.value <= self.target)
        )
        return d


def merge(repeats: list[Figure]) -> Figure:
    """One figure from several runs of the same part: the median, with every run kept for the spread.

    Why the median: on a shared machine one run in three is slowed by a neighbour; the median is the
    typical run and the spread says how much the neighbours moved it."""
    first = repeats[0]
    values = [f.value for f in repeats]
    bases = [f.baseline for f in repeats if f.baseline is not None]
    return Figure(
        statistics.median(values), first.unit, statistics.median(bases) if bases else None, first.target,
        note=first.note if len(repeats) == 1 else f"median of {len(repeats)} runs; first run: {first.note}",
        higher_is_better=first.higher_is_better, runs=values, baseline_runs=bases)
