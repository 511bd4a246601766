"""Is a read GS1 as printed: the symbol GS1-flagged, its element string valid by the GS1 rules.

Why beyond agent.codes.ai: reading an operator's typed code only needs to find the identity in it; a
camera judging a print must also refuse what a GS1 scanner downstream would refuse or misread:
- A DataMatrix or QR Code carrying GS1 data without FNC1 in its first position is not a GS1 symbol:
  a scanner reports it as ]d1 / ]Q1 and a GS1 application drops it (GS1 General Specifications,
  release 24.0, §5.1.2: GS1 data is carried as ]C1, ]e0, ]d2, ]Q3, ]J1; ISO/IEC 16022 and ISO/IEC 18004
  for FNC1 in first position). The coder then sent the right characters in the wrong mode; the data
  alone cannot show it.
- The element string must hold known AIs of the right length, character set and check digit
  (agent.codes.ai: §3.2, §7.8.5, §7.9.1, §7.11), dates that exist (§7.12: YYMMDD, DD 00 = the month's
  end for 11-17), the AIs' mandatory associations and no invalid pair (§4.13, Figure 4.13.1-1 for
  the invalid pairs), and a key naming one item: an SSCC (00), or a GTIN (01) with its serial (21).

The association table covers the AIs a line prints (00, 01, 02, 10, 11, 13, 15, 16, 17, 21, 240, 241,
37, 91-99) as §4.13 and the GS1 Barcode Syntax Dictionary (gs1/gs1-syntax-dictionary, `req=`/`ex=`)
state them; other AIs are checked by agent.codes.ai alone.
"""

from __future__ import annotations

from agent.codes.ai import FormError, parse_bracketed, parse_element_string
from agent.codes.forms import GS1_SYMBOLOGIES

# ISO/IEC 15424 identifiers of the same symbologies that are not GS1 symbols (the modifiers of
# ISO/IEC 16022, ISO/IEC 18004:2015 and ISO/IEC 15417): what a coder not set to GS1 mode prints. An
# ECI with FNC1 first (]d5, ]Q4) is not a GS1 symbol either: GS1 data carries no ECI.
PLAIN_SYMBOLOGIES = {"]d1": "DataMatrix", "]d3": "DataMatrix (FNC1 in second position)",
                     "]d4": "DataMatrix with ECI", "]d5": "DataMatrix with ECI",
                     "]d6": "DataMatrix with ECI", "]Q0": "QR Code model 1", "]Q1": "QR Code",
                     "]Q2": "QR Code with ECI", "]Q4": "QR Code with ECI",
                     "]Q5": "QR Code (FNC1 in second position)", "]Q6": "QR Code with ECI",
                     "]C0": "Code 128", "]C2": "Code 128 (FNC1 in second position)"}

# AI -> groups of AIs; one of each group must be in the same element string (§4.13 mandatory
# associations; Syntax Dictionary `req=`). 8006/8026 (ITIP) and 255 stand in for the GTIN where allowed.
_REQUIRES: dict[str, tuple[tuple[str, ...], ...]] = {
    "02": (("37",),),
    "10": (("01", "02", "8006", "8026"),),
    "11": (("01", "02", "8006", "8026"),),
    "13": (("01", "02", "8006", "8026"),),
    "15": (("01", "02", "8006", "8026"),),
    "16": (("01", "02", "8006", "8026"),),
    "17": (("01", "02", "255", "8006", "8026"),),
    "21": (("01", "8006"),),
    "240": (("01", "02", "8006", "8026"),),
    "241": (("01", "02", "8006", "8026"),),
    "37": (("00",), ("02", "8026")),
}
# Pairs that must not appear together (§4.13, Figure 4.13.1-1; Syntax Dictionary `ex=`).
_EXCLUDES: dict[str, tuple[str, ...]] = {"01": ("02", "255", "37"), "21": ("235",)}
_DATES = ("11", "12", "13", "15", "16", "17")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def symbol_problem(symbology_id: str | None) -> str | None:
    """Why a symbol read with this AIM identifier is not a GS1 symbol (None: it is, or the source did
    not say: a fixed reader's string carries no identifier unless the reader is set to send one)."""
    if symbology_id is None or symbology_id in GS1_SYMBOLOGIES:
        return None
    name = PLAIN_SYMBOLOGIES.get(symbology_id, "a symbol")
    return (f"printed as {name} ({symbology_id}), not as a GS1 symbol (GS1 DataMatrix ]d2, GS1 QR Code ]Q3, "
            "GS1-128 ]C1): FNC1 is missing in first position; set the coder's barcode to GS1 mode or its "
            "gs1_fnc1_first setting")


def element_string_problem(text: str) -> str | None:
    """Why `text`, as a GS1 scanner transmits it (FNC1 separators as GS) or in brackets, is not a valid
    GS1 element string naming one item (None: it is)."""
    try:
        fields = parse_bracketed(text) if text.startswith("(") else parse_element_string(text)
    except FormError as exc:
        return str(exc)
    for ai in _DATES:
        if ai in fields and (why := _date_problem(fields[ai])):
            return f"AI ({ai}) {fields[ai]!r}: {why}"
    for ai, groups in _REQUIRES.items():
        for group in groups if ai in fields else ():
            if not any(g in fields for g in group):
                need = ", ".join(f"({g})" for g in group)
                return f"AI ({ai}) needs one of {need} with it (GS1 General Specifications §4.13)"
    for ai, others in _EXCLUDES.items():
        clash = next((o for o in others if ai in fields and o in fields), None)
        if clash is not None:
            return f"AI ({ai}) and AI ({clash}) must not appear together (GS1 General Specifications §4.13)"
    if "00" not in fields and not ("01" in fields and "21" in fields):
        named = ", ".join(f"({ai})" for ai in fields)
        return f"names no single item: no SSCC (00) and no GTIN (01) with serial (21), only {named}"
    return None


def _date_problem(value: str) -> str | None:
    """YYMMDD (§7.12); DD 00 means the last day of the month. 29 February in a year whose two digits
    divide by 4 (exact for 2000-2099, which §7.12's window gives until 2050)."""
    month, day = int(value[2:4]), int(value[4:6])
    if not 1 <= month <= 12:
        return f"month {value[2:4]} does not exist"
    last = 28 if month == 2 and int(value[:2]) % 4 else _MONTH_DAYS[month - 1]
    if day > last:
        return f"day {value[4:6]} does not exist in month {value[2:4]}"
    return None
