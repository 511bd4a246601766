"""The GS1 checks a camera read must pass, against cases written out by hand from the GS1 General
Specifications (release 24.0) and the GS1 Barcode Syntax Dictionary, never from the module's tables.

Keys used: GTIN 09506000134352 is the General Specifications' own example (check digit 2); the SSCC
106141411234567897 has its check digit worked by hand: the 17 digits weighted 3,1,3,... from the right
sum to 143, and 10 - 3 = 7; the GCN 0614141000012 likewise (12 digits sum to 48, 10 - 8 = 2).
"""

from __future__ import annotations

import pytest

from agent.codes.gs1_rules import element_string_problem, symbol_problem

GS = "\x1d"
GTIN = "0109506000134352"

VALID = [
    GTIN + "17261231" + "10LOT42" + GS + "21ABC",  # the template's order: fixed-length AIs need no GS
    GTIN + "21ABC",  # (21) right after the fixed-length (01): no separator
    GTIN + "11260101" + "17261200" + "10L" + GS + "21S" + GS + "240ADD",  # DD 00: end of month (§7.12)
    GTIN + "17240229" + "21A",  # 29 February 2024 exists
    GTIN + "21A" + GS + "91INTERNAL" + GS + "99X",  # company-internal AIs 91-99 go with anything
    "00106141411234567897",
    "(01)09506000134352(17)261231(10)LOT42(21)ABC",  # the bracketed form reads the same
    GS + GTIN + "21ABC",  # a reader that sends the leading FNC1 as GS
]

# text -> a phrase the refusal must contain (what and where, as an operator reads it)
INVALID = {
    "0109506000134353" + "21ABC": "check digit 3",  # GTIN check digit: 2, not 3
    "00106141411234567898": "check digit 8",  # SSCC check digit: 7, not 8
    GTIN + "10LOT42" + "21ABC": "no GTIN (01) with serial (21)",  # no GS: the lot ran into the serial
    GTIN + "10LOT~121ABC": "GS1 character set",  # a coder that printed its FNC1 spelling "~1" as text
    GTIN + "10LOT{FNC1}21ABC": "GS1 character set",
    GTIN + "89X": "unknown GS1 application identifier",  # (89) is no AI
    "01095060001343" + GS + "21A": "AI (01) takes digits only",  # GTIN cut short: 14 characters read
    GTIN + "17261331" + "21A": "month 13",
    GTIN + "17250229" + "21A": "day 29",  # 2025 is no leap year
    GTIN + "17260431" + "21A": "day 31",  # April has 30 days
    "21ABC": "AI (21) needs one of (01), (8006)",  # a serial alone names nothing
    GTIN + "21A" + GS + "235X": "AI (21) and AI (235)",  # invalid pair (Figure 4.13.1-1)
    GTIN + "21A" + GS + "2550614141000012": "AI (01) and AI (255)",  # GCN 0614141000012: check digit 2
    "0209506000134352" + "3712": "AI (37) needs one of (00)",  # a count of contents goes on a logistic unit
    GTIN + "10LOT": "no GTIN (01) with serial (21)",  # a product, not one item
    GTIN + "21A B": "GS1 character set",  # space is not in character set 82
    GTIN + "21" + "X" * 21: "AI (21) takes 1-20",
}


@pytest.mark.parametrize("text", VALID)
def test_valid_element_strings_pass(text: str) -> None:
    assert element_string_problem(text) is None


@pytest.mark.parametrize(("text", "phrase"), INVALID.items())
def test_invalid_element_strings_are_refused_with_the_reason(text: str, phrase: str) -> None:
    problem = element_string_problem(text)
    assert problem is not None and phrase in problem, problem


# ISO/IEC 15424 identifiers: the GS1 ones of General Specifications §5.1.2 pass, the plain ones do not.
@pytest.mark.parametrize(("sym", "gs1"), [
    ("]d2", True), ("]Q3", True), ("]C1", True), ("]e0", True), ("]J1", True),
    ("]d1", False), ("]Q1", False), ("]C0", False), ("]d5", False), ("]Q4", False),
])
def test_only_gs1_symbology_identifiers_pass(sym: str, gs1: bool) -> None:
    problem = symbol_problem(sym)
    assert (problem is None) is gs1
    if not gs1:
        assert sym in problem and "FNC1" in problem  # type: ignore[operator]


def test_a_source_that_gives_no_identifier_is_judged_on_its_data_alone() -> None:
    assert symbol_problem(None) is None
