"""What a restarted verify station knows about the items between print head and gate.

Why: the agent can be restarted at any moment (SIGTERM, SIGKILL, a job stop and start) while the
conveyor holds items it bound to codes, and the PLC counter and the coder go on counting. Guessing from
arrival order took the frames of the items already between head and camera for the new items: good
products were judged mismatch and the wrong ones decommissioned. So on start the station re-reads the
PLC's counters and the ledger, and plans from proofs only:

- Each binding (conveyor seq <-> the coder's feed record and its code) was written to the ledger when it
  was made (table conveyor_items, migration 7). An item in flight with a binding whose code may be on it
  is tracked again with its own code and judged from its own frame.
- Items that passed the head after the last durable binding (the agent died meanwhile) are bound only
  when the counters prove it: the PLC counted K items since the mark, and the coder's feed records after
  the mark's record are exactly K printed ones followed by none printed (the feeder's reconcile has just
  settled them from the coder's own counter, agent/feeder.py). The coder prints its FIFO in order, one
  record per product, so item mark+k carries record mark+k.
- Every other item in flight is `unbound`: rejected as unbound_after_restart, never judged against a code.
- Bound items that passed the gate while the agent was away get the fate the gate logic proves: under
  positive release everything not released was removed (the release register read back says how far the
  agent got); under a reject-only gate an unjudged item passed (escaped), and a reject fired before the
  restart cannot be proven confirmed (escaped too: never reported void without proof).
- A counter that went back (a PLC reset) proves nothing about anything: every binding escapes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from enum import StrEnum

from agent.ledger import CodeState
from agent.verify.verdict import Verdict
from drivers.plc import GateMode, unwrap

# A feed record in one of these states was printed on a product.
PRINTED = frozenset({CodeState.PRINTED, CodeState.VERIFIED, CodeState.REJECTED, CodeState.ESCAPED})
# A binding whose code is in one of these states cannot be on its item (flushed unprinted, never sent).
NOT_ON_ITEM = frozenset({CodeState.AVAILABLE, CodeState.ALLOCATED, CodeState.RETURNED})


class Fate(StrEnum):
    PASSED = "passed"  # left the line past the gate, released or (reject-only gate) judged good
    REMOVED = "removed"  # the gate took it off the line
    ESCAPED = "escaped"  # left the line with no verdict carried out at the gate


@dataclass(frozen=True, slots=True)
class Bound:
    """One binding as the ledger (or the counters' proof) has it."""

    seq: int
    code: str | None
    state: CodeState | None = None  # the code's state now
    coder: str | None = None
    feed_seq: int | None = None
    verdict: Verdict | None = None  # None: not judged before the restart
    reason: str | None = None
    released: bool = False


@dataclass(frozen=True, slots=True)
class Mark:
    seq: int  # the newest item bound
    coder: str | None
    feed_seq: int | None  # the feed record printed on it


@dataclass
class Plan:
    head: int  # the PLC counter, unwrapped against the last binding
    restore: list[Bound] = field(default_factory=list)  # in flight with their own code: tracked again
    unbound: list[int] = field(default_factory=list)  # in flight, no binding proven
    settle: list[tuple[Bound, Fate, str]] = field(default_factory=list)  # past the gate meanwhile
    proven: list[Bound] = field(default_factory=list)  # bindings the counters prove now (to be written)
    released_upto: int | None = None  # the last item released before the restart (gate: release)
    reset: bool = False  # the PLC counter went back: nothing before it is known


def plan(*, raw_counter: int, rows: list[Bound], mark: Mark | None, after_mark: list[Bound],
         gate: GateMode, released_raw: int | None, gate_at: int) -> Plan:
    """Everything a station may believe about the line at start, from the counters and the ledger.

    `after_mark`: the coder's feed records after the mark's record, in feed order (seq unset), with the
    states the feeder's reconcile left them in. `released_raw`: the release register as read back.
    """
    near = mark.seq if mark is not None else max((r.seq for r in rows), default=None)
    head = raw_counter if near is None else unwrap(raw_counter, near)
    out = Plan(head=head)
    if near is not None and head < near:
        out.reset = True
        out.head = head = raw_counter
        out.settle = [(r, Fate.ESCAPED, "the PLC counter went back (PLC reset): the item's fate is unknown")
                      for r in rows]
        out.unbound = list(range(max(1, head - gate_at + 1), head + 1))
        return out
    if released_raw is not None:
        upto = unwrap(released_raw, head)
        out.released_upto = upto if upto <= head else None
    known = {r.seq: r for r in rows}
    if mark is not None and mark.feed_seq is not None:
        out.proven = _proven(mark, head, after_mark, known)
        known.update({b.seq: b for b in out.proven})
    for seq in sorted(known):
        b = known[seq]
        if seq <= head - gate_at:
            out.settle.append(_fate(b, gate, out.released_upto))
        elif seq > head:
            out.settle.append((b, Fate.ESCAPED, "bound to an item the PLC never counted"))
        elif b.code is None or b.state is None or b.state in NOT_ON_ITEM:
            out.unbound.append(seq)
        else:
            out.restore.append(b)
    out.unbound.extend(s for s in range(max(1, head - gate_at + 1), head + 1) if s not in known)
    out.unbound.sort()
    return out


def _proven(mark: Mark, head: int, after: list[Bound], known: dict[int, Bound]) -> list[Bound]:
    """The bindings of the items past the head after the mark, when both counters agree on them."""
    k = head - mark.seq
    if k <= 0 or any(mark.seq < s <= head for s in known):
        return []
    printed = 0
    while printed < len(after) and after[printed].state in PRINTED:
        printed += 1
    if printed != k or any(b.state in PRINTED for b in after[printed:]):
        return []  # the coder printed more or fewer than the PLC counted, or out of order: no proof
    return [Bound(mark.seq + i + 1, b.code, b.state, b.coder, b.feed_seq) for i, b in enumerate(after[:k])]


def _fate(b: Bound, gate: GateMode, released_upto: int | None) -> tuple[Bound, Fate, str]:
    released = b.verdict is Verdict.GOOD and (b.released or (released_upto is not None and b.seq <= released_upto))
    if gate is GateMode.RELEASE:
        if released:
            return b, Fate.PASSED, "released before the restart"
        return b, Fate.REMOVED, "not released: the gate removed it while the agent was down"
    if b.verdict is Verdict.GOOD:
        return b, Fate.PASSED, "judged good before the restart"
    if b.verdict is None:
        return b, Fate.ESCAPED, "passed the gate unjudged while the agent was down (reject-only gate)"
    return b, Fate.ESCAPED, "its reject was fired before the restart; no confirm of its removal was seen"


# ---- reading the ledger (a read-only connection: committed rows only) ----------------------------

def read(conn: sqlite3.Connection, station: str) -> tuple[list[Bound], Mark | None, list[Bound]]:
    """The station's open bindings, its mark, and the coder's feed records after the mark's record."""
    rows = [Bound(int(r[0]), r[1], None if r[2] is None else CodeState(r[2]), r[3], r[4],
                  None if r[5] is None else Verdict(r[5]), r[6], bool(r[7]))
            for r in conn.execute(
                "SELECT b.seq, c.code, c.state, b.coder, b.feed_seq, b.verdict, b.reason, b.released "
                "FROM conveyor_items b LEFT JOIN codes c ON c.id = b.code WHERE b.station = ? ORDER BY b.seq",
                (station,))]
    m = conn.execute("SELECT seq, coder, feed_seq FROM conveyor_marks WHERE station = ?", (station,)).fetchone()
    mark = None if m is None else Mark(int(m[0]), m[1], None if m[2] is None else int(m[2]))
    after: list[Bound] = []
    if mark is not None and mark.coder is not None and mark.feed_seq is not None:
        after = [Bound(0, r[1], CodeState(r[2]), mark.coder, int(r[0])) for r in conn.execute(
            "SELECT f.seq, c.code, c.state FROM coder_feed f JOIN codes c ON c.id = f.code "
            "WHERE f.coder = ? AND f.seq > ? ORDER BY f.seq LIMIT 100000", (mark.coder, mark.feed_seq))]
    return rows, mark, after
