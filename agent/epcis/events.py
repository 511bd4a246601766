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
from agent.epcis.identity import EXAMPLE_NAMESPACE, Identity, IdentityError

if TYPE_CHECKING:
    from agent.config import LineConfig

# Our extension namespace: the prefix used in events and the IRI it stands for in every document's @context.
NS_PREFIX = "lineagent"
NS_IRI = "https://ns.lineagent.dev/epcis/"
# CBV 2.0, 8.5 (business transaction identifiers): a transaction id under the GLN of its issuer.
BT_URN = "urn:epcglobal:cbv:bt:"


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
    """Where and in which time zone the line's events happen, and how they name codes and work orders.

    Built by `from_config` on a line; a context built in code (tests, benches) names codes that are no
    GS1 key under RFC 6963's example namespace and derives the GLN from `biz_location`.
    """

    read_point: str
    biz_location: str | None
    utc_offset: str = "+00:00"
    company_prefix_length: int = 7
    identity: Identity | None = None
    gln: str | None = None

    def __post_init__(self) -> None:
        if self.identity is None:
            object.__setattr__(self, "identity", Identity(company_prefix_length=self.company_prefix_length,
                                                          code_namespace=EXAMPLE_NAMESPACE))
        if self.gln is None:
            object.__setattr__(self, "gln", gln_of(self.biz_location))

    @property
    def ident(self) -> Identity:
        assert self.identity is not None  # set by __post_init__
        return self.identity

    @classmethod
    def from_config(cfg: type[LineContext], line: LineConfig) -> LineContext:
        read_point = line.line.read_point or default_read_point(line.site.id, line.line.id, line.site.sgln)
        identity = Identity.from_config(line)
        return cfg(
            read_point=read_point,
            biz_location=line.site.sgln,
            utc_offset=line.line.utc_offset,
            company_prefix_length=identity.company_prefix_length,
            identity=identity,
            gln=line.identity.gln or gln_of(line.site.sgln),
        )

    def work_order(self, name: str) -> str | None:
        """The CBV business transaction id of a work order, or None when no GLN is known to issue it."""
        if not self.gln:
            return None
        return BT_URN + self.gln + ":" + quote(name, safe="-._~!$&'()*+,;=:@")

    def tz(self) -> timezone:
        sign = -1 if self.utc_offset[0] == "-" else 1
        return timezone(sign * timedelta(hours=int(self.utc_offset[1:3]), minutes=int(self.utc_offset[4:6])))

    def event_time(self, at: float) -> str:
        """ISO 8601 at millisecond precision: the precision the CBV event hash keeps, so none is lost."""
        return datetime.fromtimestamp(at, self.tz()).isoformat(timespec="milliseconds")


def gln_of(sgln: str | None) -> str | None:
    """The GLN of an SGLN URN (TDS 2.x, 6.3.3: company prefix + location reference + check digit)."""
    m = re.fullmatch(r"urn:epc:id:sgln:(\d{6,12})\.(\d{0,6})\.(.+)", sgln or "")
    if m is None or len(m.group(1)) + len(m.group(2)) != 12:
        return None
    body = m.group(1) + m.group(2)
    return body + str(gs1.check_digit(body))


def default_read_point(site: str, line: str, sgln: str | None) -> str:
    """The site's SGLN with the line id as extension when it is a valid one, else a line URN."""
    if sgln:
        m = re.fullmatch(r"urn:epc:id:sgln:(\d+)\.(\d*)\.(.+)", sgln)
        if m and re.fullmatch(r"[A-Za-z0-9_-]{1,20}", line):
            return f"urn:epc:id:sgln:{m.group(1)}.{m.group(2)}.{line}"
    return f"urn:lineagent:line:{quote(site, safe='')}:{quote(line, safe='')}"


def epc_for(code: str, company_prefix_length: int = 7, namespace: str | None = EXAMPLE_NAMESPACE) -> str:
    """A code's URI read as printed alone, with no job or level to say more (tests, benches, tools):
    a GS1 Digital Link or element string names its SGTIN/SSCC URN, another URI itself, anything else
    `<namespace><percent-encoded code>`. The line's producers use `LineContext.ident` instead."""
    try:
        return Identity(company_prefix_length=company_prefix_length, code_namespace=namespace).epc(code)
    except IdentityError as exc:
        raise EventError(str(exc)) from exc


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
    transaction = ctx.work_order(work_order) if work_order else None
    if transaction:  # type before bizTransaction: the order the CBV 2.0 hash reads them in (see wire.py)
        event["bizTransactionList"] = [{"type": "prodorder", "bizTransaction": transaction}]


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
    """Codes taken out of commerce: ObjectEvent DELETE, bizStep decommissioning, disposition inactive.

    CBV 2.0, 7.2 (business steps): decommissioning is the disassociation of an instance-level
    identifier from its object, recorded as an ObjectEvent with action DELETE; the EPCs must have been
    commissioned before (`retirement_events` does that for a code that never was). EPCIS has no reason
    field on an ObjectEvent; the reason (no_read, low_grade, operator_decommission...) travels in our
    extension `lineagent:reason`, which the event hash covers like any extension.
    """
    if not reason:
        raise EventError("a decommissioning event needs a reason")
    return object_event(
        ctx, epcs, at=at, action=Action.DELETE, biz_step=BizStep.DECOMMISSIONING,
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


# The commissioning of a code that is retired before it ever was: this long before its decommissioning.
COMMISSION_LEAD_S = 0.001


def retirement_events(
    ctx: LineContext,
    epcs: Sequence[str],
    *,
    at: float,
    reason: str,
    commissioned: bool,
    lot: str | None = None,
    expiry: date | str | None = None,
    work_order: str | None = None,
) -> list[dict[str, Any]]:
    """The events that take codes out of commerce, by the line's one rule for codes never commissioned.

    CBV 2.0 decommissions only what was commissioned (an EPC's life starts with an ADD), and OPEN-SCS
    (OPC 30260, 4.1.4 Table 1) calls a serial printed onto a product "Encoded", the product carrying
    it. So a printed code that fails before it was commissioned (a reject at the camera, a print no read
    proves, a code an operator scraps) is commissioned and then decommissioned: the cloud learns the
    identity existed on an object and is dead, and a scan of the scrapped item finds it so. The
    commissioning is stamped COMMISSION_LEAD_S before the decommissioning: the print preceded the
    verdict, and consumers that order by eventTime keep the order.
    """
    out = []
    if not commissioned:
        out.append(commissioning_event(ctx, epcs, at=at - COMMISSION_LEAD_S, lot=lot, expiry=expiry,
                                       work_order=work_order))
    out.append(decommissioning_event(ctx, epcs, at=at, reason=reason, work_order=work_order))
    return out
