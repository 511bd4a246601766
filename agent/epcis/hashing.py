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

import functools
import hashlib
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

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


class HashError(ValueError):
    """An event this canonicaliser cannot hash faithfully; the message names the property."""


def event_hash(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    """`ni:///sha-256;<hex>?ver=CBV2.0` of the event; namespaces maps extension prefixes to IRIs."""
    digest = hashlib.sha256(prehash(event, namespaces).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"


# The CBV 2.0 property order, each with how its value is canonicalised.
_ORDER: tuple[tuple[str, str], ...] = (
    ("eventTime", "time"), ("eventTimeZoneOffset", "raw"), ("certificationInfo", "value"), ("parentID", "value"),
    ("epcList", "epcs"), ("inputEPCList", "epcs"), ("childEPCs", "epcs"), ("outputEPCList", "epcs"),
    ("action", "raw"), ("transformationID", "value"), ("bizStep", "BizStep-"), ("disposition", "Disp-"),
    ("persistentDisposition", "pd"), ("readPoint", "where"), ("bizLocation", "where"),
    ("bizTransactionList", "bizTransaction"), ("sourceList", "source"), ("destinationList", "destination"),
    ("ilmd", "ilmd"),
)
_KNOWN = frozenset(name for name, _ in _ORDER) | _IGNORED
_LIST_TYPES = {"bizTransaction": "BTT-", "source": "SDT-", "destination": "SDT-"}


def prehash(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    ns = {NS_PREFIX: NS_IRI, **namespaces} if namespaces else _DEFAULT_NS
    for key in _UNSUPPORTED & event.keys():
        raise HashError(f"event hash: {key} is not supported by this canonicaliser")
    parts = [f"eventType={event['type']}"]
    append = parts.append
    canon = canonical_value
    for name, how in _ORDER:
        value = event.get(name)
        if value is None or value in ("", []):
            continue
        if how == "time":
            append(f"{name}={utc_millis(str(value))}")
        elif how == "raw":
            append(f"{name}={value}")
        elif how == "value":
            append(f"{name}={canon(str(value))}")
        elif how == "epcs":
            epcs = ["epc=" + canon(str(e)) for e in value]
            epcs.sort()
            append(name)
            parts.extend(epcs)
        elif how in ("BizStep-", "Disp-"):
            append(f"{name}={vocab(str(value), how)}")
        elif how == "pd":
            sub = "".join(
                "".join(sorted(f"{k}={vocab(str(v), 'Disp-')}" for v in value.get(k) or [])) for k in ("set", "unset")
            )
            if sub:
                append(name + sub)
        elif how == "where":
            if value.get("id"):
                append(f"{name}id={canon(str(value['id']))}")
        elif how in _LIST_TYPES:
            prefix = _LIST_TYPES[how]
            append(name + "".join(sorted(
                (f"type={vocab(str(e['type']), prefix)}" if e.get("type") else "")
                + f"{how}={canon(str(e[how]))}"
                for e in value
            )))
        elif how == "ilmd":
            append("ilmd" + _extensions(value, ns, expand_standard=False))
    if not _KNOWN.issuperset(event.keys()):
        append(_extensions({k: v for k, v in event.items() if k not in _KNOWN}, ns, expand_standard=True))
    return "".join(parts)


_DEFAULT_NS = {NS_PREFIX: NS_IRI}


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


@functools.lru_cache(maxsize=1024)
def utc_millis(text: str) -> str:
    """Any ISO 8601 time to UTC with exactly three decimals, rounding half up like GS1's tool.

    Cached because a burst of packs shares one eventTime; a refused time raises and is not cached.
    """
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as exc:
        raise HashError(f"event hash: eventTime {text!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        raise HashError(f"event hash: time {text!r} has no UTC offset")
    moment = moment.astimezone(UTC)
    if moment.microsecond % 1000:  # finer than ms: round half up, as the reference does
        micro = Decimal(moment.microsecond).scaleb(-3).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        moment = moment.replace(microsecond=0) + timedelta(milliseconds=int(micro))
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


_BARE_WORD = re.compile(r"[a-z_]+")


@functools.lru_cache(maxsize=4096)
def vocab(value: str, kind: str) -> str:
    """A CBV term as its web URI; bare words are the JSON-LD short form of exactly that URI."""
    for urn, web in _URN_VOCAB.items():
        if value.startswith(urn):
            return CBV + web + value[len(urn):]
    if _BARE_WORD.fullmatch(value):
        return CBV + kind + value
    return canonical_value(value)


@functools.lru_cache(maxsize=1 << 16)
def canonical_value(text: str) -> str:
    """One value as the CBV canonical form.

    Cached per string because it is a pure function and every code is canonicalised more than once:
    an item when commissioned and again when packed, a box as a parent and again as a child, and read
    points, locations, work orders and lots in every event. The bound keeps memory flat on a long run.
    """
    value = text.strip()
    if "urn:epcglobal:cbv:" in value:
        for urn, web in _URN_VOCAB.items():
            value = value.replace(urn, CBV + web)
    value = _numeric(value)
    return digital_link(value) or value


_NUMERIC_START = frozenset("0123456789+-.")


def _numeric(text: str) -> str:
    if not text or text[0] not in _NUMERIC_START or text[-1] in "/:":
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isnan(number) or math.isinf(number):
        return text
    return str(int(number)) if int(number) == number else str(number)


_PCT = str.maketrans({"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"})
# A serial character of a constrained canonical DL: CBV 2.0, 8.9 allows no percent-escape there, so a
# DL holding one is hashed as written (GS1's generator does the same).
_CHARS = r"[\"'\-.0-9;-?A-Z_a-z]"
# One character of an EPC URI serial (TDS 2.x, 5 and Table A-1): a permitted character or one of the
# escapes of the 82-character set; 20 of them at most, an escape counting as one.
_EPC_CHAR = (r"(?:%2[125-9A-Fa-f]|%3[0-9A-Fa-f]|%4[1-9A-Fa-f]|%5[0-9AaFf]|%6[1-9A-Fa-f]|%7[0-9Aa]"
             r"|[!')(*+,.0-9:;=A-Za-z_-])")


_SGTIN = re.compile(rf"urn:epc:id:sgtin:(\d{{6,12}})\.(\d{{1,7}})\.({_EPC_CHAR}{{1,20}})")
_SSCC = re.compile(r"urn:epc:id:sscc:(\d{6,12})\.(\d{5,11})")
_SGLN = re.compile(rf"urn:epc:id:sgln:(\d{{6,12}})\.(\d{{0,6}})\.({_EPC_CHAR}{{1,20}})")
_LGTIN = re.compile(rf"urn:epc:class:lgtin:(\d{{6,12}})\.(\d{{1,7}})\.({_EPC_CHAR}{{1,20}})")
_DL = re.compile(
    r"https?://[^/?#]+(?:/[^?#]*?)?/(01|gtin|00|sscc|414|gln)/(\d{4}[^/?#]+)(/[^/?#]+/[^/?#]+)?(\?[^#]*)?(#.*)?"
)
# The three shapes GS1's tool accepts as constrained DL, as one pattern (any of them, fully matched).
_CONSTRAINED = re.compile(
    r"(?:https://id\.gs1\.org/00/\d{18}"
    rf"|https://id\.gs1\.org/01/\d{{14}}(/(21|10)/{_CHARS}{{0,20}})?"
    rf"|https://id\.gs1\.org/414/\d{{13}}(/254/{_CHARS}{{0,20}})?)"
)
_CPV = re.compile(rf"/22/{_CHARS}{{0,20}}")
_AI_NAMES = {"gtin": "01", "sscc": "00", "gln": "414"}


@functools.lru_cache(maxsize=1024)
def _check_digit(body: str) -> int:
    """gs1.check_digit for a body the URN patterns already proved to be digits (weights 3,1,3... from
    the right). Cached: every item of a job hashes with its GTIN's body; an SSCC is new in every pallet
    event, so the bound only keeps the recent GTINs and locations."""
    total = 3 * sum(map(int, body[-1::-2])) + sum(map(int, body[-2::-2]))
    return (10 - total % 10) % 10


def digital_link(uri: str) -> str | None:
    """The constrained canonical GS1 Digital Link for an EPC URN or DL URI of a GS1 key, else None.

    Dispatched on the scheme prefix: each URN pattern starts with its own literal prefix and the DL
    pattern with http, so at most one pattern can match and only that one is tried.
    """
    if uri.startswith("http"):
        return _constrain_dl(uri)
    if not uri.startswith("urn:epc:"):
        return None
    if uri.startswith("urn:epc:id:sgtin:"):
        m = _SGTIN.fullmatch(uri)
        if m is None or len(m[1]) + len(m[2]) != 13:
            return None
        cp, ref, serial = m.groups()
        body = ref[0] + cp + ref[1:]
        return f"https://id.gs1.org/01/{body}{_check_digit(body)}/21/{serial.translate(_PCT)}"
    if uri.startswith("urn:epc:id:sscc:"):
        m = _SSCC.fullmatch(uri)
        if m is None or len(m[1]) + len(m[2]) != 17:
            return None
        cp, ref = m.groups()
        body = ref[0] + cp + ref[1:]
        return f"https://id.gs1.org/00/{body}{_check_digit(body)}"
    if uri.startswith("urn:epc:id:sgln:"):
        m = _SGLN.fullmatch(uri)
        if m is None or len(m[1]) + len(m[2]) != 12:
            return None
        cp, ref, ext = m.groups()
        gln = cp + ref + str(_check_digit(cp + ref))
        return f"https://id.gs1.org/414/{gln}" + ("" if ext == "0" else f"/254/{ext.translate(_PCT)}")
    if uri.startswith("urn:epc:class:lgtin:"):
        m = _LGTIN.fullmatch(uri)
        if m is None or len(m[1]) + len(m[2]) != 13:
            return None
        cp, ref, lot = m.groups()
        body = ref[0] + cp + ref[1:]
        return f"https://id.gs1.org/01/{body}{_check_digit(body)}/10/{lot.translate(_PCT)}"
    return None


def _constrain_dl(uri: str) -> str | None:
    """A DL URI on any domain -> id.gs1.org, no query, one key qualifier at most (GS1's tool's scope)."""
    m = _DL.fullmatch(uri)
    if not m:
        return None
    ai = _AI_NAMES.get(m[1], m[1])
    key, qualifier = m[2], m[3] or ""
    if ai == "01" and len(key) in (8, 12, 13):
        key = key.zfill(14)
    if ai == "01" and _CPV.fullmatch(qualifier):  # a consumer product variant is no part of the identity
        qualifier = ""
    out = f"https://id.gs1.org/{ai}/{key}{qualifier}"
    return out if _CONSTRAINED.fullmatch(out) else None
