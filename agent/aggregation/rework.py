"""Rework of finished packs: take one child out, move a child to another pack, merge two packs (合垛).

Why each is one ledger transaction holding its events: an L3 system (the cloud's serialisation
repository) knows a pack's contents only from the events, so the link change, the EPCIS events, the
pack's partial state, the journal row and the operator's audit row commit together or not at all:
- the child leaving its parent is an AggregationEvent DELETE naming exactly that child (EPCIS 2.0,
  section 7.4.3: DELETE with a child list disaggregates those children; the rest stays aggregated),
  bizStep `unpacking` (CBV 2.0, section 7.2);
- for a move or a merge, the arrival is an AggregationEvent ADD into the new parent (7.4.3: ADD also
  adds children to an existing aggregation), bizStep `packing`, timed one millisecond (the event
  time's precision) after the DELETE: a backend that applies events in eventTime order must see the
  child leave its old parent before it arrives, or it would hold the child in two parents.
Why `packing`/`unpacking` and not CBV `repackaging` ("an object's packaging configuration is
changed"): the two events state two physical acts (lifted off, put on), each with the bizStep every
aggregation tracker keys on; repackaging, in pharmaceutical use, names a repackager's new product.

A pack left short is closed with `partial_reason` saying what happened (the same field a force-close
fills, so `pack show`, trace and export show it); a pack made full again loses it. Open packs are
refused as sources and targets: a station is filling them, and its count would go wrong under it
(park the pack first). A pack is never emptied by take-out or move (the operator would be left with
a closed pack of nothing); merge empties its source on purpose, which ends `unpacked` like an unlink.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.aggregation import events, rules
from agent.aggregation.model import AggregationError, PackInfo, PackRejected, PackState
from agent.aggregation.packs import Aggregator, _history, children_of, pack_info
from agent.i18n import N_

# The ADD of a move follows its DELETE by the smallest step an event time keeps (milliseconds).
ARRIVAL_DELAY_MS = 1
# Packs whose contents rework may change: finished (closed) or set aside (parked), never open.
REWORKABLE: frozenset[PackState] = frozenset({PackState.CLOSED, PackState.PARKED})

NOT_A_CODE = N_("{code!r} is not a code of this ledger")
IN_NO_PACK = N_("{code!r} is in no pack; there is nothing to take it out of")
OPEN_PACK = N_("{level} {code!r} is open: a station is filling it; park it first to rework it")
SPENT_PACK = N_("{level} {code!r} is {state}; only a closed or parked pack is reworked")
LAST_CHILD = N_("{code!r} is the last {level} in {parent!r}; unlink {parent!r} instead of emptying it")
LAST_MOVE = N_("{code!r} is the last {level} in {parent!r}; merge {parent!r} into {target!r} instead")
NOT_A_PACK = N_("{code!r} is not a pack")
ALREADY_THERE = N_("{code!r} is already in {target!r}")
SAME_PACK = N_("{code!r} cannot be merged into itself")
LEVELS_DIFFER = N_("{source!r} is a {source_level}, {target!r} is a {target_level}; merge packs of one level")
SOURCE_INSIDE = N_("{code!r} is inside {parent!r}; take it out of {parent!r} first")
EMPTY_SOURCE = N_("{code!r} holds nothing to merge")
NO_REASON = N_("taking a code out needs a reason the auditor can read")
REFUSALS = (NOT_A_CODE, IN_NO_PACK, OPEN_PACK, SPENT_PACK, LAST_CHILD, LAST_MOVE, NOT_A_PACK, ALREADY_THERE, SAME_PACK,
            LEVELS_DIFFER, SOURCE_INSIDE, EMPTY_SOURCE, NO_REASON)


class ReworkRefused(AggregationError):
    """A rework refused before anything changed; English for the audit, `template` and `values` for the
    operator's language (the CLI formats the translated template with the same values)."""

    def __init__(self, template: str, **values: Any) -> None:
        self.template = template
        self.values = values
        super().__init__(template.format(**values))


@dataclass(frozen=True, slots=True)
class Reworked:
    """What a rework did: the codes moved, and both packs as they are now (target None for take-out)."""

    moved: list[str]
    source: PackInfo
    target: PackInfo | None


Audit = tuple[str, Mapping[str, object]]  # (action, args) audited with the result inside the transaction


def take_out(agg: Aggregator, code: str, *, reason: str, audit: Audit | None = None) -> Reworked:
    """CODE leaves its parent (an item its box, a box its case, a case its pallet); the parent stays
    where it is, closed short with `reason` recorded. CODE is then free: pack it again or decommission it."""
    if not reason.strip():
        raise ReworkRefused(NO_REASON)
    ledger = agg.ledger
    with ledger.atomic(durable=True) as conn:
        child, parent = _linked(conn, code)
        if parent.children == 1:
            raise ReworkRefused(LAST_CHILD, code=code, level=child.level, parent=parent.code)
        at = _now()
        _unlink(agg, conn, parent, [child], at)
        note = f"{code} taken out: {reason.strip()}"
        partial = {parent.code: _shorten(conn, parent, note)}
        _history(conn, "take_out", child.id, parent.code_id, {"from": parent.code, "reason": reason}, at)
        ledger.append_event("pack.take_out", {"child": code, "from": parent.code, "reason": reason,
                                              "partial": partial}, code=parent.code, job=parent.job, at=at)
        done = Reworked([code], pack_info(conn, parent.code), None)
        _audit(agg, audit, done)
    return done


def move(agg: Aggregator, code: str, target: str, *, reason: str | None = None,
         audit: Audit | None = None) -> Reworked:
    """CODE leaves its parent for TARGET (a case onto another pallet); both packs' counts and partial
    states follow. TARGET must hold CODE's level, be of CODE's job and lot, and have room for it."""
    ledger = agg.ledger
    with ledger.atomic(durable=True) as conn:
        child, parent = _linked(conn, code)
        into = _pack(conn, target)
        if into.code_id == parent.code_id:
            raise ReworkRefused(ALREADY_THERE, code=code, target=target)
        if parent.children == 1:
            raise ReworkRefused(LAST_MOVE, code=code, level=child.level, parent=parent.code, target=target)
        _check_arrival(agg, conn, into, [child])
        at = _now()
        _unlink(agg, conn, parent, [child], at)
        _link(agg, conn, into, [child], at)
        why = f": {reason.strip()}" if reason and reason.strip() else ""
        partial = {parent.code: _shorten(conn, parent, f"{code} moved to {target}{why}"),
                   target: _fill(conn, into, f"{code} moved in from {parent.code}{why}")}
        _history(conn, "move", child.id, into.code_id, {"from": parent.code, "to": target, "reason": reason}, at)
        ledger.append_event("pack.move", {"child": code, "from": parent.code, "to": target, "reason": reason,
                                          "partial": partial}, code=target, job=into.job or child.job, at=at)
        done = Reworked([code], pack_info(conn, parent.code), pack_info(conn, target))
        _audit(agg, audit, done)
    return done


def merge(agg: Aggregator, source: str, target: str, *, reason: str | None = None,
          audit: Audit | None = None) -> Reworked:
    """Every child of SOURCE onto TARGET (合垛: two partial pallets become one); SOURCE ends empty and
    `unpacked` (its label is spent, as after an unlink). Same level, job and lot; TARGET must have room."""
    ledger = agg.ledger
    with ledger.atomic(durable=True) as conn:
        src, into = _pack(conn, source), _pack(conn, target)
        if src.code_id == into.code_id:
            raise ReworkRefused(SAME_PACK, code=source)
        if src.level != into.level:
            raise ReworkRefused(LEVELS_DIFFER, source=source, source_level=src.level, target=target,
                                target_level=into.level)
        above = rules.facts(conn, [source])[source].parent
        if above is not None:
            raise ReworkRefused(SOURCE_INSIDE, code=source, parent=_code(conn, above))
        kids = children_of(conn, source)
        if not kids:
            raise ReworkRefused(EMPTY_SOURCE, code=source)
        known = rules.facts(conn, kids)
        moving = [known[k] for k in kids]
        _check_arrival(agg, conn, into, moving)
        at = _now()
        _unlink(agg, conn, src, moving, at)
        _link(agg, conn, into, moving, at)
        conn.execute("UPDATE packs SET state = ?, partial_reason = NULL WHERE code = ?",
                     (PackState.UNPACKED.value, src.code_id))
        why = f": {reason.strip()}" if reason and reason.strip() else ""
        partial = {source: None, target: _fill(conn, into, f"merged with {source}{why}")}
        _history(conn, "merge", src.code_id, into.code_id, {"children": len(kids), "reason": reason}, at)
        ledger.append_event("pack.merge", {"from": source, "to": target, "children": kids, "reason": reason,
                                           "partial": partial, "unpacked": source}, code=target, job=into.job, at=at)
        done = Reworked(kids, pack_info(conn, source), pack_info(conn, target))
        _audit(agg, audit, done)
    return done


# ---- the checks ---------------------------------------------------------------------------------


def _linked(conn: sqlite3.Connection, code: str) -> tuple[rules.CodeFacts, PackInfo]:
    """CODE and the pack it is in, refusing a code in no pack or in a pack a station is filling."""
    child = rules.facts(conn, [code]).get(code)
    if child is None:
        raise ReworkRefused(NOT_A_CODE, code=code)
    if child.parent is None:
        raise ReworkRefused(IN_NO_PACK, code=code)
    parent = pack_info(conn, _code(conn, child.parent))
    _reworkable(parent)
    return child, parent


def _pack(conn: sqlite3.Connection, code: str) -> PackInfo:
    if rules.facts(conn, [code]).get(code) is None:
        raise ReworkRefused(NOT_A_CODE, code=code)
    try:
        info = pack_info(conn, code)
    except AggregationError:
        raise ReworkRefused(NOT_A_PACK, code=code) from None
    _reworkable(info)
    return info


def _reworkable(pack: PackInfo) -> None:
    if pack.state is PackState.OPEN:
        raise ReworkRefused(OPEN_PACK, level=pack.level, code=pack.code)
    if pack.state not in REWORKABLE:
        raise ReworkRefused(SPENT_PACK, level=pack.level, code=pack.code, state=pack.state)


def _check_arrival(agg: Aggregator, conn: sqlite3.Connection, into: PackInfo,
                   moving: Sequence[rules.CodeFacts]) -> None:
    """The packing rules for the children arriving in INTO, as if they were free (they are about to be):
    the level INTO holds, closed packs or verified items, one job and lot with INTO, and its count."""
    plan = agg.plan(into.level)
    free = {f.code: f._replace(parent=None) for f in moving}
    names = list(free)
    bad = rules.check_children(plan, names, free, job=into.job, lot=agg.lot_of(conn, into.job),
                               child_packs=plan.child_level in agg.plans)
    bad += rules.check_count(plan, into.children + len(names), closing=False, partial=False)
    if bad:
        raise PackRejected(into.code, into.level, bad)


# ---- the changes --------------------------------------------------------------------------------


def _unlink(agg: Aggregator, conn: sqlite3.Connection, parent: PackInfo, kids: Sequence[rules.CodeFacts],
            at: float) -> None:
    conn.executemany("DELETE FROM pack_links WHERE child = ? AND parent = ?", [(k.id, parent.code_id) for k in kids])
    events.journal_unlink(agg.ledger, agg.ctx, parent.code, [k.code for k in kids], at, parent.job)


def _link(agg: Aggregator, conn: sqlite3.Connection, into: PackInfo, kids: Sequence[rules.CodeFacts],
          at: float) -> None:
    arrive = (round(at * 1000) + ARRIVAL_DELAY_MS) / 1000
    job = into.job if into.job is not None else kids[0].job
    if into.job is None:  # a parked pack opened without a job takes the job of what arrives
        conn.execute("UPDATE packs SET job = ? WHERE code = ?", (job, into.code_id))
    conn.executemany("INSERT INTO pack_links(child, parent, linked_at) VALUES (?, ?, ?)",
                     [(k.id, into.code_id, arrive) for k in kids])
    events.journal_link(agg.ledger, agg.ctx, into.code, [k.code for k in kids], arrive, job)


def _shorten(conn: sqlite3.Connection, pack: PackInfo, note: str) -> str | None:
    """A closed pack that lost a child is short: it says why. A parked one is simply unfinished."""
    if pack.state is not PackState.CLOSED:
        return pack.partial_reason
    conn.execute("UPDATE packs SET partial_reason = ? WHERE code = ?", (note, pack.code_id))
    return note


def _fill(conn: sqlite3.Connection, pack: PackInfo, note: str) -> str | None:
    """A closed pack that gained children is full (no reason left) or still short (this note)."""
    if pack.state is not PackState.CLOSED:
        return pack.partial_reason
    have = conn.execute("SELECT COUNT(*) FROM pack_links WHERE parent = ?", (pack.code_id,)).fetchone()[0]
    reason = None if have >= pack.expected_count else note
    conn.execute("UPDATE packs SET partial_reason = ? WHERE code = ?", (reason, pack.code_id))
    return reason


def _audit(agg: Aggregator, audit: Audit | None, done: Reworked) -> None:
    """The operator's audit row, inside the rework's transaction: the record and the change are one."""
    if audit is None:
        return
    action, args = audit
    target = f" -> {done.target.code} {done.target.children}/{done.target.expected_count}" if done.target else ""
    result = (f"ok: {len(done.moved)} moved; {done.source.code} {done.source.state} "
              f"{done.source.children}/{done.source.expected_count}{target}")
    agg.ledger.audit(action, dict(args), result)


def _now() -> float:
    """Now, on a whole millisecond: an event time keeps milliseconds (truncated), so the leaving and
    the arrival one millisecond later stay exactly one apart in the events, never zero."""
    return int(time.time() * 1000) / 1000


def _code(conn: sqlite3.Connection, code_id: int) -> str:
    return str(conn.execute("SELECT code FROM codes WHERE id = ?", (code_id,)).fetchone()[0])
