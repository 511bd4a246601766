"""Many full packs in one transaction: for a counting station closing packs in bursts, and backfills.

Why a separate path: a station that counts the verified stream (or re-aggregates a day's scans after
a camera outage) closes dozens of packs at once; checking them with one rules query and writing them
with one statement per table costs a fraction of one transaction per pack. The rules are exactly the
single-pack rules, applied to each pack alone plus "not already used by an earlier pack of this
burst". A pack that fails is left out, journaled and returned with its reasons; every pack written
still gets its own AggregationEvent ADD in the same transaction as its links.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from agent.aggregation import events, rules
from agent.aggregation.model import PackRejected, PackState, Reason, Violation
from agent.aggregation.packs import Aggregator, to_verified

Burst = Sequence[tuple[str, Sequence[str]]]  # (parent code, its children) per pack


def pack_burst(agg: Aggregator, level: str, packs: Burst, *, job: int, durable: bool = False) -> list[PackRejected]:
    """Check and link every pack of the burst; returns the rejected ones (nothing of them is written)."""
    plan = agg.plan(level)
    child_packs = plan.child_level in agg.plans
    rejected: list[PackRejected] = []
    good: list[tuple[rules.CodeFacts, Sequence[str]]] = []
    with agg.ledger.atomic(durable=durable) as conn:
        known = rules.facts(conn, [c for parent, kids in packs for c in (parent, *kids)])
        lot = agg.lot_of(conn, job)
        taken: set[str] = set()
        for parent, kids in packs:
            bad = rules.check_parent(plan, parent, known.get(parent))
            bad += rules.check_children(plan, kids, known, job=job, lot=lot, child_packs=child_packs)
            bad += rules.check_count(plan, len(kids), closing=True, partial=False)
            if parent in taken:
                bad.append(Violation(Reason.PARENT_USED, parent, "is the parent of an earlier pack of this burst"))
            earlier = "is in an earlier pack of this burst"
            bad += [Violation(Reason.ALREADY_PACKED, c, earlier) for c in kids if c in taken]
            if bad:
                rejected.append(PackRejected(parent, level, bad))
                continue
            taken.update((parent, *kids))
            good.append((known[parent], kids))
        at = time.time()
        to_verified(agg.ledger, [f for f, _ in good], job=job, at=at, ctx=agg.ctx)
        conn.executemany(
            "INSERT INTO packs(code, level, job, state, expected_count, created_at, closed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(f.id, level, job, PackState.CLOSED.value, plan.count, at, at) for f, _ in good],
        )
        conn.executemany(
            "INSERT INTO pack_links(child, parent, linked_at) VALUES (?, ?, ?)",
            [(known[c].id, f.id, at) for f, kids in good for c in kids],
        )
        named = events.name_all(agg.ledger, agg.ctx, [c for f, kids in good for c in (f.code, *kids)])
        for f, kids in good:
            events.journal_link(agg.ledger, agg.ctx, f.code, kids, at, job, named=named)
    for exc in rejected:
        agg.journal_rejection(exc, job)
    return rejected
