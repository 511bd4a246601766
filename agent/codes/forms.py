"""Any printed or typed form of a code, read into what it names: a GTIN + serial, an SSCC, or a plain code.

Why: an operator holds a product and types or scans what is on it. The same item may be printed as
a GS1 Digital Link, an element string (with FNC1 as GS, or in brackets on the label), behind a
symbology identifier from a handheld scanner, or quoted from an EPCIS event as an EPC URN; the
ledger holds only the serial (or the plain 一物一码 code). Reading every form here keeps each CLI
command to one call, and a refusal names what is wrong (a check digit, an unknown AI) instead of
"not found". `agent.codes.lookup` then finds the ledger's code for what was read.

Sources:
- GS1 Digital Link Standard: URI Syntax, release 1.2 (2021), §4: any domain and path before the
  primary key, key qualifiers as path pairs in the key's order (GTIN: 22, 10, 21; SSCC: none), data
  attributes in the query string; values percent-encoded (RFC 3986). The short names of release 1.1
  (gtin, sscc, cpv, lot, ser), deprecated in 1.2, are still read: labels printed then are in the field.
- GS1 General Specifications, release 24.0: element strings and AIs (agent.codes.ai), §7.9.1 check
  digits; a GTIN-8/12/13 stands right-aligned in the 14 digits of AI (01).
- ISO/IEC 15424 symbology identifiers as the General Specifications list them for GS1 carriers
  (§5.1.2): ]C1 GS1-128, ]e0 GS1 DataBar, ]d2 GS1 DataMatrix, ]Q3 GS1 QR Code, ]J1 GS1 DotCode.
- EPC Tag Data Standard 2.1: pure identity URIs urn:epc:id:sgtin / sscc (§6.3), tag URIs (§12),
  URI escaping of the serial (Table A-1), and the conversion back to GTIN/SSCC (§7, the SGTIN and
  SSCC sections), which needs the company prefix length: the URI carries it as the digits before
  the first dot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from agent.codes.ai import (
    AIS,
    GS,
    FormError,
    check_digit,
    check_value,
    key_problem,
    parse_bracketed,
    parse_element_string,
)
from agent.i18n import _

__all__ = ["Form", "FormError", "Printed", "read"]


class Form(StrEnum):
    DIGITAL_LINK = "digital_link"
    ELEMENT_STRING = "element_string"
    SSCC = "sscc"  # 18 digits, bare
    EPC_URN = "epc_urn"
    URL = "url"  # a URL that is not a Digital Link: a 一物一码 template's prefix + code
    RAW = "raw"  # the code itself


@dataclass(frozen=True, slots=True)
class Printed:
    """What a text names. `text` is the input without surrounding whitespace (and, for the private
    `urn:lineagent:code:` URN, the code inside it)."""

    form: Form
    text: str
    gtin: str | None = None
    serial: str | None = None
    lot: str | None = None
    sscc: str | None = None
    note: str | None = None  # RAW read of text that looked like GS1 data but was not: why not

    def describe(self) -> str:
        if self.form is Form.URL:
            return _("the link of a URL template")
        if self.sscc:
            return _("SSCC {sscc}").format(sscc=self.sscc)
        if self.gtin and self.serial is not None:
            if self.lot:
                return _("GTIN {gtin} lot {lot} serial {serial}").format(gtin=self.gtin, lot=self.lot,
                                                                        serial=self.serial)
            return _("GTIN {gtin} serial {serial}").format(gtin=self.gtin, serial=self.serial)
        return self.text


GS1_SYMBOLOGIES = {"]C1": "GS1-128", "]e0": "GS1 DataBar", "]d2": "GS1 DataMatrix", "]Q3": "GS1 QR Code",
                   "]J1": "GS1 DotCode"}
_SYMBOLOGY = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_DL_KEYS = {"01": ("22", "10", "21", "235"), "00": ()}  # the primary keys a line prints, and their qualifiers
_DL_SHORT = {"gtin": "01", "sscc": "00", "cpv": "22", "lot": "10", "ser": "21"}
_LITERAL_GS = ("<GS>", "{GS}", "\\x1d", "\\x1D")  # what people type where a GS belongs
_EPC = re.compile(r"urn:epc:(id|tag):([a-z0-9-]+):(.*)", re.IGNORECASE)
_PRIVATE = "urn:lineagent:code:"


def read(text: str) -> Printed:
    """Read a code as typed or scanned; FormError when it is GS1 data that is not valid."""
    t = text.strip()  # str.strip() also drops a leading or trailing GS: harmless there
    if not t:
        raise FormError(_("the code is empty"))
    sym = _SYMBOLOGY.match(t)
    if sym:
        data = t[3:]
        if sym.group() in GS1_SYMBOLOGIES:
            return _from_fields(parse_element_string(_literal_gs(data).lstrip(GS)), Form.ELEMENT_STRING, t)
        if not data:
            raise FormError(_("only a symbology identifier ({sym}), no data").format(sym=sym.group()))
        return _replace_text(read(data), t)
    low = t.lower()
    if low.startswith(("http://", "https://")):
        return _url(t)
    if low.startswith(_PRIVATE):
        return Printed(Form.RAW, _unquote(t[len(_PRIVATE):], t))
    if low.startswith("urn:epc:"):
        return _epc(t)
    if t.startswith("("):
        return _from_fields(parse_bracketed(t), Form.ELEMENT_STRING, t)
    plain = _literal_gs(t)
    if GS in plain:
        return _from_fields(parse_element_string(plain), Form.ELEMENT_STRING, t)
    return _digits(t)


def _replace_text(p: Printed, text: str) -> Printed:
    """A GS1 reading keeps the whole text as scanned; a raw code or URL is the data after the identifier."""
    return p if p.form in (Form.RAW, Form.URL) else Printed(p.form, text, p.gtin, p.serial, p.lot, p.sscc, p.note)


def _literal_gs(t: str) -> str:
    for literal in _LITERAL_GS:
        t = t.replace(literal, GS)
    return t


def _digits(t: str) -> Printed:
    """Bare digits that may be GS1 data: AI 00 + SSCC, AI 01 + GTIN + more AIs, or a bare SSCC.

    Only these shapes are tried: a plain numeric code (a 20-digit drug traceability code, say) is a
    code of its own, and the ledger was asked for it as typed before this is reached."""
    looks = (t.startswith("00") and len(t) == 20 and t.isdigit()) or (
        t.startswith("01") and len(t) >= 16 and t[2:16].isdigit())
    if looks:
        try:
            return _from_fields(parse_element_string(t), Form.ELEMENT_STRING, t)
        except FormError as exc:
            return Printed(Form.RAW, t, note=_("read as a GS1 element string: {problem}").format(problem=exc))
    if len(t) == 18 and t.isdigit():
        problem = key_problem("SSCC", t, 18)
        if problem is None:
            return Printed(Form.SSCC, t, sscc=t)
        return Printed(Form.RAW, t, note=_("read as an SSCC: {problem}").format(problem=problem))
    return Printed(Form.RAW, t)


def _from_fields(fields: dict[str, str], form: Form, text: str) -> Printed:
    """The identity an element string carries: the SSCC (00) if any, else GTIN (01) + serial (21)."""
    if "00" in fields:
        return Printed(form, text, sscc=fields["00"])
    if "01" in fields:
        if "21" not in fields:
            raise FormError(_("GTIN {gtin} without a serial (21) names a product, not one item").format(
                gtin=fields["01"]))
        return Printed(form, text, gtin=fields["01"], serial=fields["21"], lot=fields.get("10"))
    named = ", ".join(f"({ai})" for ai in fields)
    raise FormError(_("the GS1 data names no SSCC (00) and no GTIN (01), only {ais}").format(ais=named))


# ---- GS1 Digital Link ------------------------------------------------------------------------------


def _url(t: str) -> Printed:
    segments = _url_path(t).split("/")[1:]
    while segments and segments[-1] == "":
        segments.pop()
    starts = [i for i, s in enumerate(segments) if _DL_SHORT.get(s, s) in _DL_KEYS]
    for i in starts:
        if _shape_ok(segments[i:]):
            return _dl_fields(segments[i:], t)
    if starts:
        raise FormError(_dl_shape_problem(segments[starts[-1]:]))
    return Printed(Form.URL, t)


_SPLIT_BY_URLSPLIT = frozenset("\t\r\n[]")  # what urlsplit removes (tab, CR, LF) or checks (an IPv6 host)


def _url_path(t: str) -> str:
    """`urlsplit(t).path` of a text that starts with http:// or https:// (any case).

    Why not always urlsplit: it is a quarter of naming an item printed as a Digital Link, and every
    item a line packs is named. For the ASCII link a coder prints (no tab, CR, LF or bracket, the
    only things urlsplit removes or checks) the path is what follows the host up to the query or the
    fragment, exactly as urlsplit splits it; anything else goes through urlsplit itself.
    """
    if not t.isascii() or not _SPLIT_BY_URLSPLIT.isdisjoint(t):
        try:
            return urlsplit(t).path
        except ValueError as exc:
            raise FormError(_("{text!r} is not a valid URL: {problem}").format(text=t[:60], problem=exc)) from exc
    start = t.index("//") + 2  # the scheme is http or https: its "://" is the first "//"
    end = len(t)
    for c in "/?#":
        i = t.find(c, start, end)
        if i >= 0:
            end = i
    rest = t[end:]  # the path, query and fragment
    cut = len(rest)
    for c in "?#":
        i = rest.find(c, 0, cut)
        if i >= 0:
            cut = i
    return rest[:cut]


def _shape_ok(pairs: list[str]) -> bool:
    if len(pairs) % 2:
        return False
    allowed = _DL_KEYS[_DL_SHORT.get(pairs[0], pairs[0])]
    names = [_DL_SHORT.get(p, p) for p in pairs[2::2]]
    return all(n in allowed for n in names) and len(set(names)) == len(names)


def _dl_shape_problem(pairs: list[str]) -> str:
    key = _DL_SHORT.get(pairs[0], pairs[0])
    if len(pairs) % 2:
        return _("the Digital Link path after /{key}/ does not come in AI/value pairs: /{path}").format(
            key=pairs[0], path="/".join(pairs))
    allowed = ", ".join(_DL_KEYS[key]) or _("none")
    for p in pairs[2::2]:
        if _DL_SHORT.get(p, p) not in _DL_KEYS[key]:
            return _("/{ai}/ in a Digital Link path is not a qualifier of AI ({key}) (allowed: {allowed}); "
                     "data attributes go in the query string").format(ai=p, key=key, allowed=allowed)
    return _("an AI appears twice in the Digital Link path /{path}").format(path="/".join(pairs))


def _dl_fields(pairs: list[str], t: str) -> Printed:
    fields: dict[str, str] = {}
    for ai, raw in zip(pairs[::2], pairs[1::2], strict=True):
        code = _DL_SHORT.get(ai, ai)
        value = _unquote(raw, t)
        if code == "01" and value.isdigit() and len(value) in (8, 12, 13):
            value = value.zfill(14)  # a GTIN-8/12/13 right-aligned in the 14 digits of AI (01)
        check_value(AIS[code], value)
        fields[code] = value
    return _from_fields(fields, Form.DIGITAL_LINK, t)


def _unquote(value: str, whole: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError as exc:
        raise FormError(_("{text!r}: a percent-encoded value is not valid UTF-8").format(text=whole[:60])) from exc


# ---- EPC URNs ---------------------------------------------------------------------------------------


def _epc(t: str) -> Printed:
    m = _EPC.fullmatch(t)
    if not m:
        raise FormError(_("{text!r} is not an EPC URI (urn:epc:id:SCHEME:...)").format(text=t[:60]))
    kind, scheme, body = m.group(1).lower(), m.group(2).lower(), m.group(3)
    fields = body.split(".")
    if kind == "tag":  # urn:epc:tag:sgtin-96:F.CP.IIR.SER: the filter value first, then as the id URI
        scheme = scheme.rsplit("-", 1)[0]
        fields = fields[1:]
    if scheme == "sgtin" and len(fields) == 3:
        return _sgtin(fields[0], fields[1], _unquote(fields[2], t), t)
    if scheme == "sscc" and len(fields) == 2:
        return _sscc(fields[0], fields[1], t)
    if scheme in ("sgtin", "sscc"):
        raise FormError(_("{text!r}: an EPC {scheme} URI has {n} dot-separated parts").format(
            text=t[:60], scheme=scheme, n=3 if scheme == "sgtin" else 2))
    raise FormError(_("{text!r} names an EPC of scheme {scheme!r}; a line prints SGTINs and SSCCs").format(
        text=t[:60], scheme=scheme))


def _prefix_ok(prefix: str, rest: str, total: int, t: str) -> None:
    if not (prefix.isdigit() and rest.isdigit() and 6 <= len(prefix) <= 12 and len(prefix) + len(rest) == total):
        raise FormError(_("{text!r}: the company prefix (6-12 digits) and the next part must be {total} digits "
                          "together").format(text=t[:60], total=total))


def _sgtin(prefix: str, item: str, serial: str, t: str) -> Printed:
    """TDS §7 (SGTIN): GTIN = indicator digit, company prefix, item reference, check digit."""
    _prefix_ok(prefix, item, 13, t)
    body = item[0] + prefix + item[1:]
    check_value(AIS["21"], serial)
    return Printed(Form.EPC_URN, t, gtin=body + str(check_digit(body)), serial=serial)


def _sscc(prefix: str, ref: str, t: str) -> Printed:
    """TDS §7 (SSCC): SSCC = extension digit, company prefix, serial reference, check digit."""
    _prefix_ok(prefix, ref, 17, t)
    body = ref[0] + prefix + ref[1:]
    return Printed(Form.EPC_URN, t, sscc=body + str(check_digit(body)))
