"""Did this code reach the cloud? The uplink events of a code and its hierarchy, each with its delivery.

Why from the outbox's own records: an event's delivery is a fact of `sync_batches` (agent/sync/
outbox.py): it is in a batch once cut, the batch has `sent_at` once published to the broker, and
`acked_at` (with the receiver's `outcome`) once the receiver confirmed it stored the batch. A batch
is a seq range of the journal, so an event's batches are those whose range holds its seq; a resent
batch overlaps the first one, and the best state of all of them counts.

States, as an operator reads them:
- pending: not yet published (not batched yet, or its batch waits to be sent);
- delivered: published to the broker, the receiver's ack not yet in (it may still come);
- acked: the receiver acknowledged it; `outcome` says stored, or why it judged the batch invalid.

Which events: those the journal files under the code itself, under every code below it and every
code above it (the code column of `events`, indexed), and the operator decommissioning events that
name the code among theirs (they are filed under the first code only).
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

CHUNK = 500  # SQLite's bound parameters per statement stay well under its limit
DECOMMISSION_KIND = "aggregation.decommission"  # agent/aggregation/events.py KIND_DECOMMISSION


class Delivery(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    ACKED = "acked"


@dataclass(frozen=True, slots=True)
class EventDelivery:
    seq: int
    at: float
    kind: str
    code: str  # the code of the hierarchy the event concerns
    relation: str  # self, child (below the code) or parent (above it)
    state: Delivery
    batch: int | None
    attempts: int
    sent_at: float | None
    acked_at: float | None
    outcome: str | None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d


@dataclass(frozen=True, slots=True)
class _Batch:
    id: int
    first: int
    last: int
    sent_at: float | None
    attempts: int
    acked_at: float | None
    outcome: str | None


def deliveries(conn: sqlite3.Connection, codes: Mapping[str, str]) -> list[EventDelivery]:
    """Every uplink event of `codes` (code -> relation), in journal order, with its delivery state."""
    rows: dict[int, tuple[float, str, str]] = {}
    keys = list(codes)
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        for seq, at, kind, code in conn.execute(
                f"SELECT seq, at, kind, code FROM events WHERE code IN ({marks}) AND uplink = 1", chunk):
            rows[int(seq)] = (float(at), str(kind), str(code))
    for seq, at, kind, code in _decommissions(conn, codes):
        rows.setdefault(seq, (at, kind, code))
    if not rows:
        return []
    normal, resent = _batches(conn, min(rows), max(rows))
    firsts = [b.first for b in normal]
    out: list[EventDelivery] = []
    for seq in sorted(rows):
        at, kind, code = rows[seq]
        i = bisect.bisect_right(firsts, seq) - 1
        mine = [b for b in ([normal[i]] if i >= 0 else []) + resent if b.first <= seq <= b.last]
        out.append(_state(seq, at, kind, code, codes[code], mine))
    return out


def _decommissions(conn: sqlite3.Connection, codes: Mapping[str, str]) -> Iterable[tuple[int, float, str, str]]:
    """Decommissioning events that name one of `codes` but are filed under another code (a box and its
    bottles are one event, filed under the first of its codes). Searched only for codes that were taken out of
    commerce (state rejected), since it reads every decommissioning event of the journal."""
    keys = list(codes)
    out_of_commerce: set[str] = set()
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        out_of_commerce.update(r[0] for r in conn.execute(
            f"SELECT code FROM codes WHERE code IN ({marks}) AND state = 'rejected'", chunk))
    if not out_of_commerce:
        return []
    found: list[tuple[int, float, str, str]] = []
    for seq, at, kind, payload in conn.execute(
            "SELECT seq, at, kind, payload FROM events WHERE kind = ? AND uplink = 1", (DECOMMISSION_KIND,)):
        try:
            named = json.loads(payload).get("codes", [])
        except (ValueError, AttributeError):
            continue
        hit = next((c for c in named if c in out_of_commerce), None) if isinstance(named, list) else None
        if hit is not None:
            found.append((int(seq), float(at), str(kind), hit))
    return found


def _batches(conn: sqlite3.Connection, low: int, high: int) -> tuple[list[_Batch], list[_Batch]]:
    """The batches that may hold seqs low..high: first cuts (disjoint, in seq order) and resends."""
    normal: list[_Batch] = []
    resent: list[_Batch] = []
    for r in conn.execute(
            "SELECT id, first_seq, last_seq, sent_at, attempts, acked_at, outcome, resend FROM sync_batches"
            " WHERE last_seq >= ? AND first_seq <= ? ORDER BY first_seq, id", (low, high)):
        (resent if r[7] else normal).append(_Batch(*r[:7]))
    return normal, resent


def _state(seq: int, at: float, kind: str, code: str, relation: str, batches: list[_Batch]) -> EventDelivery:
    acked = [b for b in batches if b.acked_at is not None]
    sent = [b for b in batches if b.sent_at is not None]
    best = acked[0] if acked else sent[0] if sent else batches[0] if batches else None
    state = Delivery.ACKED if acked else Delivery.DELIVERED if sent else Delivery.PENDING
    return EventDelivery(
        seq, at, kind, code, relation, state,
        batch=best.id if best else None,
        attempts=sum(b.attempts for b in batches),
        sent_at=best.sent_at if best else None,
        acked_at=best.acked_at if best else None,
        outcome=best.outcome if best else None,
    )


def summary(events: Iterable[EventDelivery]) -> dict[str, int]:
    counts = {d.value: 0 for d in Delivery}
    for e in events:
        counts[e.state.value] += 1
    return counts
