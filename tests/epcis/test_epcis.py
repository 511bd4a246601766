"""EPCIS builders, the CBV 2.0 event hash and schema validation, checked against GS1's own material."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import LineConfig
from agent.epcis import (
    Action,
    DocumentInvalid,
    EventError,
    HashError,
    LineContext,
    aggregation_event,
    commissioning_event,
    decommissioning_event,
    document,
    epc_for,
    event_hash,
    validate,
)

# Copies of the official examples from shared/standards/epcis, so the suite runs on any clone.
STANDARDS = Path(__file__).parent / "data"
CTX = LineContext(
    read_point="urn:epc:id:sgln:0614141.00777.L1",
    biz_location="urn:epc:id:sgln:0614141.00777.0",
    utc_offset="+08:00",
)
AT = 1_767_225_600.123  # 2026-01-01T08:00:00.123+08:00

# Hashes GS1's reference implementation (epcis-event-hash-generator 1.9.3) gives for the standard's
# examples. (The eventIDs printed inside those examples predate the CBV 2.0 web vocabulary and differ.)
GS1_EXAMPLE_HASHES = [
    "ni:///sha-256;df6523665bc5e5803d6c7b84f5a04e103694d8220f2abc4f2c74310e89f31bc6?ver=CBV2.0",
    "ni:///sha-256;32547b2344d525ea60ab1b899d82a9011fd9c39bb26ed936e113066146f49941?ver=CBV2.0",
]


def _example_events() -> list[dict[str, Any]]:
    doc = json.loads((STANDARDS / "Example_9.6.1-ObjectEvent.jsonld").read_text())
    return list(doc["epcisBody"]["eventList"])


def test_gs1_example_events_hash_to_the_reference_values() -> None:
    got = [event_hash(e, {"example": "http://ns.example.com/epcis/"}) for e in _example_events()]
    assert got == GS1_EXAMPLE_HASHES


def test_hash_ignores_event_id_key_order_and_time_zone_spelling() -> None:
    event = _example_events()[0]
    shuffled = dict(reversed(list(event.items())))
    shuffled["eventID"] = "urn:uuid:whatever"
    shuffled["epcList"] = list(reversed(event["epcList"]))
    shuffled["eventTime"] = "2005-04-04T02:33:31.116Z"  # the same instant in UTC
    assert event_hash(shuffled) == event_hash(event)


def test_hash_changes_with_any_fact() -> None:
    event = commissioning_event(CTX, ["urn:example:lineagent:code:1"], at=AT, lot="L1")
    base = event_hash(event)
    for key, value in [("eventTime", "2026-01-01T08:00:00.124+08:00"), ("epcList", ["urn:example:lineagent:code:2"]),
                       ("ilmd", {"cbvmda:lotNumber": "L2"})]:
        changed = copy.deepcopy(event)
        changed[key] = value
        assert event_hash(changed) != base, key


def test_hash_refuses_what_it_cannot_canonicalise() -> None:
    event = {"type": "ObjectEvent", "eventTime": "2026-01-01T00:00:00Z", "eventTimeZoneOffset": "+00:00",
             "action": "OBSERVE", "quantityList": [{"epcClass": "x", "quantity": 1}]}
    with pytest.raises(HashError, match="quantityList"):
        event_hash(event)


def test_epc_for_each_kind_of_code() -> None:
    """A code read as printed alone; expectations from the EPC Tag Data Standard's worked examples."""
    dl = "https://id.example.com/01/09506000134352/10/L1/21/ABC?17=270101"
    assert epc_for(dl) == "urn:epc:id:sgtin:9506000.013435.ABC"  # the printed DL names the SGTIN
    assert epc_for("(00)106141412345678908") == "urn:epc:id:sscc:0614141.1234567890"
    assert epc_for("00106141412345678908") == "urn:epc:id:sscc:0614141.1234567890"
    assert epc_for("0109506000134352" + "21ABC1") == "urn:epc:id:sgtin:9506000.013435.ABC1"
    # 18 digits alone could be any serial: only a level that mints or holds SSCCs makes them one
    assert epc_for("106141412345678908") == "urn:example:lineagent:code:106141412345678908"
    assert epc_for("https://q.example.cn/c/123") == "https://q.example.cn/c/123"  # a 一物一码 URL names itself
    assert epc_for("81234567890123456789", namespace="https://codes.example.cn/c/") == (
        "https://codes.example.cn/c/81234567890123456789")
    assert epc_for("a b/c") == "urn:example:lineagent:code:a%20b%2Fc"
    with pytest.raises(EventError):
        epc_for("  ")
    with pytest.raises(EventError, match=r"identity\.code_namespace"):
        epc_for("RAW1", namespace=None)


def test_builders_make_documents_the_official_schema_accepts() -> None:
    events = [
        commissioning_event(CTX, [epc_for("00106141412345678908")], at=AT, lot="L1", expiry=date(2027, 1, 31),
                            work_order="WO-1"),
        decommissioning_event(CTX, [epc_for("X1")], at=AT, reason="no_read"),
        aggregation_event(CTX, epc_for("00106141412345678908"), [epc_for("A"), epc_for("B")], at=AT),
        aggregation_event(CTX, epc_for("00106141412345678908"), [], at=AT, action=Action.DELETE),
    ]
    doc = document(events)
    validate(doc)
    listed = doc["epcisBody"]["eventList"]
    assert [e["eventID"] for e in listed] == [event_hash(e) for e in events]
    assert listed[0]["eventTime"] == "2026-01-01T08:00:00.123+08:00"
    assert listed[2]["bizStep"] == "packing" and listed[3]["bizStep"] == "unpacking"


def test_validate_names_the_broken_place() -> None:
    doc = document([commissioning_event(CTX, ["urn:example:lineagent:code:1"], at=AT)])
    doc["epcisBody"]["eventList"][0]["action"] = "ADDED"
    with pytest.raises(DocumentInvalid, match="eventList/0"):
        validate(doc)
    del doc["@context"]
    with pytest.raises(DocumentInvalid):
        validate(doc)


def test_builders_refuse_impossible_events() -> None:
    with pytest.raises(EventError, match="at least one EPC"):
        commissioning_event(CTX, [], at=AT)
    with pytest.raises(EventError, match="reason"):
        decommissioning_event(CTX, ["urn:x:1"], at=AT, reason="")
    with pytest.raises(EventError, match="ADD or DELETE"):
        aggregation_event(CTX, "urn:x:p", ["urn:x:1"], at=AT, action=Action.OBSERVE)


def test_line_context_from_config(tmp_path: Path) -> None:
    cfg = LineConfig.model_validate({
        "site": {"id": "s1", "sgln": "urn:epc:id:sgln:0614141.00777.0"},
        "line": {"id": "L7", "utc_offset": "-05:00"},
        "security": {"cloud_public_key": str(tmp_path / "k.pub")},
    })
    ctx = LineContext.from_config(cfg)
    assert ctx.read_point == "urn:epc:id:sgln:0614141.00777.L7"
    assert ctx.biz_location == "urn:epc:id:sgln:0614141.00777.0"
    assert ctx.event_time(0.0) == "1969-12-31T19:00:00.000-05:00"


_serial = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-.", min_size=1, max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    serials=st.lists(_serial, min_size=1, max_size=5, unique=True),
    lot=_serial,
    at=st.floats(min_value=1e9, max_value=2e9),
    offset=st.sampled_from(["+00:00", "+08:00", "-05:30"]),
    reject=st.booleans(),
)
def test_our_events_hash_like_gs1_reference(serials: list[str], lot: str, at: float, offset: str,
                                            reject: bool) -> None:
    ref = pytest.importorskip("epcis_event_hash_generator.hash_generator", reason="GS1 reference not installed")
    from epcis_event_hash_generator.json_to_py import (  # type: ignore[import-untyped]
        event_list_from_epcis_document_json,
    )

    ctx = LineContext(read_point="urn:epc:id:sgln:0614141.00777.L1", biz_location=None, utc_offset=offset)
    epcs = [epc_for("0109506000134352" + f"21{s}") for s in serials] + [epc_for(f"CN{s}") for s in serials]
    events = [
        decommissioning_event(ctx, epcs, at=at, reason="no_read") if reject
        else commissioning_event(ctx, epcs, at=at, lot=lot, expiry="2027-01-01", work_order=f"WO{lot}"),
        aggregation_event(ctx, epc_for("00106141412345678908"), epcs, at=at),
    ]
    doc = document(events)
    expected = ref.epcis_hashes_from_events(event_list_from_epcis_document_json(copy.deepcopy(doc)))
    assert [e["eventID"] for e in doc["epcisBody"]["eventList"]] == list(expected)


_MUTATIONS: list[tuple[str, Any]] = [
    ("eventTime", "yesterday"), ("eventTime", 5), ("eventID", "not a uri"), ("epcList", ["a b"]),
    ("epcList", ["urn:x:1", "urn:x:1"]), ("epcList", "urn:x:1"), ("action", "ADDED"), ("bizStep", "BizStep x"),
    ("eventTimeZoneOffset", "+25:00"), ("readPoint", {"id": "no uri"}), ("parentID", "::"), ("childEPCs", [1]),
    ("ilmd", []), ("type", "Nonsense"), ("recordTime", "2026-13-01T00:00:00Z"),
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(_MUTATIONS)), max_size=3))
def test_fast_batch_validation_decides_exactly_like_the_full_schema(mutations: list[tuple[int, tuple[str, Any]]]
                                                                     ) -> None:
    from agent.epcis.document import validate_batch

    events = [
        commissioning_event(CTX, ["urn:example:lineagent:code:1", "urn:example:lineagent:code:2"], at=AT, lot="L1"),
        decommissioning_event(CTX, ["urn:example:lineagent:code:3"], at=AT + 1, reason="no_read"),
        aggregation_event(CTX, "urn:example:lineagent:code:P", ["urn:example:lineagent:code:1"], at=AT + 2),
        aggregation_event(CTX, "urn:example:lineagent:code:P", [], at=AT + 3, action=Action.DELETE),
    ]
    doc = document(events)
    for index, (key, value) in mutations:
        doc["epcisBody"]["eventList"][index][key] = value
    outcomes = []
    for check in (validate, validate_batch):
        try:
            check(doc)
            outcomes.append("valid")
        except DocumentInvalid:
            outcomes.append("invalid")
    assert outcomes[0] == outcomes[1], (mutations, outcomes)


_FIELD_VALUES = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A(urn:epc:id:sgtin:\d{7}\.\d{6}\.\w{1,8}|https?://[a-z.]{1,12}/\S{0,12}|\w{1,6}:\S{0,10})\Z"),
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}[tT ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([zZ]|[+-]\d{2}:?\d{2})?\Z"),
    st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(_FIELD_VALUES)
def test_field_checks_decide_exactly_like_the_compiled_schema_rule(value: Any) -> None:
    """The receiver's per-field predicates are the schema's own rules, not an approximation of them."""
    from agent.epcis.document import _check, _ok

    for kind in ("time", "uri"):
        assert _check(kind)(value) is _ok(kind, value), (kind, value)


def test_document_copies_events_unless_handed_over() -> None:
    given = commissioning_event(CTX, ["urn:example:lineagent:code:1"], at=AT, lot="L1")
    bare = {k: v for k, v in given.items() if k != "eventID"}
    copied = document([given, bare])["epcisBody"]["eventList"]
    assert copied[0] == given and copied[0] is not given and "eventID" not in bare
    owned = document([given, bare], owned=True)["epcisBody"]["eventList"]
    assert owned[0] is given  # already complete: no copy on the uplink's drain
    assert owned[1]["eventID"] == event_hash(bare) and "eventID" not in bare
