"""EPCIS 2.0 documents: wrapping a batch of events, and checking them against GS1's JSON schema.

Why validate on both ends: a document the cloud cannot parse is as bad as a lost one, and it would be
resent forever. The agent validates what it builds (tests and `sync` refuse a producer's malformed
event before it blocks the line's queue); the reference receiver validates everything it stores.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jsonschema

from agent.epcis import jsonio
from agent.epcis.events import NS_IRI, NS_PREFIX
from agent.epcis.hashing import event_hash

GS1_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
CONTEXT: list[Any] = [GS1_CONTEXT, {NS_PREFIX: NS_IRI}]


class DocumentInvalid(ValueError):
    """A document that breaks the EPCIS 2.0 JSON schema; the message gives the JSON path and the rule."""


def with_event_id(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event with eventID set to its CBV hash unless the producer already set one."""
    out = dict(event)
    if not out.get("eventID"):
        out["eventID"] = event_hash(out)
    return out


# GS1's reference event-hash generator (epcis-event-hash-generator 1.9) reads the two keys of a
# bizTransactionList, sourceList or destinationList entry in the order the JSON gives them, and CBV
# 2.0, 8.9 orders them type first. The ledger stores events with sorted keys ("bizTransaction" <
# "type"), so every such entry is written type first here, at the one place that makes the bytes
# sent, and the hash the producer computed is the hash of those bytes
# (tests/epcis/test_uplink_capture.py checks it on what a broker delivers). Only these entries are
# rebuilt: the other keys' order changes no hash, and a backlog drain sends every event once more.
_TYPED_LISTS = (("bizTransactionList", "bizTransaction"), ("sourceList", "source"), ("destinationList", "destination"))


def wire_event(event: dict[str, Any]) -> dict[str, Any]:
    """`event` (the caller's to change) with its typed list entries written type first."""
    for name, value_key in _TYPED_LISTS:
        entries = event.get(name)
        if entries and isinstance(entries, list):
            event[name] = [_type_first(e, value_key) for e in entries]
    return event


def _type_first(entry: Any, value_key: str) -> Any:
    if not isinstance(entry, dict) or "type" not in entry:
        return entry
    if len(entry) == 2 and value_key in entry:  # the usual {type, bizTransaction}: no generic merge
        return {"type": entry["type"], value_key: entry[value_key]}
    return {"type": entry["type"], **entry}


def document(
    events: Iterable[Mapping[str, Any]], *, doc_id: str | None = None, created: str | None = None,
    owned: bool = False,
) -> dict[str, Any]:
    """An EPCISDocument holding the events (each given its eventID, typed list entries type first),
    with our extension context. The caller's dicts never change; `owned=True` says the caller hands
    them over (the uplink's freshly parsed rows), sparing the copy of a dict that has its eventID.
    """
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": created or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "id": doc_id or f"urn:uuid:{uuid.uuid4()}",
        "epcisBody": {"eventList": [
            wire_event(e if owned and isinstance(e, dict) and e.get("eventID") else with_event_id(e)) for e in events
        ]},
    }


@functools.cache
def schema() -> dict[str, Any]:
    text = resources.files("agent.epcis").joinpath("schema/EPCIS-JSON-Schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    return cls(schema(), format_checker=cls.FORMAT_CHECKER)


@functools.cache
def _fast() -> Callable[[Any], Any] | None:
    """The schema compiled to Python by fastjsonschema (about 10x jsonschema), when installed."""
    try:
        import fastjsonschema  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    compiled: Callable[[Any], Any] = fastjsonschema.compile(schema())
    return compiled


def validate(doc: Mapping[str, Any]) -> None:
    """Raise DocumentInvalid naming the first broken place; return quietly when the document is valid.

    The fast compiled validator answers first; only a document it refuses goes through jsonschema,
    whose best_match gives the clearer message (and both must agree for it to pass).
    """
    fast = _fast()
    if fast is not None:
        try:
            fast(doc)
            return
        except Exception:  # noqa: BLE001, S110 - any refusal is re-checked below for the precise message
            pass
    error = jsonschema.exceptions.best_match(_validator().iter_errors(doc))
    while error is not None and error.context:  # "not valid under any of the given schemas": say which rule
        deeper = jsonschema.exceptions.best_match(error.context)
        if deeper is None:
            break
        error = deeper
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        raise DocumentInvalid(f"EPCIS schema: at {where}: {error.message}")


def problems(doc: Mapping[str, Any]) -> list[str]:
    """Every schema violation, for reports; empty when valid."""
    return [
        f"at {'/'.join(str(p) for p in e.absolute_path) or '(document)'}: {e.message}"
        for e in _validator().iter_errors(doc)
    ]


# ---- the receiver's fast path ------------------------------------------------------------------
# Validating every event through the full schema costs ~0.3 ms (its if/then/anyOf dispatch runs per
# property), far below a line's event rate. Events of one line share their shape and differ only in
# identifiers and times. So each event is split into (a) its shape: the event with those fields
# replaced by valid placeholders, validated through the full schema once and then remembered, and
# (b) the replaced values, each checked against the schema's own rule for its field (uri or
# date-time format; uniqueItems for EPC lists). The schema constrains these fields only through
# those rules, independently of the rest of the event, so (a) and (b) pass exactly when the full
# schema passes. Any failure re-runs the full validator for the precise message.
_TIMES = ("eventTime", "recordTime")
_URIS = ("eventID", "parentID")
_LISTS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_MASK_TIME = "2000-01-01T00:00:00.000+00:00"
_MASK_URI = "urn:lineagent:mask"
_SHAPES: set[bytes] = set()
_SHAPES_MAX = 4096


@functools.cache
def _format(kind: str) -> Callable[[Any], Any]:
    import fastjsonschema  # type: ignore[import-not-found,unused-ignore]

    check: Callable[[Any], Any] = fastjsonschema.compile(schema()["definitions"][kind])
    return check


def _ok(kind: str, value: Any) -> bool:
    try:
        _format(kind)(value)
    except Exception:  # noqa: BLE001 - fastjsonschema raises its own exception type
        return False
    return True


@functools.cache
def _check(kind: str) -> Callable[[Any], bool]:
    """The schema's rule for one field as a plain predicate, deciding exactly as `_ok(kind, value)`.

    Why: a compiled fastjsonschema function costs a call, a type check and exception set-up per value;
    the three such values of every event were half of the receiver's validation CPU. A definition of
    the form {"type": "string", "format": F} compiles to `isinstance(value, str) and
    FORMAT_REGEXS[F].match(value)` (fastjsonschema's draft-07 generator), so that is used directly;
    any other form of the rule keeps the compiled function.
    """
    rule = schema()["definitions"][kind]
    fmt = rule.get("format")
    try:
        from fastjsonschema.draft07 import CodeGeneratorDraft07  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        regexes: dict[str, str] = {}
    else:
        regexes = dict(CodeGeneratorDraft07.FORMAT_REGEXS)
    if set(rule) == {"type", "format"} and rule["type"] == "string" and fmt in regexes:
        match = re.compile(regexes[fmt]).match
        return lambda value: isinstance(value, str) and match(value) is not None
    return functools.partial(_ok, kind)


def prepare() -> None:
    """Compile the validators now (about half a second of CPU) rather than inside the first batch."""
    _validator()
    if _fast() is not None:
        _check("time")
        _check("uri")


def validate_batch(doc: Mapping[str, Any]) -> None:
    """Exactly `validate(doc)`, fast for the many same-shaped events of a line's batch."""
    body = doc.get("epcisBody")
    events = body.get("eventList") if isinstance(body, Mapping) else None
    if _fast() is None or not isinstance(events, list):
        validate(doc)
        return
    envelope = {**doc, "epcisBody": {**body, "eventList": []}}  # type: ignore[dict-item]
    validate(envelope)
    for event in events:
        if not isinstance(event, dict) or not _event_ok(event, envelope):
            validate(doc)  # raises with the precise place
            return


def _event_ok(event: dict[str, Any], envelope: dict[str, Any]) -> bool:
    masked = dict(event)
    time_ok, uri_ok = _check("time"), _check("uri")
    for key in _TIMES:
        if key in event:
            if not time_ok(event[key]):
                return False
            masked[key] = _MASK_TIME
    for key in _URIS:
        if key in event:
            if not uri_ok(event[key]):
                return False
            masked[key] = _MASK_URI
    for key in _LISTS:
        items = event.get(key)
        if isinstance(items, list) and items:
            if not all(map(uri_ok, items)) or len(set(items)) != len(items):  # uniqueItems
                return False
            masked[key] = [_MASK_URI]
    shape = jsonio.dumps(masked, sort_keys=True)
    if shape in _SHAPES:
        return True
    try:
        validate({**envelope, "epcisBody": {**envelope["epcisBody"], "eventList": [masked]}})
    except DocumentInvalid:
        return False
    if len(_SHAPES) >= _SHAPES_MAX:
        _SHAPES.clear()
    _SHAPES.add(shape)
    return True
