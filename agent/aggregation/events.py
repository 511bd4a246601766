"""EPCIS AggregationEvents for links and unlinks, and the journal rows that carry them.

Why one module: every ADD and DELETE the aggregation writes goes through `journal_link` /
`journal_unlink`, so the event shape (bizStep packing/unpacking, readPoint = the line, parentID and
childEPCs as URIs) is decided once, and the journal payload always also carries the raw codes so the
hierarchy can be replayed from the journal alone (`replay`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from agent.codes import gs1
from agent.config.model import LineConfig
from agent.ledger import Ledger

KIND_ADD = "aggregation.add"
KIND_DELETE = "aggregation.delete"
KIND_DECOMMISSION = "aggregation.decommission"
CBV = "https://ref.gs1.org/cbv/"
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"


@dataclass(frozen=True, slots=True)
class EventContext:
    """Where events happen: the line's read point, the site's location, and the local UTC offset."""

    read_point: str
    biz_location: str | None = None
    utc_offset: str = "+00:00"
    company_prefix_len: int = 7

    @classmethod
    def from_config(cls, cfg: LineConfig) -> EventContext:
        read_point = cfg.line.read_point or cfg.site.sgln or f"urn:lineagent:line:{cfg.site.id}:{cfg.line.id}"
        prefix = cfg.code_sources.sscc.company_prefix if cfg.code_sources.sscc else "0000000"
        return cls(read_point, cfg.site.sgln, cfg.line.utc_offset, len(prefix))


def code_uri(code: str, company_prefix_len: int = 7) -> str:
    """An EPC URI for a code: URLs and URNs as they are, SSCCs as EPC URIs, anything else as a URN."""
    if code.startswith(("http://", "https://", "urn:")):
        return code
    if len(code) == 18 and code.isdigit():
        try:
            return gs1.sscc_uri(code, company_prefix_len)
        except gs1.GS1Error:
            pass
    return "urn:lineagent:code:" + quote(code, safe="")


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def aggregation_event(
    ctx: EventContext, action: str, parent: str, children: Sequence[str], at: float
) -> dict[str, Any]:
    """One EPCIS 2.0 AggregationEvent; eventID is a hash of its content, so a re-send is the same event."""
    add = action == "ADD"
    event: dict[str, Any] = {
        "type": "AggregationEvent",
        "eventTime": _time(at),
        "eventTimeZoneOffset": ctx.utc_offset,
        "parentID": code_uri(parent, ctx.company_prefix_len),
        "childEPCs": [code_uri(c, ctx.company_prefix_len) for c in children],
        "action": action,
        "bizStep": "packing" if add else "unpacking",
        "disposition": "in_progress",
        "readPoint": {"id": ctx.read_point},
    }
    if ctx.biz_location:
        event["bizLocation"] = {"id": ctx.biz_location}
    if not children:
        del event["childEPCs"]  # a DELETE without children unpacks everything
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    event["eventID"] = f"ni:///sha-256;{digest}?ver=CBV2.0"
    return event


def decommission_event(ctx: EventContext, codes: Sequence[str], at: float) -> dict[str, Any]:
    """ObjectEvent DELETE, bizStep decommissioning: the codes leave commerce for good."""
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": _time(at),
        "eventTimeZoneOffset": ctx.utc_offset,
        "epcList": [code_uri(c, ctx.company_prefix_len) for c in codes],
        "action": "DELETE",
        "bizStep": "decommissioning",
        "disposition": "inactive",
        "readPoint": {"id": ctx.read_point},
    }
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    event["eventID"] = f"ni:///sha-256;{digest}?ver=CBV2.0"
    return event


def journal_link(
    ledger: Ledger, ctx: EventContext, parent: str, children: Sequence[str], at: float, job: int | None
) -> int:
    """ADD, inside the caller's atomic block: the link and its event commit together."""
    event = aggregation_event(ctx, "ADD", parent, children, at)
    payload = {"epcis": event, "parent": parent, "children": list(children)}
    return ledger.append_event(KIND_ADD, payload, code=parent, job=job, uplink=True, at=at)


def journal_unlink(
    ledger: Ledger, ctx: EventContext, parent: str, children: Sequence[str], at: float, job: int | None
) -> int:
    event = aggregation_event(ctx, "DELETE", parent, children, at)
    payload = {"epcis": event, "parent": parent, "children": list(children)}
    return ledger.append_event(KIND_DELETE, payload, code=parent, job=job, uplink=True, at=at)


def journal_decommission(
    ledger: Ledger, ctx: EventContext, codes: Sequence[str], at: float, job: int | None
) -> int:
    event = decommission_event(ctx, codes, at)
    payload = {"epcis": event, "codes": list(codes)}
    return ledger.append_event(KIND_DECOMMISSION, payload, code=codes[0], job=job, uplink=True, at=at)


def replay(conn: sqlite3.Connection) -> dict[str, str]:
    """Child -> parent, rebuilt from the journal alone; must equal pack_links (the property tests say so)."""
    links: dict[str, str] = {}
    rows = conn.execute(
        "SELECT kind, payload FROM events WHERE kind IN (?, ?) ORDER BY seq", (KIND_ADD, KIND_DELETE)
    )
    for kind, raw in rows:
        body = json.loads(raw)
        parent, children = body["parent"], body["children"]
        if kind == KIND_ADD:
            for child in children:
                links[child] = parent
        else:
            for child in children or [c for c, p in links.items() if p == parent]:
                if links.get(child) == parent:
                    del links[child]
    return links
