"""GS1 Application Identifiers: the table, check digits, and element strings read back into fields.

Why a table of our own (and not agent.codes.gs1): reading what an operator types or a handheld
scanner sends must know every AI a GS1 label may carry, only to step over the ones we do not use,
and must refuse an AI that does not exist rather than guess where it ends. The lengths are those of
the GS1 General Specifications (release 24.0, §3.2 "GS1 Application Identifiers in numerical order";
the AIs whose length is predefined, so that no FNC1 follows them, are those of §7.8.5 Figure 7.8.5-2).
Check digits: §7.9.1 (mod 10, weights 3 and 1 from the right). Character set 82: §7.11 Figure 7.11-1.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from agent.i18n import _

GS = "\x1d"  # FNC1 as a separator inside an element string, as a scanner transmits it (ASCII 29)


class FormError(ValueError):
    """Text that cannot be read as the code it looks like; the message names what and where."""


@dataclass(frozen=True, slots=True)
class Ai:
    ai: str
    min: int
    max: int
    predefined: bool  # length fixed by the AI's first two digits: no FNC1 follows it (§7.8.5)
    charset: str  # N digits, X character set 82, Y set 39, Z set 64 (§7.11)
    csum: tuple[int, int] | None = None  # (start, length) of the digits a check digit closes


# AI or first-last of a range, min and max data length, flags: * predefined length, N/X/Y/Z charset,
# C check digit over the whole data (a number after C: over that many leading digits; 8003 skips one).
_ROWS = """
00 18 18 *NC
01 14 14 *NC
02 14 14 *NC
10 1 20 X
11-13 6 6 *N
15-17 6 6 *N
20 2 2 *N
21 1 20 X
22 1 20 X
235 1 28 X
240-241 1 30 X
242 1 6 N
243 1 20 X
250-251 1 30 X
253 13 30 XC13
254 1 20 X
255 13 25 NC13
30 1 8 N
37 1 8 N
3900-3909 1 15 N
3910-3919 4 18 N
3920-3929 1 15 N
3930-3939 4 18 N
3940-3943 4 4 N
3950-3955 6 6 N
400-401 1 30 X
402 17 17 NC
403 1 30 X
410-417 13 13 *NC
420 1 20 X
421 4 12 X
422 3 3 N
423 3 15 N
424 3 3 N
425 3 15 N
426 3 3 N
427 1 3 X
4300-4301 1 35 X
4302-4306 1 70 X
4307 2 2 X
4308 1 30 X
4309 20 20 N
4310-4311 1 35 X
4312-4316 1 70 X
4317 2 2 X
4318 1 20 X
4319 1 30 X
4320 1 35 X
4321-4323 1 1 N
4324-4325 10 10 N
4326 6 6 N
4330-4333 6 7 X
7001 13 13 N
7002 1 30 X
7003 10 10 N
7004 1 4 N
7005 1 12 X
7006 6 6 N
7007 6 12 N
7008 1 3 X
7009 1 10 X
7010 1 2 X
7011 6 10 N
7020-7022 1 20 X
7023 1 30 X
7030-7039 4 30 X
7040 4 4 X
710-715 1 20 X
7230-7239 3 30 X
7240 1 20 X
7241 2 2 N
7242 1 25 X
8001 14 14 N
8002 1 20 X
8003 14 30 XC13@1
8004 1 30 X
8005 6 6 N
8006 18 18 NC14
8007 1 34 X
8008 8 12 N
8009 1 50 X
8010 1 30 Y
8011 1 12 N
8012 1 20 X
8013 1 25 X
8017-8018 18 18 NC
8019 1 10 N
8020 1 25 X
8026 18 18 NC14
8030 1 90 Z
8110 1 70 X
8111 4 4 N
8112 1 70 X
8200 1 70 X
90 1 30 X
91-99 1 90 X
"""
# Trade measures (§3.6): AI 3abn, n = decimal places 0-5, for these abc; all six digits, predefined.
_MEASURES = ("310", "311", "312", "313", "314", "315", "316", "320", "321", "322", "323", "324", "325",
             "326", "327", "328", "329", "330", "331", "332", "333", "334", "335", "336", "337", "340",
             "341", "342", "343", "344", "345", "346", "347", "348", "349", "350", "351", "352", "353",
             "354", "355", "356", "357", "360", "361", "362", "363", "364", "365", "366", "367", "368", "369")


def _table() -> dict[str, Ai]:
    table: dict[str, Ai] = {}
    for row in _ROWS.split("\n"):
        if not row:
            continue
        ais, low, high, flags = row.split()
        first, _sep, last = ais.partition("-")
        width = len(first)
        m = re.fullmatch(r"(\*?)([NXYZ])(?:C(\d*)(?:@(\d))?)?", flags)
        assert m, row
        csum: tuple[int, int] | None = None
        if "C" in flags:
            csum = (int(m.group(4) or 0), int(m.group(3) or high))
        for n in range(int(first), int(last or first) + 1):
            code = f"{n:0{width}d}"
            table[code] = Ai(code, int(low), int(high), bool(m.group(1)), m.group(2), csum)
    for abc in _MEASURES:
        for n in range(6):
            table[f"{abc}{n}"] = Ai(f"{abc}{n}", 6, 6, True, "N")
    return table


AIS: dict[str, Ai] = _table()
_CHARSETS = {
    "N": re.compile(r"[0-9]+"),
    "X": re.compile(r"[!\"%-/0-9:-?A-Z_a-z]+"),  # set 82
    "Y": re.compile(r"[#\-/0-9A-Z]+"),  # set 39
    "Z": re.compile(r"[\-0-9A-Z_a-z]+={0,2}"),  # set 64 (file-safe base64), with padding
}


def check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of `body`: weights 3, 1, 3, ... from the right (§7.9.1)."""
    total = 3 * sum(map(int, body[-1::-2])) + sum(map(int, body[-2::-2]))  # no per-digit generator
    return (10 - total % 10) % 10


@functools.lru_cache(maxsize=1024)
def _holds(digits: str) -> bool:
    """Digits whose last one is their check digit. Cached: every item of a job carries its GTIN, so a
    line reads the same few keys over and over; the message of a failing key is built uncached."""
    return digits.isdigit() and int(digits[-1]) == check_digit(digits[:-1])


def key_problem(name: str, digits: str, length: int) -> str | None:
    """Why `digits` is not a valid GS1 key of `length` digits (None when it is): shape, then check digit."""
    if len(digits) == length and _holds(digits):
        return None
    if len(digits) != length or not digits.isdigit():
        return _("{name} {value!r} must be {length} digits").format(name=name, value=digits, length=length)
    want = check_digit(digits[:-1])
    if int(digits[-1]) != want:
        return _("{name} {value} has check digit {got}, the digits before it give {want}").format(
            name=name, value=digits, got=digits[-1], want=want)
    return None


def find_ai(text: str, pos: int) -> Ai:
    """The AI at text[pos:]; AIs are prefix-free, so the first 2, 3 or 4 digits that name one decide."""
    for width in (2, 3, 4):
        head = text[pos:pos + width]
        if len(head) == width and head in AIS:
            return AIS[head]
    head = text[pos:pos + 4]
    raise FormError(_("unknown GS1 application identifier at {where}: {head!r} starts no AI of the GS1 "
                      "General Specifications").format(where=_where(pos), head=head))


def _where(pos: int) -> str:
    return _("character {n}").format(n=pos + 1)


def check_value(ai: Ai, value: str) -> None:
    """Length, character set and check digit of one AI's data, refused with the AI named."""
    if not ai.min <= len(value) <= ai.max:
        size = str(ai.max) if ai.min == ai.max else f"{ai.min}-{ai.max}"
        raise FormError(_("AI ({ai}) takes {size} characters, {value!r} has {n}").format(
            ai=ai.ai, size=size, value=value, n=len(value)))
    if not _CHARSETS[ai.charset].fullmatch(value):
        what = _("digits only") if ai.charset == "N" else _("characters of the GS1 character set")
        raise FormError(_("AI ({ai}) takes {what}; {value!r} has others").format(ai=ai.ai, what=what, value=value))
    if ai.csum is not None:
        start, length = ai.csum
        problem = key_problem(f"({ai.ai})", value[start:start + length], length)
        if problem:
            raise FormError(problem)


def parse_element_string(text: str) -> dict[str, str]:
    """AI -> value for an element string as a scanner sends it: FNC1 as GS after each variable-length
    field that is not last (§7.8.5); a GS after a predefined-length field is tolerated."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        if text[pos] == GS:
            pos += 1
            continue
        ai = find_ai(text, pos)
        start = pos + len(ai.ai)
        if ai.predefined:
            end = start + ai.max
        else:
            sep = text.find(GS, start)
            end = len(text) if sep < 0 else sep
        _put(fields, ai, text[start:end])
        pos = end
    if not fields:
        raise FormError(_("the element string holds no application identifier"))
    return fields


_BRACKETED = re.compile(r"\((\d{2,4})\)")


def parse_bracketed(text: str) -> dict[str, str]:
    """AI -> value for the human-readable form `(01)09506000134352(21)ABC` (§4.15: the AIs in brackets)."""
    marks = list(_BRACKETED.finditer(text))
    unknown = next((m for m in marks if m.group(1) not in AIS), None)
    if unknown is not None:  # data holding "(12)" would be read as an AI too: GS1 HRI has no brackets in data
        raise FormError(_("unknown GS1 application identifier at {where}: ({ai}) is no AI of the GS1 "
                          "General Specifications").format(where=_where(unknown.start()), ai=unknown.group(1)))
    if not marks or marks[0].start() != 0:
        raise FormError(_("{text!r} does not start with an application identifier in brackets such as (01)").format(
            text=text[:40]))
    fields: dict[str, str] = {}
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        value = text[m.end(): nxt.start() if nxt else len(text)]
        _put(fields, AIS[m.group(1)], value)
    return fields


def _put(fields: dict[str, str], ai: Ai, value: str) -> None:
    check_value(ai, value)
    if fields.get(ai.ai, value) != value:
        raise FormError(_("AI ({ai}) appears twice with different values: {a!r} and {b!r}").format(
            ai=ai.ai, a=fields[ai.ai], b=value))
    fields[ai.ai] = value
