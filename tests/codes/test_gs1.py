"""GS1 check digits, SSCC, EPC URIs and code rendering against GS1's published examples."""

from __future__ import annotations

from datetime import date

import pytest

from agent.codes import gs1
from agent.codes.templates import render
from agent.config.model import TemplateConfig, TemplateKind


@pytest.mark.parametrize(
    ("body", "digit"),
    [
        ("8061414112345", 8),  # GTIN 80614141123458, the EPC Tag Data Standard's SGTIN example
        ("10614141234567890", 8),  # SSCC 106141412345678908, the TDS SSCC example
        ("0950600013435", 2),  # GTIN 09506000134352, GS1 Digital Link's example GTIN
        ("400638133393", 1),  # EAN-13 4006381333931
        ("03600029145", 2),  # UPC-A 036000291452
    ],
)
def test_check_digit(body: str, digit: int) -> None:
    assert gs1.check_digit(body) == digit


@pytest.mark.parametrize("gtin", ["09506000134353", "4006381333932", "1234567", "95060001343A2"])
def test_bad_gtin_is_refused_with_the_reason(gtin: str) -> None:
    with pytest.raises(gs1.GS1Error, match="GTIN"):
        gs1.normalise_gtin(gtin)


def test_gtin_normalises_to_14_digits() -> None:
    assert gs1.normalise_gtin("4006381333931") == "04006381333931"


def test_sscc_mint_and_validate() -> None:
    assert gs1.make_sscc(1, "0614141", 234567890) == "106141412345678908"
    assert gs1.validate_sscc("106141412345678908") == "106141412345678908"
    with pytest.raises(gs1.GS1Error, match="check digit 9, expected 8"):
        gs1.validate_sscc("106141412345678909")
    with pytest.raises(gs1.GS1Error, match="does not fit"):
        gs1.make_sscc(0, "0614141", 10**9)


def test_epc_uris_match_the_tag_data_standard() -> None:
    assert gs1.sgtin_uri("80614141123458", "6789", 7) == "urn:epc:id:sgtin:0614141.812345.6789"
    assert gs1.sscc_uri("106141412345678908", 7) == "urn:epc:id:sscc:0614141.1234567890"


def test_digital_link() -> None:
    uri = gs1.digital_link("id.example.com", "9506000134352", "12345", lot="ABC1", expiry=date(2018, 4, 26))
    assert uri == "https://id.example.com/01/09506000134352/10/ABC1/21/12345?17=180426"
    assert gs1.digital_link("d.cn", "09506000134352", "A/B") == "https://d.cn/01/09506000134352/21/A%2FB"


def test_element_string_puts_gs_only_after_variable_length_fields() -> None:
    s = gs1.element_string("09506000134352", "12345", lot="ABC1", expiry=date(2018, 4, 26))
    assert s == "0109506000134352" + "17180426" + "10ABC1" + "\x1d" + "2112345"
    assert gs1.element_string("09506000134352", "12345") == "010950600013435221" + "12345"
    human = gs1.element_string("09506000134352", "12345", lot="ABC1", expiry=date(2018, 4, 26), human=True)
    assert human == "(01)09506000134352(17)180426(10)ABC1(21)12345"


def test_serial_outside_the_gs1_character_set_is_refused() -> None:
    with pytest.raises(gs1.GS1Error, match="serial"):
        gs1.element_string("09506000134352", "has space")
    with pytest.raises(gs1.GS1Error, match="serial"):
        gs1.element_string("09506000134352", "X" * 21)


def test_render_every_template_kind() -> None:
    kw = {"gtin": "09506000134352", "lot": "L1", "expiry": date(2027, 1, 31)}
    assert render(TemplateConfig(kind=TemplateKind.RAW), "SN1", **kw) == "SN1"
    assert render(TemplateConfig(kind=TemplateKind.URL, url_prefix="https://q.cn/c/"), "SN1", **kw) == "https://q.cn/c/SN1"
    assert render(TemplateConfig(kind=TemplateKind.DIGITAL_LINK, domain="id.example.com"), "SN1", **kw) == (
        "https://id.example.com/01/09506000134352/10/L1/21/SN1?17=270131"
    )
    assert render(TemplateConfig(kind=TemplateKind.ELEMENT_STRING), "SN1", **kw) == (
        "010950600013435217270131" + "10L1\x1d21SN1"
    )


# EPC Tag Data Standard 2.x, Table A-1: of the 82 characters of the GS1 AI encodable character set,
# exactly " % & / < > ? are written percent-escaped in an EPC URI; written out here by hand.
TDS_ESCAPED = {'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E", "?": "%3F"}
TDS_AS_IS = "!'()*+,-.:;=_" + "0123456789" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"


def test_sgtin_uri_escapes_exactly_what_the_tag_data_standard_lists() -> None:
    assert len(TDS_ESCAPED) + len(TDS_AS_IS) == 82  # the whole character set, nothing else
    for ch, escaped in TDS_ESCAPED.items():
        assert gs1.sgtin_uri("80614141123458", f"A{ch}B") == f"urn:epc:id:sgtin:0614141.812345.A{escaped}B"
    for i in range(0, len(TDS_AS_IS), 20):
        serial = TDS_AS_IS[i:i + 20]
        assert gs1.sgtin_uri("80614141123458", serial) == f"urn:epc:id:sgtin:0614141.812345.{serial}"


def test_canonical_digital_links_of_sgtin_and_sscc() -> None:
    # GS1 Digital Link URI Syntax: id.gs1.org, GTIN-14, serial with every non-unreserved character encoded
    assert gs1.sgtin_dl("9506000134352", "A/B!") == "https://id.gs1.org/01/09506000134352/21/A%2FB%21"
    assert gs1.sscc_dl("106141412345678908") == "https://id.gs1.org/00/106141412345678908"
