"""The ledger's code for a code as typed or scanned in any printed form (agent.codes.forms reads it).

How the ledger holds codes: as issued by the cloud's package (agent/codes/importer.py), one UNIQUE
`codes.code` each: for GS1 jobs the serial alone (the template adds GTIN, lot and expiry at print,
agent/codes/templates.py), for 一物一码 URL jobs the part after the template's url_prefix, for raw
jobs the whole printed text; SSCCs the line mints are their 18 digits. A package may also carry whole
printed forms (a Digital Link, an element string) for a raw template.

Order of the search, each step an index lookup except the last:
1. the text exactly as given (covers bare serials, SSCCs, raw codes, whole URLs held as such);
2. what the text names: the serial of a GTIN + serial (checked against its job's GTIN and lot, so
   a label of another product with the same serial is refused, not confused), the SSCC, or the
   code behind a configured URL template's prefix;
3. codes held as whole printed forms naming the same thing: a range scan of the code index over the
   prefixes such forms start with (http, 00/01, "(", "]", urn:epc:), filtered by the serial or SSCC.
   Two different codes found (one serial under two GTINs) is refused with both named.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.codes.forms import Form, FormError, Printed, read
from agent.i18n import _


class CodeNotFound(LookupError):
    """No code of this ledger is what the text names (the CLI exits 4)."""


class LookupRefused(FormError):
    """The text names a code, but not one this ledger can take as it: ambiguous, or another product."""


@dataclass(frozen=True, slots=True)
class Found:
    key: str  # the code as the ledger holds it: what every ledger query takes
    printed: Printed  # what the text was read as

    @property
    def changed(self) -> bool:
        return self.key != self.printed.text


# Whole printed forms start with one of these; each pair bounds a range of the UNIQUE index on code.
_FULL_FORM_RANGES = (("http", "httq"), ("HTTP", "HTTQ"), ("00", "02"), ("(0", "(1"), ("]", "^"),
                     ("urn:epc:", "urn:epc;"))
_SCAN = "SELECT code FROM codes WHERE (" + " OR ".join("(code >= ? AND code < ?)" for _r in _FULL_FORM_RANGES) + \
        ") AND instr(code, ?) > 0 LIMIT 1000"


def resolve(conn: sqlite3.Connection, text: str, *, url_prefixes: Iterable[str] = ()) -> Found:
    """The ledger's code for `text`; FormError (bad GS1 data), LookupRefused or CodeNotFound."""
    t = text.strip()
    if t and _held(conn, t):
        return Found(t, Printed(Form.RAW, t))
    p = read(t)
    if p.form is Form.RAW:
        if p.text != t and _held(conn, p.text):  # urn:lineagent:code:<code>, ]d1<code>
            return Found(p.text, p)
        return _one(t, p, _scan(conn, p.text, lambda q: q.serial == p.text), p.note)
    if p.form is Form.URL:
        return _url(conn, p.text, p, list(url_prefixes))
    if p.sscc is not None:
        for key in (p.sscc, "00" + p.sscc, "(00)" + p.sscc):
            if _held(conn, key):
                return Found(key, p)
        return _one(t, p, _scan(conn, p.sscc, lambda q: q.sscc == p.sscc))
    assert p.gtin is not None and p.serial is not None
    problem = _serial_problem(conn, p)
    if problem is None:
        return Found(p.serial, p)
    matches = _scan(conn, p.serial, lambda q: q.gtin == p.gtin and q.serial == p.serial)
    if not matches and problem:
        raise LookupRefused(problem)
    return _one(t, p, matches)


def _held(conn: sqlite3.Connection, code: str) -> bool:
    return conn.execute("SELECT 1 FROM codes WHERE code = ?", (code,)).fetchone() is not None


def _serial_problem(conn: sqlite3.Connection, p: Printed) -> str | None:
    """None when the serial is held and fits the GTIN (and lot) read; "" when it is not held at all;
    else why the held serial is another product's. Only a code printed on items of a job (the job's
    level) has a known GTIN: a box or case code may carry a GTIN of its own."""
    row = conn.execute(
        "SELECT c.level, j.level, j.gtin, j.lot, j.name FROM codes c LEFT JOIN jobs j ON j.id = c.job"
        " WHERE c.code = ?", (p.serial,)).fetchone()
    if row is None:
        return ""
    level, job_level, gtin, lot, job = row
    if job is None or level != job_level:
        return None
    if str(gtin).zfill(14) != p.gtin:  # a job may hold a GTIN-13; what was read is always 14 digits
        return _("{text!r} names GTIN {gtin} serial {serial}, but this ledger's code {serial} is GTIN {held} "
                 "(job {job})").format(text=p.text[:80], gtin=p.gtin, serial=p.serial, held=gtin, job=job)
    if p.lot is not None and p.lot != lot:
        return _("{text!r} names lot {lot}, but this ledger's code {serial} is of lot {held} (job {job})").format(
            text=p.text[:80], lot=p.lot, serial=p.serial, held=lot, job=job)
    return None


def _url(conn: sqlite3.Connection, t: str, p: Printed, prefixes: list[str]) -> Found:
    for prefix in sorted(prefixes, key=len, reverse=True):
        if t.startswith(prefix) and _held(conn, t[len(prefix):]):
            return Found(t[len(prefix):], p)
    if not prefixes:
        raise CodeNotFound(_("{text!r} is not in this ledger; it is a URL but not a GS1 Digital Link, "
                             "and without --config the line's URL templates (url_prefix) are not known").format(
            text=t[:80]))
    raise CodeNotFound(_("{text!r} is not in this ledger (nor is what follows a URL template's "
                         "url_prefix)").format(text=t[:80]))


def _scan(conn: sqlite3.Connection, needle: str, same: Callable[[Printed], bool]) -> list[tuple[str, Printed]]:
    """Codes held as whole printed forms that read as the same identity (`same` tests a reading)."""
    if not needle:
        return []
    bounds = [b for r in _FULL_FORM_RANGES for b in r]
    found: list[tuple[str, Printed]] = []
    for (code,) in conn.execute(_SCAN, (*bounds, needle)):
        try:
            q = read(code)
        except FormError:
            continue
        if same(q):
            found.append((code, q))
    return found


def _one(t: str, p: Printed, matches: list[tuple[str, Printed]], note: str | None = None) -> Found:
    if len(matches) == 1:
        return Found(matches[0][0], p)
    if matches:
        names = "; ".join(f"{code} ({q.describe()})" for code, q in matches[:10])
        raise LookupRefused(_("{text!r} matches {count} codes of this ledger: {codes}. Give the code as printed, "
                              "with its GTIN").format(text=t[:80], count=len(matches), codes=names))
    if note:
        raise CodeNotFound(_("{text!r} is not in this ledger ({why})").format(text=t[:80], why=note))
    if p.form is Form.RAW:
        raise CodeNotFound(_("{text!r} is not in this ledger").format(text=t[:80]))
    raise CodeNotFound(_("{text!r} is not in this ledger (read as {what})").format(
        text=t[:80], what=p.describe()))
