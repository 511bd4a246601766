"""The journal rows that carry the aggregation's EPCIS events, and the replay that rebuilds links.

Why one module: every ADD and DELETE the aggregation writes goes through `journal_link` /
`journal_unlink`, so the event shape is decided once (by agent.epcis's builders), and the journal
payload also carries the raw codes so the hierarchy can be replayed from the journal alone (`replay`).
eventID is left to the uplink, which sets it from the CBV event hash when it builds the document.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence

from agent.epcis import Action, LineContext, aggregation_event, decommissioning_event, epc_for
from agent.ledger import Ledger

EventContext = LineContext  # the aggregation's name for where its events happen

KIND_ADD = "aggregation.add"
KIND_DELETE = "aggregation.delete"
KIND_DECOMMISSION = "aggregation.decommission"


# A box or case code is turned into a URI twice within a pallet (as the parent of its own pack, then as
# a child of the next level up); a small cache spares the second parse and percent-encoding.
_epc = functools.lru_cache(maxsize=4096)(epc_for)


def _uris(ctx: LineContext, codes: Sequence[str]) -> list[str]:
    prefix_length = ctx.company_prefix_length
    return [_epc(c, prefix_length) for c in codes]


def journal_link(
    ledger: Ledger, ctx: LineContext, parent: str, children: Sequence[str], at: float, job: int | None
) -> int:
    """ADD, inside the caller's atomic block: the link and its event commit together."""
    event = aggregation_event(ctx, _epc(parent, ctx.company_prefix_length), _uris(ctx, children), at=at)
    return ledger.append_event(KIND_ADD, {"epcis": event}, code=parent, job=job, uplink=True, at=at)


def journal_unlink(
    ledger: Ledger, ctx: LineContext, parent: str, children: Sequence[str], at: float, job: int | None
) -> int:
    event = aggregation_event(ctx, _epc(parent, ctx.company_prefix_length), _uris(ctx, children), at=at,
                              action=Action.DELETE)
    return ledger.append_event(KIND_DELETE, {"epcis": event}, code=parent, job=job, uplink=True, at=at)


def journal_decommission(
    ledger: Ledger, ctx: LineContext, codes: Sequence[str], at: float, job: int | None
) -> int:
    event = decommissioning_event(ctx, _uris(ctx, codes), at=at, reason="operator_decommission")
    payload = {"epcis": event, "codes": list(codes)}
    return ledger.append_event(KIND_DECOMMISSION, payload, code=codes[0], job=job, uplink=True, at=at)


def replay(conn: sqlite3.Connection, company_prefix_length: int = 7) -> dict[str, str]:
    """Child -> parent, rebuilt from the uplinked events alone (as the cloud sees them), mapped back to
    printed codes; must equal pack_links (the property tests say so)."""
    codes = {epc_for(c, company_prefix_length): c for (c,) in conn.execute("SELECT code FROM codes")}
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
