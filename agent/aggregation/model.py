"""The aggregation vocabulary: pack states, rule-failure reasons, the per-level plan and the errors.

Why reasons are an enum and not free text: the operator panel, the PLC reject and the tests all key
on them (超码 too many, 缺码 too few, 重码 duplicate, 错码 foreign, mixed lot), so they must not drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from agent.config.model import PackingSpec, ParentSource
from agent.ledger import LedgerError


class PackState(StrEnum):
    OPEN = "open"  # collecting children; may be parked
    PARKED = "parked"  # an unfinished pack set aside (暂存); resumed later, even after a restart
    CLOSED = "closed"  # complete, or force-closed with partial_reason recorded
    UNPACKED = "unpacked"  # its children were unlinked (AggregationEvent DELETE); the code is spent
    REPLACED = "replaced"  # its code was replaced by another of the same level; history kept
    DECOMMISSIONED = "decommissioned"  # taken out of commerce with everything inside it


# Packs whose children may still change.
UNFINISHED: frozenset[PackState] = frozenset({PackState.OPEN, PackState.PARKED})


class Reason(StrEnum):
    TOO_MANY = "too_many"  # 超码: more children than the level holds
    TOO_FEW = "too_few"  # 缺码: fewer, and no force-close
    DUPLICATE = "duplicate"  # 重码: the same child twice in one pack
    ALREADY_PACKED = "already_packed"  # the child is in another parent already
    FOREIGN = "foreign"  # 错码: not a code of this line's packages
    WRONG_LEVEL = "wrong_level"  # a code of another level (a case code among bottles)
    NOT_VERIFIED = "not_verified"  # an item never read back good
    CHILD_NOT_CLOSED = "child_not_closed"  # a box or case that is not a closed pack
    MIXED_JOB = "mixed_job"  # children of two jobs
    MIXED_LOT = "mixed_lot"  # children of two lots
    PARENT_FOREIGN = "parent_foreign"  # the parent code is in no package of this line
    PARENT_WRONG_LEVEL = "parent_wrong_level"  # the parent code belongs to another level
    PARENT_USED = "parent_used"  # the parent code is already a pack or otherwise spent
    NO_CHILDREN = "no_children"  # nothing was read


@dataclass(frozen=True, slots=True)
class Violation:
    reason: Reason
    code: str | None
    detail: str

    def __str__(self) -> str:
        where = f" {self.code!r}" if self.code else ""
        return f"{self.reason}{where}: {self.detail}"


class AggregationError(LedgerError):
    """An aggregation operation refused as asked; the message says what and where."""


class PackRejected(AggregationError):
    """A pack that failed its rules; nothing was linked. `reasons` is what the operator sees."""

    def __init__(self, parent: str | None, level: str, violations: Sequence[Violation]) -> None:
        self.parent = parent
        self.level = level
        self.violations = list(violations)
        head = f"{level} {parent!r}" if parent else f"{level} pack"
        lines = "; ".join(str(v) for v in self.violations[:10])
        more = f" (+{len(self.violations) - 10} more)" if len(self.violations) > 10 else ""
        super().__init__(f"{head} rejected: {lines}{more}")

    @property
    def reasons(self) -> list[Reason]:
        seen: list[Reason] = []
        for v in self.violations:
            if v.reason not in seen:
                seen.append(v.reason)
        return seen


@dataclass(frozen=True, slots=True)
class LevelPlan:
    """One parent level of a packing spec: what it holds, how many, and where its code comes from."""

    level: str
    child_level: str
    count: int
    source: ParentSource


def plan_levels(spec: PackingSpec) -> dict[str, LevelPlan]:
    """Parent level -> its plan, for a spec of any depth (item -> box -> ... -> pallet)."""
    plans: dict[str, LevelPlan] = {}
    for below, lv in zip(spec.levels, spec.levels[1:], strict=False):
        if lv.count is None or lv.parent_code is None:  # the spec validator already refuses this
            raise AggregationError(f"level {lv.level!r} needs count and parent_code")
        plans[lv.level] = LevelPlan(lv.level, below.level, lv.count, lv.parent_code)
    return plans


@dataclass(frozen=True, slots=True)
class PackInfo:
    """A pack as the ledger holds it (for `pack show`, the station and the operations)."""

    code: str
    code_id: int
    level: str
    job: int | None
    state: PackState
    expected_count: int
    children: int
    partial_reason: str | None
    created_at: float
    closed_at: float | None
