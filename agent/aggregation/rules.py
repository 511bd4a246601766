"""The packing rules, as plain checks over rows read in the caller's transaction.

Why every check returns all violations instead of stopping at the first: the operator fixes a
rejected pack by hand, and "2 duplicates and 1 foreign code" is one trip to the conveyor, not three.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from agent.aggregation.model import LevelPlan, PackState, Reason, Violation
from agent.ledger import CodeState

# A parent code may be taken from these states; the pack moves it on to verified (commissioned).
PARENT_USABLE: frozenset[CodeState] = frozenset(
    {CodeState.AVAILABLE, CodeState.RETURNED, CodeState.ALLOCATED, CodeState.PRINTED, CodeState.VERIFIED}
)


class CodeFacts(NamedTuple):
    """A code with what the rules need: its state, its job and lot, its pack (if any), its parent.

    A NamedTuple, not a frozen dataclass: a burst reads a thousand of these per pallet, and a tuple is
    built several times faster.
    """

    id: int
    code: str
    level: str
    state: CodeState
    job: int | None
    lot: str | None
    pack_state: PackState | None
    parent: int | None


# Plain `IN (?, ?, ...)` in chunks: measured faster than binding one JSON array through json_each
# (no JSON text to build and parse per burst), and a burst's chunks repeat the same few sizes, so their
# statements stay in the connection's statement cache. 999 is the oldest SQLite's variable limit.
_FACTS_SQL = (
    "SELECT c.id, c.code, c.level, c.state, COALESCE(p.job, c.job), p.state, l.parent"
    " FROM codes c LEFT JOIN packs p ON p.code = c.id LEFT JOIN pack_links l ON l.child = c.id"
    " WHERE c.code IN ({})"
)
_CHUNK = 999
_CODE_STATES = {s.value: s for s in CodeState}
_PACK_STATES = {s.value: s for s in PackState}


def _rows(conn: sqlite3.Connection, sql: str, keys: Sequence[object]) -> list[tuple[Any, ...]]:
    """`sql` with its IN list filled per chunk of keys, as plain tuples (no Row objects: they cost more
    than the index lookups behind them)."""
    cur = conn.cursor()
    cur.row_factory = None
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i:i + _CHUNK]
        rows += cur.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
    return rows


def facts(conn: sqlite3.Connection, codes: Iterable[str]) -> dict[str, CodeFacts]:
    """What the rules need of each code, read in one pass; codes the ledger does not hold are absent."""
    rows = _rows(conn, _FACTS_SQL, list(dict.fromkeys(codes)))
    jobs = sorted({r[4] for r in rows if r[4] is not None})
    lots: dict[int, str] = dict(_rows(conn, "SELECT id, lot FROM jobs WHERE id IN ({})", jobs)) if jobs else {}
    code_states, pack_states = _CODE_STATES, _PACK_STATES
    out: dict[str, CodeFacts] = {}
    for cid, code, level, state, job, pack_state, parent in rows:
        out[code] = CodeFacts(cid, code, level, code_states[state], job, None if job is None else lots.get(job),
                              pack_states[pack_state] if pack_state else None, parent)
    return out


def check_children(
    plan: LevelPlan,
    children: Sequence[str],
    known: dict[str, CodeFacts],
    *,
    job: int | None,
    lot: str | None,
    child_packs: bool,
) -> list[Violation]:
    """Every child: of this line, of the level below, verified (or a closed pack), free, same job and lot.

    `child_packs` says the level below is itself a pack level (boxes in a case), so a child proves
    itself by being a closed pack rather than by a good read.
    """
    out: list[Violation] = []
    if not children:
        return [Violation(Reason.NO_CHILDREN, None, f"no {plan.child_level} codes were read")]
    unique = dict.fromkeys(children)
    if len(unique) != len(children):  # counted only when there is a duplicate: the hot path has none
        for code, n in Counter(children).items():
            if n > 1:
                out.append(Violation(Reason.DUPLICATE, code, f"read {n} times in one {plan.level}"))
    want_job, want_lot = job, lot
    for code in unique:
        f = known.get(code)
        if f is None:
            out.append(Violation(Reason.FOREIGN, code, "not in any code package of this line"))
            continue
        if f.level != plan.child_level:
            holds = f"a {plan.level} holds {plan.child_level}"
            out.append(Violation(Reason.WRONG_LEVEL, code, f"is a {f.level} code; {holds}"))
            continue
        if f.parent is not None:
            out.append(Violation(Reason.ALREADY_PACKED, code, "is already in another parent"))
        if child_packs:
            if f.pack_state is not PackState.CLOSED:
                now = f"a {f.pack_state} pack" if f.pack_state else "no pack at all"
                out.append(Violation(Reason.CHILD_NOT_CLOSED, code, f"is {now}, not a closed {plan.child_level}"))
        elif f.state is not CodeState.VERIFIED:
            out.append(Violation(Reason.NOT_VERIFIED, code, f"was never verified (state {f.state})"))
        if f.job is None:  # never tied to a job: already refused above as unverified or not a pack
            continue
        if want_job is None:
            want_job, want_lot = f.job, f.lot
        elif f.job != want_job:
            if f.lot != want_lot:
                out.append(Violation(Reason.MIXED_LOT, code, f"is lot {f.lot!r}, the pack is lot {want_lot!r}"))
            else:
                out.append(Violation(Reason.MIXED_JOB, code, f"is job {f.job}, the pack is job {want_job}"))
    return out


def check_parent(plan: LevelPlan, code: str, f: CodeFacts | None) -> list[Violation]:
    """The parent code: of this line, of this level, and never a pack or a child before."""
    if f is None:
        return [Violation(Reason.PARENT_FOREIGN, code, "not in any code package of this line")]
    if f.level != plan.level:
        return [Violation(Reason.PARENT_WRONG_LEVEL, code, f"is a {f.level} code, not {plan.level}")]
    if f.pack_state is not None:
        return [Violation(Reason.PARENT_USED, code, f"is already a {f.pack_state} {plan.level}")]
    if f.parent is not None:
        return [Violation(Reason.PARENT_USED, code, "is already inside another pack")]
    if f.state not in PARENT_USABLE:
        return [Violation(Reason.PARENT_USED, code, f"is {f.state}; it cannot become a {plan.level}")]
    return []


def check_count(plan: LevelPlan, have: int, *, closing: bool, partial: bool) -> list[Violation]:
    """Exact count: more is always wrong; fewer only when the operator force-closes."""
    if have > plan.count:
        return [Violation(Reason.TOO_MANY, None, f"{have} {plan.child_level} codes, a {plan.level} holds {plan.count}")]
    if closing and have < plan.count and not partial:
        return [Violation(Reason.TOO_FEW, None, f"{have} {plan.child_level} codes, a {plan.level} holds {plan.count}")]
    return []
