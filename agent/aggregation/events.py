"""The journal rows that carry the aggregation's EPCIS events, and the replay that rebuilds links.

Why one module: every ADD and DELETE the aggregation writes goes through `journal_link` /
`journal_unlink`, so the event shape is decided once (by agent.epcis's builders), and the journal
payload also carries the raw codes so the hierarchy can be replayed from the journal alone (`replay`).
Codes are named by the line's identity (agent/epcis/identity.py), each by its own level and job, and
every parent is commissioned (`journal_commission`) before an event packs it or into it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence

from agent.epcis import Action, LineContext, aggregation_event, commissioning_event, retirement_events
from agent.epcis.identity import Identity, epcs_of
from agent.ledger import Ledger

EventContext = LineContext  # the aggregation's name for where its events happen

KIND_ADD = "aggregation.add"
KIND_DELETE = "aggregation.delete"
KIND_DECOMMISSION = "aggregation.decommission"
KIND_COMMISSION = "aggregation.commission"


def _uris(ledger: Ledger, ctx: LineContext, codes: Sequence[str]) -> list[str]:
    """Each code's identity by its own level and job (agent/epcis/identity.py), in the given order."""
    named = epcs_of(ledger.conn, ctx.ident, codes)
    return [named[c] for c in codes]


def name_all(ledger: Ledger, ctx: LineContext, codes: Sequence[str]) -> dict[str, str]:
    """Code -> identity for many packs at once, read in the caller's transaction: a burst names its
    thousand codes with a couple of queries instead of one query per pack (`journal_link(named=...)`)."""
    return epcs_of(ledger.conn, ctx.ident, codes)


def journal_link(
    ledger: Ledger, ctx: LineContext, parent: str, children: Sequence[str], at: float, job: int | None,
    *, named: Mapping[str, str] | None = None,
) -> int:
    """ADD, inside the caller's atomic block: the link and its event commit together. `named` is
    `name_all` of these codes, read in the same transaction after the parent was commissioned."""
    if named is None:
        parent_uri, *uris = _uris(ledger, ctx, [parent, *children])
    else:
        parent_uri, uris = named[parent], [named[c] for c in children]
    event = aggregation_event(ctx, parent_uri, uris, at=at)
    return ledger.append_event(KIND_ADD, {"epcis": event}, code=parent, job=job, uplink=True, at=at)


def journal_unlink(
    ledger: Ledger, ctx: LineContext, parent: str, children: Sequence[str], at: float, job: int | None
) -> int:
    parent_uri, *uris = _uris(ledger, ctx, [parent, *children])
    event = aggregation_event(ctx, parent_uri, uris, at=at, action=Action.DELETE)
    return ledger.append_event(KIND_DELETE, {"epcis": event}, code=parent, job=job, uplink=True, at=at)


def _lot(ledger: Ledger, job: int | None) -> tuple[str | None, str | None, str | None]:
    if job is None:
        return None, None, None
    row = ledger.conn.execute("SELECT lot, expiry, name FROM jobs WHERE id = ?", (job,)).fetchone()
    return (row[0], row[1], row[2]) if row else (None, None, None)


def journal_commission(ledger: Ledger, ctx: LineContext, codes: Sequence[str], at: float, job: int | None) -> int:
    """Parent codes (a box, a case, a pallet's SSCC, a replacement) becoming `verified`: their
    commissioning ObjectEvent ADD, before any event uses them as a parent or a child (CBV 2.0, 7.2)."""
    lot, expiry, work_order = _lot(ledger, job)
    event = commissioning_event(ctx, _uris(ledger, ctx, codes), at=at, lot=lot, expiry=expiry, work_order=work_order)
    return ledger.append_event(KIND_COMMISSION, {"epcis": event, "codes": list(codes)}, code=codes[0], job=job,
                               uplink=True, at=at)


def journal_decommission(
    ledger: Ledger, ctx: LineContext, codes: Sequence[str], at: float, job: int | None,
    *, commissioned: Collection[str] | None = None,
) -> int:
    """Decommission `codes`; those not in `commissioned` (default: all are) are commissioned first, by
    the one rule of agent.epcis.retirement_events. The decommissioning row is the last one written."""
    done = set(codes) if commissioned is None else set(commissioned)
    fresh = [c for c in codes if c not in done]
    if fresh:
        lot, expiry, _ = _lot(ledger, job)
        first, _last = retirement_events(ctx, _uris(ledger, ctx, fresh), at=at, reason="operator_decommission",
                                         commissioned=False, lot=lot, expiry=expiry)
        ledger.append_event(KIND_COMMISSION, {"epcis": first, "codes": fresh}, code=fresh[0], job=job,
                            uplink=True, at=at)
    [event] = retirement_events(ctx, _uris(ledger, ctx, codes), at=at, reason="operator_decommission",
                                commissioned=True)
    payload = {"epcis": event, "codes": list(codes)}
    return ledger.append_event(KIND_DECOMMISSION, payload, code=codes[0], job=job, uplink=True, at=at)


def replay(conn: sqlite3.Connection, identity: Identity | None = None) -> dict[str, str]:
    """Child -> parent, rebuilt from the uplinked events alone (as the cloud sees them), mapped back to
    printed codes by the same identity rules; must equal pack_links (the property tests say so)."""
    ident = identity or LineContext("urn:x:replay", None).ident
    held = [c for (c,) in conn.execute("SELECT code FROM codes")]
    codes = {uri: code for code, uri in epcs_of(conn, ident, held).items()}
    links: dict[str, str] = {}
    rows = conn.execute(
        "SELECT kind, payload FROM events WHERE kind IN (?, ?) ORDER BY seq", (KIND_ADD, KIND_DELETE)
    )
    for kind, raw in rows:
        event = json.loads(raw)["epcis"]
        parent = codes[event["parentID"]]
        children = [codes[u] for u in event.get("childEPCs", [])]
        if kind == KIND_ADD:
            for child in children:
                links[child] = parent
        else:
            for child in children or [c for c, p in links.items() if p == parent]:
                if links.get(child) == parent:
                    del links[child]
    return links
