"""EPCIS 2.0 event builders for what a packaging line states: commissioned, rejected, packed, unpacked.

Why builders and not free-form dicts: every producer (verification, rejects, aggregation) must emit the
same shape, or the same fact hashes to two different eventIDs and the cloud counts it twice. The
builders fix the vocabulary (CBV 2.0 bare words), the time format (milliseconds with the line's UTC
offset, fixed at write time) and the identifier scheme (`epc_for`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from agent.codes import gs1

if TYPE_CHECKING:
    from agent.config import LineConfig

# Our extension namespace: the prefix used in events and the IRI it stands for in every document's @context.
NS_PREFIX = "lineagent"
NS_IRI = "https://ns.lineagent.dev/epcis/"
# Codes that are neither a GS1 Digital Link nor a GS1 key: urn:lineagent:code:<percent-encoded code>.
CODE_URN = "urn:lineagent:code:"


class Action(StrEnum):
    ADD = "ADD"
    OBSERVE = "OBSERVE"
    DELETE = "DELETE"


class BizStep(StrEnum):
    COMMISSIONING = "commissioning"
    DECOMMISSIONING = "decommissioning"
    DESTROYING = "destroying"
    PACKING = "packing"
    UNPACKING = "unpacking"
    INSPECTING = "inspecting"


class Disposition(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    DESTROYED = "destroyed"
    IN_PROGRESS = "in_progress"


class EventError(ValueError):
    """An event that cannot be built as asked; the message names the field."""


@dataclass(frozen=True, slots=True)
class LineContext:
    """Where and in which time zone the line's events happen; the same for every event of the line."""

    read_point: str
    biz_location: str | None
    utc_offset: str = "+00:00"
    company_prefix_length: int = 7

    @classmethod
    def from_config(cfg: type[LineContext], line: LineConfig) -> LineContext:
        read_point = line.line.read_point or default_read_point(line.site.id, line.line.id, line.site.sgln)
        prefix_len = 7
        for product in line.products.values():
            prefix_len = product.company_prefix_length
            break
        return cfg(
            read_point=read_point,
            biz_location=line.site.sgln,
            utc_offset=line.line.utc_offset,
            company_prefix_length=prefix_len,
        )

    def tz(self) -> timezone:
        sign = -1 if self.utc_offset[0] == "-" else 1
        return timezone(sign * timedelta(hours=int(self.utc_offset[1:3]), minutes=int(self.utc_offset[4:6])))

    def event_time(self, at: float) -> str:
        """ISO 8601 at millisecond precision: the precision the CBV event hash keeps, so none is lost."""
        return datetime.fromtimestamp(at, self.tz()).isoformat(timespec="milliseconds")


def default_read_point(site: str, line: str, sgln: str | None) -> str:
    """The site's SGLN with the line id as extension when it is a valid one, else a line URN."""
    if sgln:
        m = re.fullmatch(r"urn:epc:id:sgln:(\d+)\.(\d*)\.(.+)", sgln)
        if m and re.fullmatch(r"[A-Za-z0-9_-]{1,20}", line):
            return f"urn:epc:id:sgln:{m.group(1)}.{m.group(2)}.{line}"
    return f"urn:lineagent:line:{quote(site, safe='')}:{quote(line, safe='')}"


_SSCC = re.compile(r"^(?:\(00\)|00)?(\d{18})$")
_SGTIN_AI = re.compile(r"^(?:\(01\)|01)(\d{14})(?:\(21\)|21)([!\"%-/0-9:-?A-Z_a-z]{1,20})$")


def epc_for(code: str, company_prefix_length: int = 7) -> str:
    """A URI valid in epcList for any code a line prints.

    - a GS1 Digital Link (http/https URI) is already a URI and stays as it is;
    - an EPC URN stays as it is;
    - an SSCC (18 digits, optionally with AI 00) with a valid check digit -> urn:epc:id:sscc;
    - an element string of exactly GTIN + serial (AIs 01 and 21) -> urn:epc:id:sgtin;
    - anything else (e.g. a 20-digit China drug traceability code) -> urn:lineagent:code:<code>,
      percent-encoded, so the printed code is recoverable from the URI.
    """
    text = code.strip()
    if not text:
        raise EventError("an empty code has no EPC")
    if text.startswith(("https://", "http://", "urn:epc:")):
        return text
    m = _SSCC.match(text)
    if m:
        try:
            return gs1.sscc_uri(m.group(1), company_prefix_length)
        except gs1.GS1Error:
            pass
    m = _SGTIN_AI.match(text)
    if m:
        try:
            return gs1.sgtin_uri(m.group(1), m.group(2), company_prefix_length)
        except gs1.GS1Error:
            pass
    return CODE_URN + quote(text, safe="")


def _base(kind: str, ctx: LineContext, at: float) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "eventTime": ctx.event_time(at),
        "eventTimeZoneOffset": ctx.utc_offset,
    }
    return event


def _where(event: dict[str, Any], ctx: LineContext, work_order: str | None) -> None:
    event["readPoint"] = {"id": ctx.read_point}
    if ctx.biz_location:
        event["bizLocation"] = {"id": ctx.biz_location}
    if work_order:
        event["bizTransactionList"] = [
            {"type": "prodorder", "bizTransaction": f"urn:lineagent:workorder:{quote(work_order, safe='')}"}
        ]


def _extensions(event: dict[str, Any], extensions: Mapping[str, str] | None) -> None:
    for key, value in (extensions or {}).items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key):
            raise EventError(f"extension name {key!r} must be a plain identifier")
        event[f"{NS_PREFIX}:{key}"] = str(value)


def _epcs(epcs: Iterable[str], what: str) -> list[str]:
    out = list(dict.fromkeys(epcs))
    if not out:
        raise EventError(f"{what} needs at least one EPC")
    return out


def object_event(
    ctx: LineContext,
    epcs: Sequence[str],
    *,
    at: float,
    action: Action,
    biz_step: BizStep,
    disposition: Disposition,
    ilmd: Mapping[str, str] | None = None,
    work_order: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The general ObjectEvent; ilmd is only legal with action ADD (EPCIS 2.0, 7.4.2)."""
    if ilmd and action is not Action.ADD:
        raise EventError(f"ilmd is only allowed on an ADD ObjectEvent, not {action}")
    event = _base("ObjectEvent", ctx, at)
    event["epcList"] = _epcs(epcs, "an ObjectEvent")
    event["action"] = str(action)
    event["bizStep"] = str(biz_step)
    event["disposition"] = str(disposition)
    _where(event, ctx, work_order)
    if ilmd:
        event["ilmd"] = dict(ilmd)
    _extensions(event, extensions)
    return _finish(event)


def _finish(event: dict[str, Any]) -> dict[str, Any]:
    """Set eventID now: hashing at the producer spreads the cost over the line's own pace, so a
    backlog drains at network speed. The event is final from here; changing it needs a new build."""
    from agent.epcis.hashing import event_hash  # hashing imports this module's namespace constants

    event["eventID"] = event_hash(event)
    return event


def commissioning_event(
    ctx: LineContext,
    epcs: Sequence[str],
    *,
    at: float,
    lot: str | None = None,
    expiry: date | str | None = None,
    work_order: str | None = None,
) -> dict[str, Any]:
    """Verified items: ADD, commissioning, active; lot and expiry travel as CBV master data in ilmd."""
    ilmd: dict[str, str] = {}
    if lot:
        ilmd["cbvmda:lotNumber"] = lot
    if expiry:
        ilmd["cbvmda:itemExpirationDate"] = expiry if isinstance(expiry, str) else expiry.isoformat()
    return object_event(
        ctx, epcs, at=at, action=Action.ADD, biz_step=BizStep.COMMISSIONING,
        disposition=Disposition.ACTIVE, ilmd=ilmd or None, work_order=work_order,
    )


def decommissioning_event(
    ctx: LineContext,
    epcs: Sequence[str],
    *,
    at: float,
    reason: str,
    work_order: str | None = None,
) -> dict[str, Any]:
    """Rejected items: CBV 2.0 decommissioning is an OBSERVE with disposition inactive.

    EPCIS has no reason field on an ObjectEvent; the reject reason (no_read, wrong_code, low_grade...)
    travels in our extension `lineagent:reason`, which the event hash covers like any extension.
    """
    if not reason:
        raise EventError("a decommissioning event needs a reason")
    return object_event(
        ctx, epcs, at=at, action=Action.OBSERVE, biz_step=BizStep.DECOMMISSIONING,
        disposition=Disposition.INACTIVE, work_order=work_order, extensions={"reason": reason},
    )


def aggregation_event(
    ctx: LineContext,
    parent: str,
    children: Sequence[str],
    *,
    at: float,
    action: Action = Action.ADD,
    biz_step: BizStep | None = None,
    work_order: str | None = None,
) -> dict[str, Any]:
    """Packing (ADD) or unpacking (DELETE) of children into a parent; DELETE with no children empties it."""
    if action is Action.OBSERVE:
        raise EventError("the line only emits aggregation ADD or DELETE")
    if not parent:
        raise EventError("an AggregationEvent needs a parentID")
    step = biz_step or (BizStep.PACKING if action is Action.ADD else BizStep.UNPACKING)
    event = _base("AggregationEvent", ctx, at)
    event["parentID"] = parent
    if action is Action.ADD:
        event["childEPCs"] = _epcs(children, "an aggregation ADD")
    else:
        event["childEPCs"] = list(dict.fromkeys(children))
    event["action"] = str(action)
    event["bizStep"] = str(step)
    if action is Action.ADD:
        event["disposition"] = str(Disposition.IN_PROGRESS)
    _where(event, ctx, work_order)
    return _finish(event)
