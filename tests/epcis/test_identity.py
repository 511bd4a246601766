"""One identity per code: what events name a code by, checked against the EPC Tag Data Standard's worked
examples, GS1's reference event-hash generator and the biip parser (independent of this code)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import biip
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import LineConfig, load_config
from agent.config.load import ConfigError
from agent.epcis import Identity, IdentityError, LineContext, commissioning_event, document, jsonio
from agent.epcis.identity import epcs_of
from agent.jobs import JobSpec, create_job
from agent.ledger import Ledger
from agent.sync.outbox import Outbox
from tests.helpers import make_line, seed_codes

NAMESPACE = "https://codes.example.cn/c/"


def _config(tmp_path: Path, **identity: Any) -> LineConfig:
    return LineConfig.model_validate({
        "site": {"id": "s1", "sgln": "urn:epc:id:sgln:0614141.00777.0"},
        "line": {"id": "L1", "utc_offset": "+08:00"},
        "security": {"cloud_public_key": str(tmp_path / "k.pub")},
        "code_sources": {
            "levels": {"item": {}, "box": {"gtin": "19506000134359"},
                       "case": {"gtin": "29506000134356", "company_prefix_length": 8}, "tote": {"code_format": "sscc"}},
            "sscc": {"extension_digit": 1, "company_prefix": "0614141", "serial_from": 1, "serial_to": 99},
        },
        "templates": {"dl": {"kind": "digital_link", "domain": "id.example.com"}, "gs1dm": {"kind": "element_string"},
                      "qr": {"kind": "url", "url_prefix": "https://q.example.cn/c/"}, "raw": {"kind": "raw"}},
        "products": {"water": {"gtin": "09506000134352", "name": "w", "template": "dl"},
                     "tds": {"gtin": "80614141123458", "name": "t", "template": "gs1dm"}},
        "packing_specs": {"p": {"levels": [{"level": "item"}, {"level": "box", "count": 6, "parent_code": "print"},
                                           {"level": "pallet", "count": 2, "parent_code": "mint"}]}},
        "identity": {"code_namespace": NAMESPACE, **identity},
    })


# Expected URIs worked out by hand from the EPC Tag Data Standard 2.x (6.3.1 SGTIN, 6.3.2 SSCC): the GTIN's
# indicator digit moves in front of the item reference, the company prefix stands alone, check digits go.
CASES = [
    # (code, level, job gtin, job template) -> URN
    (("ABC", None, "09506000134352", "dl"), "urn:epc:id:sgtin:9506000.013435.ABC"),
    (("ABC", None, "09506000134352", "gs1dm"), "urn:epc:id:sgtin:9506000.013435.ABC"),
    (("6789", None, "80614141123458", "gs1dm"), "urn:epc:id:sgtin:0614141.812345.6789"),  # the TDS example
    (("123", None, "09506000134352", "qr"), "https://q.example.cn/c/123"),  # a 一物一码 URL names itself
    (("81234567890123456789", None, "09506000134352", "raw"), NAMESPACE + "81234567890123456789"),
    (("https://id.example.com/01/09506000134352/21/Z", None, "09506000134352", "raw"),
     "urn:epc:id:sgtin:9506000.013435.Z"),  # a raw code that is a Digital Link names its SGTIN
    (("BX0001", "box", None, None), "urn:epc:id:sgtin:9506000.113435.BX0001"),  # the box's own GTIN
    (("CS1", "case", None, None), "urn:epc:id:sgtin:95060001.23435.CS1"),  # prefix length 8 for this GTIN
    (("106141412345678908", "pallet", None, None), "urn:epc:id:sscc:0614141.1234567890"),  # minted: TDS example
    (("106141412345678908", "tote", None, None), "urn:epc:id:sscc:0614141.1234567890"),  # code_format sscc
    (("106141412345678908", "unknown", None, None), NAMESPACE + "106141412345678908"),  # 18 digits, no SSCC level
]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_each_code_has_the_identity_its_template_and_level_give(tmp_path: Path, args: tuple[Any, ...],
                                                               expected: str) -> None:
    code, level, gtin, template = args
    ident = Identity.from_config(_config(tmp_path))
    assert ident.epc(code, level=level, gtin=gtin, template=template) == expected


def test_digital_link_form_parses_with_biip_to_the_printed_key(tmp_path: Path) -> None:
    ident = Identity.from_config(_config(tmp_path, epc_form="digital_link"))
    item = ident.epc("A/B!", gtin="09506000134352", template="dl")
    assert item == "https://id.gs1.org/01/09506000134352/21/A%2FB%21"
    parsed = biip.parse(item)
    assert parsed.gtin is not None and parsed.gtin.value == "09506000134352"
    assert parsed.gs1_digital_link_uri is not None
    assert {e.ai.ai: e.value for e in parsed.gs1_digital_link_uri.element_strings}["21"] == "A/B!"
    pallet = biip.parse(ident.epc("106141412345678908", level="pallet"))
    assert pallet.sscc is not None and pallet.sscc.value == "106141412345678908"


def test_a_code_no_rule_names_is_refused_with_the_setting_that_would(tmp_path: Path) -> None:
    ident = Identity.from_config(_config(tmp_path).model_copy(update={"identity": LineConfig.model_fields[
        "identity"].default_factory()}))  # type: ignore[misc]
    with pytest.raises(IdentityError, match=r"'RAW-1' is no GS1 key and no URI.*identity\.code_namespace"):
        ident.epc("RAW-1", gtin="09506000134352", template="raw")


def test_config_check_refuses_raw_codes_without_a_namespace(tmp_path: Path) -> None:
    path = make_line(tmp_path)
    doc = yaml.safe_load(path.read_text())
    del doc["identity"]
    doc["templates"]["raw"] = {"kind": "raw"}
    doc["products"]["plain"] = {"gtin": "09506000134352", "name": "Plain", "template": "raw"}
    doc["packing_specs"] = {"s": {"levels": [{"level": "item"}, {"level": "box", "count": 6, "parent_code": "print"}]}}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert "products.plain.template: template 'raw' prints raw codes" in text
    assert "packing_specs.s.levels[1].level: box codes are no GS1 key" in text


def test_work_orders_are_cbv_business_transaction_ids(tmp_path: Path) -> None:
    ctx = LineContext.from_config(_config(tmp_path))
    # GLN of urn:epc:id:sgln:0614141.00777.0: 061414100777 and its check digit 6 (worked by hand)
    assert ctx.work_order("WO 1/2") == "urn:epcglobal:cbv:bt:0614141007776:WO%201%2F2"
    event = commissioning_event(ctx, ["urn:epc:id:sgtin:9506000.013435.A"], at=1.8e9, work_order="WO-1")
    assert event["bizTransactionList"] == [
        {"type": "prodorder", "bizTransaction": "urn:epcglobal:cbv:bt:0614141007776:WO-1"}]
    assert LineContext("urn:x:rp", None).work_order("WO-1") is None  # no GLN known: no transaction id


def test_ledger_codes_are_named_by_their_own_level_and_job(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        seed_codes(ledger, ["I1", "I2"], level="item", package_id="pi")
        seed_codes(ledger, ["B1"], level="box", package_id="pb")
        job = create_job(ledger, JobSpec("J", "09506000134352", "w", "L1", 2, template="dl"))
        ledger.allocate(job, "item", 2)
        ledger.allocate(job, "box", 1)
        ident = Identity.from_config(_config(tmp_path))
        assert epcs_of(ledger.conn, ident, ["I1", "B1", "NOT-HELD"]) == {
            "I1": "urn:epc:id:sgtin:9506000.013435.I1",
            "B1": "urn:epc:id:sgtin:9506000.113435.B1",
            "NOT-HELD": NAMESPACE + "NOT-HELD",
        }
    finally:
        ledger.close()


def _reference_hashes(wire: bytes) -> list[str]:
    from epcis_event_hash_generator.hash_generator import epcis_hashes_from_events  # type: ignore[import-untyped]
    from epcis_event_hash_generator.json_to_py import (  # type: ignore[import-untyped]
        event_list_from_epcis_document_str,
    )

    return list(epcis_hashes_from_events(event_list_from_epcis_document_str(wire.decode("utf-8"))))


def test_the_event_id_is_gs1s_hash_of_the_bytes_sent_after_the_ledger_stored_it(tmp_path: Path) -> None:
    """The ledger stores events with sorted keys (bizTransaction before type); the document sent must
    still hash, by GS1's tool on its bytes, to the eventID the producer set."""
    ctx = LineContext.from_config(_config(tmp_path))
    events = [commissioning_event(ctx, [f"urn:epc:id:sgtin:9506000.013435.S{i}"], at=1.8e9 + i, lot="L1",
                                  work_order="WO-1") for i in range(3)]
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        with ledger.atomic(durable=True):
            for e in events:
                ledger.append_event("code.verified", {"epcis": e}, uplink=True)
        stored = ledger.conn.execute("SELECT payload FROM events WHERE uplink = 1").fetchone()[0]
        assert stored.index('"bizTransaction"') < stored.index('"type":"prodorder"')  # as the ledger keeps it
        outbox = Outbox(tmp_path / "ledger.db")
        batch = outbox.cut(10)
        assert batch is not None
        wire = jsonio.dumps(document(outbox.events(batch), owned=True))
        outbox.close()
    finally:
        ledger.close()
    sent = json.loads(wire)["epcisBody"]["eventList"]
    assert _reference_hashes(wire) == [e["eventID"] for e in sent] == [e["eventID"] for e in events]


_SET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(serial=st.text(alphabet=_SET82, min_size=1, max_size=20))
def test_both_forms_of_any_serial_hash_like_gs1s_reference_and_alike(tmp_path: Path, serial: str) -> None:
    """Any serial of the 82-character set: the URN and the Digital Link name the same object, so GS1's
    generator gives both events one eventID, and ours equals it on the bytes sent."""
    ids = []
    for form in ("urn", "digital_link"):
        ctx = LineContext.from_config(_config(tmp_path, epc_form=form))
        epc = ctx.ident.epc(serial, gtin="09506000134352", template="dl")
        wire = jsonio.dumps(document([commissioning_event(ctx, [epc], at=1.8e9, lot="L1", work_order="WO-1")]))
        [sent] = json.loads(wire)["epcisBody"]["eventList"]
        assert _reference_hashes(copy.copy(wire)) == [sent["eventID"]]
        ids.append(sent["eventID"])
    assert ids[0] == ids[1]
