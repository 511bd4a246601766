"""Trace and export: a code's ancestors and descendants with states, times, job and lot.

Why two recursive queries: ancestors are a few hops up the `pack_links` primary key and descendants
one walk down the `pack_links_parent` index; both stay index lookups, so a trace costs the size of
the answer, not the size of the ledger (bench: trace.p99_ms), and a bottle (no children) that is in
no pack costs one query.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from agent.aggregation.model import AggregationError

_COLUMNS = (
    " c.id, c.code, c.level, c.state, c.updated_at, COALESCE(p.job, c.job), j.name, j.lot, p.state,"
    " p.expected_count, p.partial_reason, p.closed_at, l.linked_at, l.parent"
)
_JOINS = (
    " JOIN codes c ON c.id = w.id LEFT JOIN packs p ON p.code = c.id"
    " LEFT JOIN jobs j ON j.id = COALESCE(p.job, c.job) LEFT JOIN pack_links l ON l.child = c.id"
)
# The code itself (depth 0) and everything under it, one index walk down pack_links_parent.
_DOWN = (
    "WITH RECURSIVE w(id, depth) AS (SELECT id, 0 FROM codes WHERE code = ? UNION ALL"
    " SELECT l.child, w.depth + 1 FROM pack_links l JOIN w ON l.parent = w.id WHERE w.depth < 16)"
    f" SELECT{_COLUMNS} FROM w{_JOINS} ORDER BY w.depth, c.id"
)
# Everything above it, nearest first, one primary-key hop per level.
_UP = (
    "WITH RECURSIVE w(id, depth) AS (SELECT l.parent, 1 FROM codes k JOIN pack_links l ON l.child = k.id"
    " WHERE k.code = ? UNION ALL"
    " SELECT l.parent, w.depth + 1 FROM pack_links l JOIN w ON l.child = w.id WHERE w.depth < 16)"
    f" SELECT{_COLUMNS} FROM w{_JOINS} ORDER BY w.depth DESC"
)


@dataclass
class Node:
    id: int
    code: str
    level: str
    state: str
    updated_at: float | None
    job: int | None
    job_name: str | None
    lot: str | None
    pack_state: str | None
    expected: int | None
    partial_reason: str | None
    closed_at: float | None
    linked_at: float | None
    parent_id: int | None
    children: list[Node] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("children", "id", "parent_id")}
        d["children"] = [c.as_dict() for c in self.children]
        return d


@dataclass
class Trace:
    ancestors: list[Node]  # outermost first (pallet, case, box)
    root: Node  # the code asked for, with its whole subtree

    def count(self) -> int:
        stack, n = [self.root], 0
        while stack:
            node = stack.pop()
            n += 1
            stack.extend(node.children)
        return n


def _node(r: sqlite3.Row | tuple[Any, ...]) -> Node:
    return Node(*r[:14])


def trace(conn: sqlite3.Connection, code: str) -> Trace:
    """Two queries whatever the depth: one recursive walk up, one down (see the module docstring)."""
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: a pallet is 1,201 rows, and Row objects cost a quarter of its trace
    nodes: dict[int, Node] = {}
    root: Node | None = None
    for r in cur.execute(_DOWN, (code,)).fetchall():
        n = _node(r)
        nodes[n.id] = n
        if root is None:
            root = n
        elif n.parent_id in nodes:
            nodes[n.parent_id].children.append(n)
    if root is None:
        raise AggregationError(f"{code!r} is not in this ledger")
    ancestors = [_node(r) for r in cur.execute(_UP, (code,)).fetchall()] if root.parent_id is not None else []
    return Trace(ancestors, root)


def export_json(t: Trace) -> str:
    return json.dumps({"ancestors": [a.code for a in t.ancestors], "hierarchy": t.root.as_dict()}, indent=2)


CSV_COLUMNS = ["code", "level", "parent", "state", "pack_state", "job", "lot", "linked_at", "closed_at",
               "partial_reason"]


def export_csv(t: Trace) -> str:
    """One row per code, parent before children: what an auditor loads into a spreadsheet."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    stack: list[tuple[Node, str]] = [(t.root, t.ancestors[-1].code if t.ancestors else "")]
    while stack:
        n, parent = stack.pop(0)
        w.writerow([n.code, n.level, parent, n.state, n.pack_state or "", n.job_name or "", n.lot or "",
                    n.linked_at or "", n.closed_at or "", n.partial_reason or ""])
        stack[0:0] = [(c, n.code) for c in n.children]
    return out.getvalue()
