"""Printed forms resolved to the ledger's code on a real ledger file: serials, SSCCs, whole forms held as
codes, a URL template's prefix, and the refusals (another GTIN, another lot, one serial under two GTINs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.codes.lookup import CodeNotFound, LookupRefused, resolve
from agent.jobs import JobSpec, create_job
from agent.ledger import Ledger
from tests.helpers import seed_codes

G = "09506000134352"  # the job's GTIN (GS1 Digital Link's example)
OTHER = "04006381333931"  # EAN-13 4006381333931 as GTIN-14, valid check digit
BOX_GTIN = "19506000134359"  # indicator 1 + 950600013435, check digit 9 worked out by hand
SSCC = "106141412345678908"
PREFIX = "https://t.example.cn/c/"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db") as led:
        job = create_job(led, JobSpec("J1", G, "Water", "LOT1", 100))
        seed_codes(led, ["I00001", "I00002", "I00003"], level="item", package_id="pi")
        led.allocate(job, "item", 3)
        seed_codes(led, ["BOX1"], level="box", package_id="pb")
        led.allocate(job, "box", 1)
        seed_codes(led, [SSCC], level="pallet", package_id="pp")
        # whole printed forms held as codes (a raw template prints the code as the package gives it)
        seed_codes(led, [f"01{G}21DUP", f"01{OTHER}21DUP", f"https://id.example.com/01/{G}/21/WHOLE?17=271231"],
                   level="item", package_id="pw")
        yield led


def key(ledger: Ledger, text: str, **kw: list[str]) -> str:
    return resolve(ledger.conn, text, **kw).key


@pytest.mark.parametrize("text", [
    "I00001",
    f"https://id.example.com/01/{G}/10/LOT1/21/I00001?17=271231",
    f"https://elsewhere.example.org/x/01/{G}/21/I00001",
    f"01{G}10LOT1\x1d21I00001",
    f"(01){G}(10)LOT1(21)I00001",
    f"]d201{G}21I00001",
    "urn:epc:id:sgtin:9506000.013435.I00001",
    "urn:lineagent:code:I00001",
])
def test_item_forms_resolve_to_the_serial(ledger: Ledger, text: str) -> None:
    assert key(ledger, text) == "I00001"


@pytest.mark.parametrize("text", [SSCC, f"00{SSCC}", f"(00){SSCC}", f"]C100{SSCC}", f"https://id.gs1.org/00/{SSCC}",
                                  "urn:epc:id:sscc:0614141.1234567890"])
def test_sscc_forms_resolve_to_the_sscc(ledger: Ledger, text: str) -> None:
    assert key(ledger, text) == SSCC


def test_whole_forms_held_as_codes_are_found_from_any_form(ledger: Ledger) -> None:
    whole = f"https://id.example.com/01/{G}/21/WHOLE?17=271231"
    assert key(ledger, "WHOLE") == whole
    assert key(ledger, f"(01){G}(21)WHOLE") == whole
    assert key(ledger, f"(01){OTHER}(21)DUP") == f"01{OTHER}21DUP"
    assert key(ledger, f"https://id.example.com/01/{G}/21/DUP") == f"01{G}21DUP"


def test_one_serial_under_two_gtins_is_refused_with_both(ledger: Ledger) -> None:
    with pytest.raises(LookupRefused) as e:
        key(ledger, "DUP")
    text = str(e.value)
    assert "matches 2 codes" in text and f"01{G}21DUP" in text and f"01{OTHER}21DUP" in text


def test_another_products_label_with_the_same_serial_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LookupRefused) as e:
        key(ledger, f"https://id.example.com/01/{OTHER}/21/I00001")
    assert f"GTIN {OTHER}" in str(e.value) and f"is GTIN {G} (job J1)" in str(e.value)
    with pytest.raises(LookupRefused) as e:
        key(ledger, f"(01){G}(10)LOT9(21)I00001")
    assert "lot LOT9" in str(e.value) and "of lot LOT1 (job J1)" in str(e.value)


def test_a_job_holding_a_gtin_13_matches_its_14_digit_reading(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l13.db") as led:
        job = create_job(led, JobSpec("J13", "4006381333931", "Soap", "L", 10))
        seed_codes(led, ["S1"], level="item")
        led.allocate(job, "item", 1)
        assert key(led, "https://id.example.com/01/4006381333931/21/S1") == "S1"
        with pytest.raises(LookupRefused, match="is GTIN 4006381333931"):
            key(led, f"(01){G}(21)S1")


def test_a_box_code_may_carry_a_gtin_of_its_own(ledger: Ledger) -> None:
    assert key(ledger, f"(01){BOX_GTIN}(21)BOX1") == "BOX1"


def test_url_template_prefix_needs_the_config(ledger: Ledger) -> None:
    assert key(ledger, PREFIX + "I00002", url_prefixes=[PREFIX]) == "I00002"
    with pytest.raises(CodeNotFound, match="--config"):
        key(ledger, PREFIX + "I00002")
    with pytest.raises(CodeNotFound, match="url_prefix"):
        key(ledger, PREFIX + "NOPE", url_prefixes=[PREFIX])


def test_not_found_says_what_the_text_was_read_as(ledger: Ledger) -> None:
    with pytest.raises(CodeNotFound, match="'ZZZ' is not in this ledger"):
        key(ledger, "ZZZ")
    with pytest.raises(CodeNotFound, match=f"read as GTIN {G} serial NOPE"):
        key(ledger, f"(01){G}(21)NOPE")
    with pytest.raises(CodeNotFound, match="check digit 9"):
        key(ledger, "106141412345678909")


def test_the_whole_form_search_walks_the_code_index(ledger: Ledger) -> None:
    """Step 3 must stay a range walk of the UNIQUE index, not a scan of every code."""
    from agent.codes import lookup

    bounds = [b for r in lookup._FULL_FORM_RANGES for b in r]
    plan = " ".join(str(r[-1]) for r in ledger.conn.execute("EXPLAIN QUERY PLAN " + lookup._SCAN, (*bounds, "X")))
    assert "codes_code" in plan and "SCAN" not in plan
