"""The CBV 2.0 event hash (CBV 2.0 section 8.9): the eventID that makes a re-sent event the same event.

Why it matters here: the agent re-sends a batch whenever an ack is lost (broker restart, SIGKILL, a cut
link). The receiver de-duplicates by eventID, so the ID must be a pure function of the event's content,
computed the same way by anyone: GS1's published canonicalisation, then SHA-256.

The pre-hash string is, with no separators: `eventType=<type>`, then the properties in the fixed CBV
order as `name=value` (lists as `name` followed by their sorted `child=value` items), then user
extensions sorted as `{namespace}local=value`. Values are canonicalised: times to UTC at millisecond
precision with `Z`, CBV bare words and URNs to `https://ref.gs1.org/cbv/<Type>-<word>`, numbers without
redundant zeros, EPC URNs of GS1 keys to the constrained canonical GS1 Digital Link
(`https://id.gs1.org/...`, no query string, lowest granularity). eventID, recordTime and
errorDeclaration are left out.

Checked against GS1's reference implementation (epcis-event-hash-generator, tests/epcis). Quantity
lists and sensor data are not produced by a packaging line and are refused rather than hashed wrongly.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from agent.codes.gs1 import check_digit
from agent.epcis.events import NS_IRI, NS_PREFIX

CBV = "https://ref.gs1.org/cbv/"
_URN_VOCAB = {
    "urn:epcglobal:cbv:bizstep:": "BizStep-",
    "urn:epcglobal:cbv:disp:": "Disp-",
    "urn:epcglobal:cbv:btt:": "BTT-",
    "urn:epcglobal:cbv:sdt:": "SDT-",
    "urn:epcglobal:cbv:er:": "ER-",
}
_IGNORED = {"type", "eventID", "recordTime", "errorDeclaration", "@context"}
_UNSUPPORTED = {
    "quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList", "sensorElementList",
}
_EPC_LISTS = ("epcList", "inputEPCList", "childEPCs")
_AFTER_LISTS = ("outputEPCList",)


class HashError(ValueError):
    """An event this canonicaliser cannot hash faithfully; the message names the property."""


def event_hash(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    """`ni:///sha-256;<hex>?ver=CBV2.0` of the event; namespaces maps extension prefixes to IRIs."""
    digest = hashlib.sha256(prehash(event, namespaces).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"


def prehash(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    ns = {NS_PREFIX: NS_IRI, **(namespaces or {})}
    for key in _UNSUPPORTED & event.keys():
        raise HashError(f"event hash: {key} is not supported by this canonicaliser")
    parts = [f"eventType={event['type']}"]
    done: set[str] = set(_IGNORED)

    def scalar(name: str, canon: Callable[[str], str] = canonical_value) -> None:
        done.add(name)
        if event.get(name) not in (None, ""):
            parts.append(f"{name}={canon(str(event[name]))}")

    def epc_list(name: str) -> None:
        done.add(name)
        items = sorted(f"epc={canonical_value(str(e))}" for e in event.get(name) or [])
        if items:
            parts.append(name + "".join(items))

    scalar("eventTime", utc_millis)
    scalar("eventTimeZoneOffset", str)
    scalar("certificationInfo")
    scalar("parentID")
    for name in _EPC_LISTS:
        epc_list(name)
    for name in _AFTER_LISTS:
        epc_list(name)
    scalar("action", str)
    scalar("transformationID")
    scalar("bizStep", lambda v: vocab(v, "BizStep-"))
    scalar("disposition", lambda v: vocab(v, "Disp-"))
    done.add("persistentDisposition")
    if pd := event.get("persistentDisposition"):
        sub = "".join(
            "".join(sorted(f"{k}={vocab(str(v), 'Disp-')}" for v in pd.get(k) or [])) for k in ("set", "unset")
        )
        if sub:
            parts.append("persistentDisposition" + sub)
    for name in ("readPoint", "bizLocation"):
        done.add(name)
        if (where := event.get(name)) and where.get("id"):
            parts.append(f"{name}id={canonical_value(str(where['id']))}")
    for name, child, prefix in (
        ("bizTransactionList", "bizTransaction", "BTT-"),
        ("sourceList", "source", "SDT-"),
        ("destinationList", "destination", "SDT-"),
    ):
        done.add(name)
        items = sorted(
            (f"type={vocab(str(e['type']), prefix)}" if e.get("type") else "")
            + f"{child}={canonical_value(str(e[child]))}"
            for e in event.get(name) or []
        )
        if items:
            parts.append(name + "".join(items))
    done.add("ilmd")
    if ilmd := event.get("ilmd"):
        parts.append("ilmd" + _extensions(ilmd, ns, expand_standard=False))
    rest = {k: v for k, v in event.items() if k not in done}
    if rest:
        parts.append(_extensions(rest, ns, expand_standard=True))
    return "".join(parts)


def _extensions(fields: Mapping[str, Any], ns: Mapping[str, str], *, expand_standard: bool) -> str:
    items = []
    for key, value in fields.items():
        if isinstance(value, (dict, list)):
            raise HashError(f"event hash: nested extension {key!r} is not supported")
        name = key
        prefix, sep, local = key.partition(":")
        if sep and prefix in ns:
            name = "{" + ns[prefix] + "}" + local
        elif sep and not expand_standard:
            name = key  # standard-context terms in ilmd (cbvmda:...) stay as written, as GS1's tool does
        elif not sep:
            raise HashError(f"event hash: {key!r} is neither an EPCIS property nor a prefixed extension")
        text = str(value).strip()
        items.append(f"{name}={canonical_value(text)}" if text else name)
    return "".join(sorted(items))


def utc_millis(text: str) -> str:
    """Any ISO 8601 time to UTC with exactly three decimals, rounding half up like GS1's tool."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HashError(f"event hash: eventTime {text!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        raise HashError(f"event hash: time {text!r} has no UTC offset")
    moment = moment.astimezone(UTC)
    micro = Decimal(moment.microsecond).scaleb(-3).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    base = moment.replace(microsecond=0).timestamp() + int(micro) / 1000
    fixed = datetime.fromtimestamp(base, UTC)
    return fixed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{round(fixed.microsecond / 1000):03d}Z"


def vocab(value: str, kind: str) -> str:
    """A CBV term as its web URI; bare words are the JSON-LD short form of exactly that URI."""
    for urn, web in _URN_VOCAB.items():
        if value.startswith(urn):
            return CBV + web + value[len(urn):]
    if re.fullmatch(r"[a-z_]+", value):
        return CBV + kind + value
    return canonical_value(value)


def canonical_value(text: str) -> str:
    text = text.strip()
    for urn, web in _URN_VOCAB.items():
        text = text.replace(urn, CBV + web)
    text = _numeric(text)
    return digital_link(text) or text


def _numeric(text: str) -> str:
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isnan(number) or math.isinf(number):
        return text
    return str(int(number)) if int(number) == number else str(number)


_PCT = str.maketrans({"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"})
_CHARS = r"[\"'\-.0-9;-?A-Z_a-z%]"


def digital_link(uri: str) -> str | None:
    """The constrained canonical GS1 Digital Link for an EPC URN or DL URI of a GS1 key, else None."""
    if m := re.fullmatch(r"urn:epc:id:sgtin:(\d{6,12})\.(\d{1,7})\.(.{1,20})", uri):
        cp, ref, serial = m.groups()
        if len(cp) + len(ref) == 13:
            body = ref[0] + cp + ref[1:]
            return f"https://id.gs1.org/01/{body}{check_digit(body)}/21/{serial.translate(_PCT)}"
    if m := re.fullmatch(r"urn:epc:id:sscc:(\d{6,12})\.(\d{5,11})", uri):
        cp, ref = m.groups()
        if len(cp) + len(ref) == 17:
            body = ref[0] + cp + ref[1:]
            return f"https://id.gs1.org/00/{body}{check_digit(body)}"
    if m := re.fullmatch(r"urn:epc:id:sgln:(\d{6,12})\.(\d{0,6})\.(.{1,20})", uri):
        cp, ref, ext = m.groups()
        if len(cp) + len(ref) == 12:
            gln = cp + ref + str(check_digit(cp + ref))
            return f"https://id.gs1.org/414/{gln}" + ("" if ext == "0" else f"/254/{ext.translate(_PCT)}")
    if m := re.fullmatch(r"urn:epc:class:lgtin:(\d{6,12})\.(\d{1,7})\.(.{1,20})", uri):
        cp, ref, lot = m.groups()
        if len(cp) + len(ref) == 13:
            body = ref[0] + cp + ref[1:]
            return f"https://id.gs1.org/01/{body}{check_digit(body)}/10/{lot.translate(_PCT)}"
    return _constrain_dl(uri)


def _constrain_dl(uri: str) -> str | None:
    """A DL URI on any domain -> id.gs1.org, no query, one key qualifier at most (GS1's tool's scope)."""
    m = re.fullmatch(
        r"https?://[^/?#]+(?:/[^?#]*?)?/(01|gtin|00|sscc|414|gln)/(\d{4}[^/?#]+)(/[^/?#]+/[^/?#]+)?/?(\?[^#]*)?",
        uri,
    )
    if not m:
        return None
    ai = {"gtin": "01", "sscc": "00", "gln": "414"}.get(m.group(1), m.group(1))
    key, qualifier = m.group(2), m.group(3) or ""
    if ai == "01":
        key = key.zfill(14) if len(key) in (8, 12, 13) else key
    out = f"https://id.gs1.org/{ai}/{key}{qualifier}"
    valid = (
        r"https://id\.gs1\.org/00/\d{18}",
        rf"https://id\.gs1\.org/01/\d{{14}}(/(21|10)/{_CHARS}{{0,20}})?",
        rf"https://id\.gs1\.org/414/\d{{13}}(/254/{_CHARS}{{0,20}})?",
    )
    return out if any(re.fullmatch(p, out) for p in valid) else None
