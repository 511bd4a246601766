"""Operator corrections: replace a code, unlink packs top-down, decommission recursively.

Why top-down only: unlinking a case that still sits in a pallet would leave the pallet holding a
case the ledger no longer fills, so the upper level must be opened first (as the line tools do with
取消关联). Every change writes AggregationEvent DELETE (and ADD for a replacement) in the same
transaction, and a pack_history row, so the journal alone rebuilds the hierarchy.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from agent.aggregation import events, rules
from agent.aggregation.model import AggregationError, PackState
from agent.aggregation.packs import TO_VERIFIED, Aggregator, _history, to_verified
from agent.ledger import CodeState
from agent.ledger.states import check_transition

# A replacement code must never have been on anything: in a package, not yet printed.
REPLACEABLE_BY: frozenset[CodeState] = frozenset({CodeState.AVAILABLE, CodeState.RETURNED, CodeState.ALLOCATED})


@dataclass(frozen=True, slots=True)
class Unlinked:
    parent: str
    children: int


def replace(agg: Aggregator, old: str, new: str) -> None:
    """NEW takes OLD's place (as a pack, as a child, or both); OLD is decommissioned; history kept."""
    ledger = agg.ledger
    with ledger.atomic(durable=True) as conn:
        known = rules.facts(conn, [old, new])
        o, n = known.get(old), known.get(new)
        if o is None:
            raise AggregationError(f"{old!r} is not a code of this ledger")
        if n is None:
            raise AggregationError(f"replacement {new!r} is not in any code package of this line")
        if n.level != o.level:
            raise AggregationError(f"replacement {new!r} is a {n.level} code; {old!r} is {o.level}")
        if n.pack_state is not None or n.parent is not None or n.state not in REPLACEABLE_BY:
            raise AggregationError(f"replacement {new!r} is already used (state {n.state}); take an unused code")
        if o.pack_state is None and o.parent is None:
            raise AggregationError(f"{old!r} is in no pack and holds nothing; there is nothing to replace")
        if o.pack_state in (PackState.REPLACED, PackState.UNPACKED, PackState.DECOMMISSIONED):
            raise AggregationError(f"{old!r} is a {o.pack_state} pack; only a live pack is replaced")
        at = time.time()
        if n.state not in TO_VERIFIED:
            raise AggregationError(f"replacement {new!r} is {n.state}; it cannot become a commissioned code")
        to_verified(ledger, [n], job=o.job, at=at, ctx=agg.ctx)
        if o.parent is not None:
            up = _code(conn, o.parent)
            events.journal_unlink(ledger, agg.ctx, up, [old], at, o.job)
            conn.execute("UPDATE pack_links SET child = ? WHERE child = ?", (n.id, o.id))
            events.journal_link(ledger, agg.ctx, up, [new], at, o.job)
        if o.pack_state is not None:
            kids = _children(conn, o.id)
            conn.execute(
                "INSERT INTO packs(code, level, job, state, expected_count, partial_reason, created_at, closed_at)"
                " SELECT ?, level, job, state, expected_count, partial_reason, created_at, closed_at"
                " FROM packs WHERE code = ?",
                (n.id, o.id),
            )
            conn.execute("UPDATE packs SET state = 'replaced' WHERE code = ?", (o.id,))
            if kids:
                events.journal_unlink(ledger, agg.ctx, old, kids, at, o.job)
                conn.execute("UPDATE pack_links SET parent = ? WHERE parent = ?", (n.id, o.id))
                events.journal_link(ledger, agg.ctx, new, kids, at, o.job)
        if o.state is CodeState.VERIFIED:
            ledger.transition(old, CodeState.REJECTED, kind="code.replaced", payload={"by": new}, at=at)
            events.journal_decommission(ledger, agg.ctx, [old], at, o.job)  # out of commerce, like its label
        _history(conn, "replace", o.id, n.id, {"old": old, "new": new}, at)


def unlink(agg: Aggregator, code: str, *, recursive: bool = False) -> list[Unlinked]:
    """Empty the pack CODE (and with `recursive` every pack under it), parents before children."""
    with agg.ledger.atomic(durable=True) as conn:
        top = _top_pack(conn, code, "unlink")
        return _unpack(agg, conn, top, recursive, PackState.UNPACKED, time.time())


def decommission(agg: Aggregator, code: str, *, recursive: bool = False) -> int:
    """Take CODE and everything inside it out of commerce: unpack top-down, then ObjectEvent DELETE.

    Returns how many codes were decommissioned. A pack with contents needs `recursive`, so an
    operator cannot scrap a pallet's 960 bottles by a slip of the finger.
    """
    ledger = agg.ledger
    with ledger.atomic(durable=True) as conn:
        f = rules.facts(conn, [code]).get(code)
        if f is None:
            raise AggregationError(f"{code!r} is not a code of this ledger")
        if f.parent is not None:
            raise AggregationError(f"{code!r} is inside {_code(conn, f.parent)!r}; unlink that first (top-down)")
        at = time.time()
        ids = [f.id]
        if f.pack_state is not None:
            ids = _subtree(conn, f.id)
            if len(ids) > 1 and not recursive:
                raise AggregationError(f"{code!r} holds {len(ids) - 1} codes; decommission it with --recursive")
            _unpack(agg, conn, f.id, True, PackState.DECOMMISSIONED, at)
        rows = conn.execute(
            f"SELECT code, state FROM codes WHERE id IN ({','.join('?' * len(ids))})", ids
        ).fetchall()
        by_state: dict[CodeState, list[str]] = {}
        for c, state in rows:
            check_transition(c, CodeState(state), CodeState.REJECTED)  # names the first code that may not
            by_state.setdefault(CodeState(state), []).append(c)
        for state, codes in by_state.items():
            ledger.transition_many(codes, CodeState.REJECTED, expect=state, kind="codes.decommissioned", at=at)
        events.journal_decommission(ledger, agg.ctx, [r[0] for r in rows], at, f.job,
                                    commissioned=by_state.get(CodeState.VERIFIED, []))
        _history(conn, "decommission", f.id, None, {"codes": len(rows)}, at)
    return len(rows)


def _unpack(
    agg: Aggregator, conn: sqlite3.Connection, top: int, recursive: bool, final: PackState, at: float
) -> list[Unlinked]:
    done: list[Unlinked] = []
    queue = [top]
    while queue:
        pack = queue.pop(0)
        kids = conn.execute(
            "SELECT l.child, c.code, p.code IS NOT NULL FROM pack_links l JOIN codes c ON c.id = l.child"
            " LEFT JOIN packs p ON p.code = l.child WHERE l.parent = ? ORDER BY l.child",
            (pack,),
        ).fetchall()
        name = _code(conn, pack)
        job = conn.execute("SELECT job FROM packs WHERE code = ?", (pack,)).fetchone()[0]
        if kids:
            events.journal_unlink(agg.ledger, agg.ctx, name, [k[1] for k in kids], at, job)
            conn.execute("DELETE FROM pack_links WHERE parent = ?", (pack,))
        conn.execute("UPDATE packs SET state = ? WHERE code = ?", (final.value, pack))
        _history(conn, "unlink", pack, None, {"children": len(kids), "as": final.value}, at)
        done.append(Unlinked(name, len(kids)))
        if recursive:
            queue.extend(k[0] for k in kids if k[2])
    return done


def _top_pack(conn: sqlite3.Connection, code: str, action: str) -> int:
    f = rules.facts(conn, [code]).get(code)
    if f is None:
        raise AggregationError(f"{code!r} is not a code of this ledger")
    if f.pack_state is None:
        raise AggregationError(f"{code!r} is not a pack; nothing to {action} under it")
    if f.pack_state not in (PackState.OPEN, PackState.PARKED, PackState.CLOSED):
        raise AggregationError(f"{code!r} is a {f.pack_state} pack; nothing to {action}")
    if f.parent is not None:
        raise AggregationError(f"{code!r} is inside {_code(conn, f.parent)!r}; {action} that first (top-down)")
    return f.id


def _subtree(conn: sqlite3.Connection, root: int) -> list[int]:
    rows = conn.execute(
        "WITH RECURSIVE d(id) AS (SELECT ? UNION ALL SELECT l.child FROM pack_links l JOIN d ON l.parent = d.id)"
        " SELECT id FROM d",
        (root,),
    ).fetchall()
    return [r[0] for r in rows]


def _children(conn: sqlite3.Connection, parent: int) -> list[str]:
    rows = conn.execute(
        "SELECT c.code FROM pack_links l JOIN codes c ON c.id = l.child WHERE l.parent = ? ORDER BY l.child",
        (parent,),
    ).fetchall()
    return [r[0] for r in rows]


def _code(conn: sqlite3.Connection, code_id: int) -> str:
    return str(conn.execute("SELECT code FROM codes WHERE id = ?", (code_id,)).fetchone()[0])
