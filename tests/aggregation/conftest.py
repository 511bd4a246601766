"""A ledger with a running job, verified bottles and box/case codes in packages: the packing floor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.aggregation.events import EventContext
from agent.aggregation.model import LevelPlan, plan_levels
from agent.aggregation.packs import Aggregator
from agent.config.model import PackingSpec
from agent.jobs import JobSpec, create_job
from agent.ledger import CodeState, Ledger
from tests.helpers import seed_codes

SPEC = PackingSpec.model_validate({"levels": [
    {"level": "item"},
    {"level": "box", "count": 2, "parent_code": "preprinted"},
    {"level": "case", "count": 3, "parent_code": "print"},
    {"level": "pallet", "count": 2, "parent_code": "mint"},
]})


@dataclass
class Floor:
    ledger: Ledger
    agg: Aggregator
    job: int
    items: list[str]
    boxes: list[str]
    cases: list[str]

    def verify(self, codes: list[str], job: int | None = None) -> None:
        """Items as the verify station leaves them: verified, tied to the job (by the legal path only:
        the ledger file refuses any other move)."""
        with self.ledger.lock:
            rows = self.ledger.conn.execute(
                f"SELECT code, state FROM codes WHERE code IN ({','.join('?' * len(codes))})", codes).fetchall()
        path = [CodeState.AVAILABLE, CodeState.ALLOCATED, CodeState.SENT, CodeState.PRINTED, CodeState.VERIFIED]
        with self.ledger.atomic(durable=True) as conn:
            conn.executemany("UPDATE codes SET job = ? WHERE code = ?",  # a test re-assigns a verified item
                             [(job or self.job, r[0]) for r in rows if r[1] == CodeState.VERIFIED])
            for start in path[:-1]:
                todo = [r[0] for r in rows if r[1] == start]
                for source, target in zip(path[path.index(start):], path[path.index(start) + 1:], strict=False):
                    self.ledger.transition_many(todo, target, expect=source, job=job or self.job)


def make_floor(path: Path, *, items: int = 60, boxes: int = 30, cases: int = 10,
               plans: dict[str, LevelPlan] | None = None) -> Floor:
    ledger = Ledger(path)
    job = create_job(ledger, JobSpec("J1", "09506000134352", "Water", "LOT1", 1000))
    item_codes = [f"I{i:05d}" for i in range(items)]
    box_codes = [f"B{i:05d}" for i in range(boxes)]
    case_codes = [f"C{i:05d}" for i in range(cases)]
    seed_codes(ledger, item_codes, level="item", package_id="pi")
    seed_codes(ledger, box_codes, level="box", package_id="pb")
    seed_codes(ledger, case_codes, level="case", package_id="pc")
    ctx = EventContext("urn:epc:id:sgln:0614141.00777.0", None, "+08:00")
    floor = Floor(ledger, Aggregator(ledger, plans or plan_levels(SPEC), ctx), job, item_codes, box_codes,
                  case_codes)
    floor.verify(item_codes)
    return floor


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[Floor]:
    f = make_floor(tmp_path / "ledger.db")
    yield f
    f.ledger.close()
