"""An aggregation station: children in, parent code obtained, rules checked, link committed or rejected.

Why the rules run twice (a dry check before the label, the full check inside the commit): a pack that
is already wrong (a bottle short, a foreign code) must not burn a fresh case label or an SSCC, and the
commit must still be safe against anything that changed in between. A rejected pack fires the reject
for that pack through the injected `reject` callable (the PLC adapter belongs to drivers/plc), and its
reasons go to the operator through `notify`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from agent.aggregation import rules
from agent.aggregation.model import AggregationError, LevelPlan, PackRejected, Reason, Violation
from agent.aggregation.packs import Aggregator
from agent.aggregation.parents import ParentCodes
from agent.verify.decode import Decoder
from drivers.cameras.base import Image

Reject = Callable[[str, Sequence[Reason]], Awaitable[None]]  # (pack id for the PLC, reasons)


class StationState(StrEnum):
    IDLE = "idle"
    CHECKING = "checking"
    LABELLING = "labelling"
    COMMITTING = "committing"
    REJECTING = "rejecting"


@dataclass(frozen=True, slots=True)
class PackOutcome:
    """What the operator panel shows for one pack: the parent, the children and, if refused, why."""

    seq: int
    parent: str | None
    children: tuple[str, ...]
    reasons: tuple[Reason, ...] = ()
    message: str = ""

    @property
    def accepted(self) -> bool:
        return not self.reasons


@dataclass
class AggregationStation:
    agg: Aggregator
    plan: LevelPlan
    parents: ParentCodes
    reject: Reject
    job: int
    notify: Callable[[PackOutcome], None] | None = None
    state: StationState = StationState.IDLE
    _seq: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def handle(
        self, children: Sequence[str], *, scanned_parent: str | None = None, partial_reason: str | None = None
    ) -> PackOutcome:
        """One pack, start to end; never raises for a rule failure (that is an outcome), only for faults."""
        async with self._lock:  # one pack at a time: the physical station holds one pack
            self._seq += 1
            seq = self._seq
            try:
                self.state = StationState.CHECKING
                early = await asyncio.to_thread(self._dry_check, list(children), partial_reason)
                if early:
                    raise PackRejected(scanned_parent, self.plan.level, early)
                self.state = StationState.LABELLING
                parent = await self.parents.obtain(scanned_parent)
                self.state = StationState.COMMITTING
                await asyncio.to_thread(self._commit, parent, list(children), partial_reason)
                outcome = PackOutcome(seq, parent, tuple(children), message=f"{self.plan.level} {parent} packed")
            except PackRejected as exc:
                self.state = StationState.REJECTING
                outcome = PackOutcome(seq, exc.parent, tuple(children), tuple(exc.reasons), str(exc))
                await self.reject(exc.parent or f"{self.plan.level}#{seq}", exc.reasons)
            finally:
                self.state = StationState.IDLE
        if self.notify is not None:
            self.notify(outcome)
        return outcome

    def _dry_check(self, children: list[str], partial_reason: str | None) -> list[Violation]:
        with self.agg.ledger.lock:
            known = rules.facts(self.agg.ledger.conn, children)
            lot_row = self.agg.ledger.conn.execute("SELECT lot FROM jobs WHERE id = ?", (self.job,)).fetchone()
        if lot_row is None:
            raise AggregationError(f"station job {self.job} is not in the ledger")
        bad = rules.check_children(self.plan, children, known, job=self.job, lot=lot_row[0],
                                   child_packs=self.plan.child_level in self.agg.plans)
        bad += rules.check_count(self.plan, len(children), closing=True, partial=partial_reason is not None)
        if bad:
            self.agg.journal_rejection(PackRejected(None, self.plan.level, bad), self.job)
        return bad

    def _commit(self, parent: str, children: list[str], partial_reason: str | None) -> None:
        self.agg.pack(self.plan.level, parent, children, job=self.job, partial_reason=partial_reason, durable=True)


def codes_in_image(decoder: Decoder, image: Image, expect: int) -> list[str]:
    """Every code on a pack-top image; asks for one more than expected so an extra bottle shows."""
    return [s.text for s in decoder.decode(image, max_codes=expect + 1).symbols]


@dataclass
class StreamBatcher:
    """Counting the verified stream: every `count` verified children make the next pack."""

    count: int
    _pending: list[str] = field(default_factory=list)

    def push(self, code: str) -> list[str] | None:
        self._pending.append(code)
        if len(self._pending) < self.count:
            return None
        batch, self._pending = self._pending, []
        return batch

    def remainder(self) -> list[str]:
        """What is left at the end of a job: the partial pack an operator force-closes."""
        batch, self._pending = self._pending, []
        return batch
