"""Every printed form of a code read back to what it names, against the standards' own examples.

The expected values are written out by hand from the published examples: GTIN 09506000134352 (GS1
Digital Link standard), GTIN 80614141123458 / serial 6789 and SSCC 106141412345678908 with their EPC
URIs (EPC Tag Data Standard), and the element strings of the GS1 General Specifications' examples.
"""

from __future__ import annotations

import pytest

from agent.codes.forms import Form, FormError, read

GS = "\x1d"
G = "09506000134352"
SSCC = "106141412345678908"

# text -> (form, gtin, serial, lot, sscc)
READS: list[tuple[str, tuple[Form, str | None, str | None, str | None, str | None]]] = [
    # GS1 Digital Link: any domain, a path stem of its own, query and fragment ignored, percent-decoded
    (f"https://id.gs1.org/01/{G}/10/ABC1/21/12345?17=180426", (Form.DIGITAL_LINK, G, "12345", "ABC1", None)),
    ("https://example.com/01/9506000134352/21/12345", (Form.DIGITAL_LINK, G, "12345", None, None)),
    (f"https://brand.example.com/some/path/01/{G}/21/12345", (Form.DIGITAL_LINK, G, "12345", None, None)),
    (f"https://id.gs1.org/01/{G}/21/A%2FB%25C", (Form.DIGITAL_LINK, G, "A/B%C", None, None)),
    (f"HTTPS://ID.GS1.ORG/01/{G}/21/ABC/#top", (Form.DIGITAL_LINK, G, "ABC", None, None)),
    (f"https://id.gs1.org/gtin/{G}/lot/L1/ser/12345", (Form.DIGITAL_LINK, G, "12345", "L1", None)),
    (f"https://id.gs1.org/00/{SSCC}", (Form.DIGITAL_LINK, None, None, None, SSCC)),
    (f"]Q1https://id.gs1.org/01/{G}/21/X", (Form.DIGITAL_LINK, G, "X", None, None)),
    # element strings: FNC1 as GS only after a variable-length field that is not last
    (f"01{G}21ABC", (Form.ELEMENT_STRING, G, "ABC", None, None)),
    (f"01{G}17180426" + "10ABC1" + GS + "2112345", (Form.ELEMENT_STRING, G, "12345", "ABC1", None)),
    (f"01{G}" + GS + "21ABC", (Form.ELEMENT_STRING, G, "ABC", None, None)),
    (f"(01){G}(17)180426(10)ABC1(21)12345", (Form.ELEMENT_STRING, G, "12345", "ABC1", None)),
    (f"]d201{G}10ABC1" + GS + "2112345", (Form.ELEMENT_STRING, G, "12345", "ABC1", None)),
    (f"]Q301{G}10ABC1<GS>2112345", (Form.ELEMENT_STRING, G, "12345", "ABC1", None)),
    (f"]C100{SSCC}", (Form.ELEMENT_STRING, None, None, None, SSCC)),
    (f"00{SSCC}", (Form.ELEMENT_STRING, None, None, None, SSCC)),
    (f"(00){SSCC}", (Form.ELEMENT_STRING, None, None, None, SSCC)),
    (f"(00){SSCC}(02){G}(37)24", (Form.ELEMENT_STRING, None, None, None, SSCC)),
    (SSCC, (Form.SSCC, None, None, None, SSCC)),
    # EPC URIs (Tag Data Standard examples); the company prefix length is the URI's own
    ("urn:epc:id:sgtin:0614141.812345.6789", (Form.EPC_URN, "80614141123458", "6789", None, None)),
    ("urn:epc:tag:sgtin-96:3.0614141.812345.6789", (Form.EPC_URN, "80614141123458", "6789", None, None)),
    ("urn:epc:id:sscc:0614141.1234567890", (Form.EPC_URN, None, None, None, SSCC)),
    ("urn:epc:id:sgtin:9506000.013435.A%2FB", (Form.EPC_URN, G, "A/B", None, None)),
    ("urn:epc:id:sgtin:95060001.03435.X", (Form.EPC_URN, G, "X", None, None)),
    # plain codes
    ("DWY4V3ADTWSWHS", (Form.RAW, None, None, None, None)),
    ("  I00001\r\n", (Form.RAW, None, None, None, None)),
    ("86912345678901234567", (Form.RAW, None, None, None, None)),  # a 20-digit drug traceability code
    ("https://t.example.cn/c/ABC", (Form.URL, None, None, None, None)),
]


@pytest.mark.parametrize(("text", "want"), READS)
def test_every_printed_form_reads_as_what_it_names(
    text: str, want: tuple[Form, str | None, str | None, str | None, str | None]
) -> None:
    p = read(text)
    assert (p.form, p.gtin, p.serial, p.lot, p.sscc) == want


def test_private_urn_and_plain_symbology_give_the_code_inside() -> None:
    assert read("urn:lineagent:code:ABC%2F1").text == "ABC/1"
    assert read("]d1ABC").text == "ABC"
    assert read("  I00001\r\n").text == "I00001"


# text -> words the refusal must contain (what is wrong, and the value or AI concerned)
REFUSALS = [
    ("https://id.gs1.org/01/09506000134353/21/X", ["09506000134353", "check digit 3", "give 2"]),
    ("(00)106141412345678909", ["106141412345678909", "check digit 9", "give 8"]),
    ("https://id.gs1.org/00/106141412345678900", ["check digit 0", "give 8"]),
    ("urn:epc:id:sgtin:0614141.81234.6789", ["13 digits together"]),
    (f"]d201{G}" + GS + "2321X", ["unknown GS1 application identifier", "'2321'"]),
    (f"(01){G}(23)X", ["unknown GS1 application identifier", "(23)"]),
    (f"https://id.gs1.org/01/{G}", [G, "without a serial (21)"]),
    (f"(01){G}(10)LOT", [G, "without a serial (21)"]),
    (f"https://id.gs1.org/01/{G}/17/180426", ["/17/", "not a qualifier", "query string"]),
    (f"https://id.gs1.org/01/{G}/21/A%FF", ["not valid UTF-8"]),
    (f"https://id.gs1.org/01/{G}/21/" + "X" * 21, ["(21)", "1-20 characters"]),
    (f"(01){G}(21)AB CD", ["(21)", "character set"]),
    ("(01)0950600013435(21)X", ["(01)", "14 characters"]),
    ("urn:epc:id:sgln:0614141.12345.0", ["'sgln'"]),
    ("(10)ABC", ["no SSCC (00) and no GTIN (01)"]),
    ("]d2", ["no application identifier"]),
    ("   ", ["empty"]),
]


@pytest.mark.parametrize(("text", "words"), REFUSALS)
def test_invalid_gs1_data_is_refused_naming_what_is_wrong(text: str, words: list[str]) -> None:
    with pytest.raises(FormError) as e:
        read(text)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_digits_that_only_look_like_gs1_stay_a_plain_code_with_the_reason() -> None:
    """A bare 18-digit number with a wrong SSCC check digit may be a plain code; the ledger decides."""
    p = read("106141412345678909")
    assert p.form is Form.RAW and p.note is not None and "check digit 9" in p.note
    p = read("0109506000134353" + "21X")
    assert p.form is Form.RAW and p.note is not None and "check digit 3" in p.note


# Links whose path is easy to cut wrong: no path, a query or fragment right after the host, "?" and "#"
# in either order, a port, user info, an empty or doubled segment, tab/CR/LF inside (urlsplit drops
# them), an IPv6 host, non-ASCII. urlsplit is the reference: the DL reader cuts the path as it does.
PATHS = [
    "https://id.gs1.org", "http://h/", "https://h?x=/01/1", "https://h#/01/1", "https://h/a?b#c/d",
    "https://h/a#b?c/d", "https://h:8443/01/9506000134352/21/1", "https://u:p@h/a//b/", "HTTPS://H/A/B",
    "https://h/01/9506\t000134352/21/1", "https://h/a\r\nb", "https://[::1]/01/x", "https://h/01/\u00e9",
    "http://h/?", "http://h/#", "https://h/a/b/?", "https://h///", "http://h:/p",
]


@pytest.mark.parametrize("url", PATHS)
def test_a_links_path_is_cut_as_urlsplit_cuts_it(url: str) -> None:
    from urllib.parse import urlsplit

    from agent.codes.forms import _url_path

    assert _url_path(url) == urlsplit(url).path
