"""The pack store: open, link, close, park and resume packs, each step one ledger transaction.

Why the whole pack in one transaction (`pack`): the station has every child and the parent in hand,
and "the case holds exactly these bottles" must never be half true in the ledger. The incremental
path (`open`/`add`/`close`) serves pallets built case by case, which may be parked and resumed.
Every link writes its AggregationEvent ADD in the same transaction (transactional outbox).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from agent.aggregation import events, rules
from agent.aggregation.events import EventContext
from agent.aggregation.model import (
    UNFINISHED,
    AggregationError,
    LevelPlan,
    PackInfo,
    PackRejected,
    PackState,
    Reason,
    Violation,
)
from agent.ledger import CodeState, Ledger

# How a parent code reaches `verified` (commissioned) when its pack is made; each hop is legal.
TO_VERIFIED: dict[CodeState, list[CodeState]] = {
    CodeState.AVAILABLE: [CodeState.ALLOCATED, CodeState.PRINTED, CodeState.VERIFIED],
    CodeState.RETURNED: [CodeState.ALLOCATED, CodeState.PRINTED, CodeState.VERIFIED],
    CodeState.ALLOCATED: [CodeState.PRINTED, CodeState.VERIFIED],
    CodeState.PRINTED: [CodeState.VERIFIED],
    CodeState.VERIFIED: [],
}


def to_verified(ledger: Ledger, parents: Sequence[rules.CodeFacts], *, job: int | None, at: float,
                ctx: EventContext) -> None:
    """Walk pack parent codes to `verified` hop by hop through the ledger's guarded transitions, and
    commission those that were not yet (one ObjectEvent ADD, before any event packs them).

    Each hop is a guarded transition the transition table allows (and the ledger file's trigger
    re-checks): one code walks with one journal event, a burst moves all parents that share a state
    with one statement and one event per hop.
    """
    fresh = [f.code for f in parents if f.state is not CodeState.VERIFIED]
    if fresh:
        events.journal_commission(ledger, ctx, fresh, at, job)
    by_state: dict[CodeState, list[str]] = {}
    for f in parents:
        by_state.setdefault(f.state, []).append(f.code)
    for state, codes in by_state.items():
        source = state
        if not TO_VERIFIED[state]:
            continue
        if len(codes) == 1:
            ledger.walk(codes[0], TO_VERIFIED[state], expect=state, job=job, at=at)
            continue
        for hop in TO_VERIFIED[state]:
            ledger.transition_many(codes, hop, expect=source, job=job, at=at)
            source = hop

_INFO_SQL = (
    "SELECT c.code, c.id, p.level, p.job, p.state, p.expected_count,"
    " (SELECT COUNT(*) FROM pack_links l WHERE l.parent = p.code), p.partial_reason, p.created_at,"
    " p.closed_at FROM packs p JOIN codes c ON c.id = p.code WHERE c.code = ?"
)


class Aggregator:
    """Pack operations over one ledger and one packing spec (its levels and counts)."""

    def __init__(self, ledger: Ledger, plans: dict[str, LevelPlan], ctx: EventContext) -> None:
        self.ledger = ledger
        self.plans = plans
        self.ctx = ctx
        self._lots: dict[int, str] = {}

    # ---- queries ------------------------------------------------------------------------------

    def plan(self, level: str) -> LevelPlan:
        try:
            return self.plans[level]
        except KeyError:
            known = ", ".join(self.plans) or "none"
            raise AggregationError(f"level {level!r} is not a parent level of this packing spec ({known})") from None

    def info(self, code: str) -> PackInfo:
        with self.ledger.lock:
            return pack_info(self.ledger.conn, code)

    def children_of(self, code: str) -> list[str]:
        with self.ledger.lock:
            return children_of(self.ledger.conn, code)

    def unfinished(self, level: str | None = None) -> list[PackInfo]:
        """Open and parked packs: what a station resumes after a restart."""
        with self.ledger.lock:
            rows = self.ledger.conn.execute(
                "SELECT c.code FROM packs p JOIN codes c ON c.id = p.code WHERE p.state IN ('open', 'parked')"
                " AND (? IS NULL OR p.level = ?) ORDER BY p.id",
                (level, level),
            ).fetchall()
        return [self.info(r[0]) for r in rows]

    # ---- making packs -------------------------------------------------------------------------

    def pack(
        self,
        level: str,
        parent: str,
        children: Sequence[str],
        *,
        job: int | None = None,
        partial_reason: str | None = None,
        durable: bool = False,
    ) -> PackInfo:
        """Check every rule, then parent + links + ADD event + closed state in one transaction.

        Raises PackRejected (nothing linked; the rejection is journaled) when any rule fails.
        """
        plan = self.plan(level)
        _check_reason(partial_reason)
        try:
            with self.ledger.atomic(durable=durable) as conn:
                known = rules.facts(conn, [parent, *children])
                lot = self.lot_of(conn, job)
                bad = rules.check_parent(plan, parent, known.get(parent))
                bad += rules.check_children(
                    plan, children, known, job=job, lot=lot, child_packs=plan.child_level in self.plans
                )
                bad += rules.check_count(plan, len(children), closing=True, partial=partial_reason is not None)
                if bad:
                    raise PackRejected(parent, level, bad)
                at = time.time()
                pack_job = job if job is not None else known[children[0]].job
                self._make(conn, plan, known[parent], pack_job, PackState.CLOSED, at, partial_reason)
                self._link(conn, parent, known[parent].id, [known[c].id for c in children], children, at, pack_job)
                if partial_reason is not None:
                    _history(conn, "force_close", known[parent].id, None, {"reason": partial_reason}, at)
        except PackRejected as exc:
            self.journal_rejection(exc, job)
            raise
        # Built from what was just written rather than read back: this is the hot path of a line.
        return PackInfo(parent, known[parent].id, level, pack_job, PackState.CLOSED, plan.count, len(children),
                        partial_reason, at, at)

    def open(self, level: str, parent: str, *, job: int | None = None) -> PackInfo:
        """Start a pack that fills over time (a pallet, case by case); no children yet, no event yet."""
        plan = self.plan(level)
        with self.ledger.atomic(durable=True) as conn:
            known = rules.facts(conn, [parent])
            bad = rules.check_parent(plan, parent, known.get(parent))
            if bad:
                raise PackRejected(parent, level, bad)
            self._make(conn, plan, known[parent], job, PackState.OPEN, time.time(), None)
        return self.info(parent)

    def add(self, parent: str, children: Sequence[str], *, durable: bool = True) -> PackInfo:
        """Link more children to an open pack: all of them with one ADD event, or none of them."""
        with self.ledger.lock:  # the pack read and the links it allows must not interleave with another add
            pack = self.info(parent)
            if pack.state is not PackState.OPEN:
                raise AggregationError(f"{pack.level} {parent!r} is {pack.state}; only an open pack takes children")
            plan = self.plan(pack.level)
            try:
                with self.ledger.atomic(durable=durable) as conn:
                    known = rules.facts(conn, children)
                    bad = rules.check_children(
                        plan, children, known, job=pack.job, lot=self.lot_of(conn, pack.job),
                        child_packs=plan.child_level in self.plans,
                    )
                    bad += rules.check_count(plan, pack.children + len(children), closing=False, partial=False)
                    if bad:
                        raise PackRejected(parent, pack.level, bad)
                    at = time.time()
                    job = pack.job if pack.job is not None else known[children[0]].job
                    if pack.job is None:
                        conn.execute("UPDATE packs SET job = ? WHERE code = ?", (job, pack.code_id))
                    self._link(conn, parent, pack.code_id, [known[c].id for c in children], children, at, job)
            except PackRejected as exc:
                self.journal_rejection(exc, pack.job)
                raise
            return self.info(parent)

    def close(self, parent: str, *, partial_reason: str | None = None) -> PackInfo:
        """Close an open or parked pack: exact count, or a force-close with its reason recorded."""
        _check_reason(partial_reason)
        with self.ledger.lock:
            pack = self.info(parent)
            if pack.state not in UNFINISHED:
                raise AggregationError(f"{pack.level} {parent!r} is {pack.state}; only an open or parked pack closes")
            plan = self.plan(pack.level)
            bad = rules.check_count(plan, pack.children, closing=True, partial=partial_reason is not None)
            if pack.children == 0:
                bad.append(Violation(Reason.NO_CHILDREN, parent, "an empty pack cannot close; unlink or leave it"))
            if bad:
                raise PackRejected(parent, pack.level, bad)
            now = time.time()
            with self.ledger.atomic(durable=True) as conn:
                conn.execute(
                    "UPDATE packs SET state = 'closed', closed_at = ?, partial_reason = ? WHERE code = ?",
                    (now, partial_reason, pack.code_id),
                )
                if partial_reason is not None:
                    detail = {"reason": partial_reason, "children": pack.children, "expected": pack.expected_count}
                    _history(conn, "force_close", pack.code_id, None, detail, now)
                self.ledger.append_event("pack.closed", {"level": pack.level, "children": pack.children,
                                                         "partial_reason": partial_reason}, code=parent, job=pack.job)
            return self.info(parent)

    def park(self, parent: str) -> PackInfo:
        return self._move(parent, PackState.OPEN, PackState.PARKED, "park")

    def resume(self, parent: str) -> PackInfo:
        return self._move(parent, PackState.PARKED, PackState.OPEN, "resume")

    # ---- internals ----------------------------------------------------------------------------

    def lot_of(self, conn: sqlite3.Connection, job: int | None) -> str | None:
        """A job's lot never changes once created, so it is read once per job."""
        if job is None:
            return None
        if job not in self._lots:
            row = conn.execute("SELECT lot FROM jobs WHERE id = ?", (job,)).fetchone()
            if row is None:
                return None
            self._lots[job] = str(row[0])
        return self._lots[job]

    def _move(self, parent: str, source: PackState, target: PackState, action: str) -> PackInfo:
        with self.ledger.lock:
            pack = self.info(parent)
            if pack.state is not source:
                raise AggregationError(f"{pack.level} {parent!r} is {pack.state}; {action} needs it {source}")
            now = time.time()
            with self.ledger.atomic(durable=True) as conn:
                conn.execute("UPDATE packs SET state = ? WHERE code = ?", (target.value, pack.code_id))
                _history(conn, action, pack.code_id, None, {"children": pack.children}, now)
                self.ledger.append_event(f"pack.{action}", {"level": pack.level}, code=parent, job=pack.job)
            return self.info(parent)

    def _make(
        self,
        conn: sqlite3.Connection,
        plan: LevelPlan,
        parent: rules.CodeFacts,
        job: int | None,
        state: PackState,
        at: float,
        partial_reason: str | None,
    ) -> None:
        to_verified(self.ledger, [parent], job=job, at=at, ctx=self.ctx)
        conn.execute(
            "INSERT INTO packs(code, level, job, state, expected_count, partial_reason, created_at, closed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (parent.id, plan.level, job, state.value, plan.count, partial_reason, at,
             at if state is PackState.CLOSED else None),
        )

    def _link(
        self,
        conn: sqlite3.Connection,
        parent: str,
        parent_id: int,
        child_ids: Sequence[int],
        children: Sequence[str],
        at: float,
        job: int | None,
    ) -> None:
        try:
            conn.executemany(
                "INSERT INTO pack_links(child, parent, linked_at) VALUES (?, ?, ?)",
                [(c, parent_id, at) for c in child_ids],
            )
        except sqlite3.IntegrityError as exc:  # another writer linked one first: the key says no
            raise AggregationError(f"a child of {parent!r} was linked elsewhere meanwhile: {exc}") from exc
        events.journal_link(self.ledger, self.ctx, parent, children, at, job)

    def journal_rejection(self, exc: PackRejected, job: int | None) -> None:
        """Rejections are facts too (the reject gate fired for them); journaled, not uplinked."""
        with self.ledger.atomic():
            self.ledger.append_event(
                "pack.rejected",
                {"level": exc.level, "reasons": [str(r) for r in exc.reasons],
                 "violations": [str(v) for v in exc.violations[:50]]},
                code=exc.parent, job=job,
            )


def _check_reason(partial_reason: str | None) -> None:
    if partial_reason is not None and not partial_reason.strip():
        raise AggregationError("a force-close needs a reason the auditor can read")


def pack_info(conn: sqlite3.Connection, code: str) -> PackInfo:
    r = conn.execute(_INFO_SQL, (code,)).fetchone()
    if r is None:
        raise AggregationError(f"{code!r} is not a pack")
    return PackInfo(r[0], r[1], r[2], r[3], PackState(r[4]), r[5], r[6], r[7], r[8], r[9])


def children_of(conn: sqlite3.Connection, code: str) -> list[str]:
    rows = conn.execute(
        "SELECT k.code FROM codes p JOIN pack_links l ON l.parent = p.id JOIN codes k ON k.id = l.child"
        " WHERE p.code = ? ORDER BY l.linked_at, k.id",
        (code,),
    ).fetchall()
    return [r[0] for r in rows]


def _history(
    conn: sqlite3.Connection, action: str, code: int, other: int | None, detail: dict[str, object], at: float
) -> None:
    conn.execute(
        "INSERT INTO pack_history(at, action, code, other, detail) VALUES (?, ?, ?, ?, ?)",
        (at, action, code, other, json.dumps(detail, default=str)),
    )
