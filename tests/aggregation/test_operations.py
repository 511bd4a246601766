"""Replace, unlink and decommission on a real ledger; events validate against the EPCIS 2.0 schema."""

from __future__ import annotations

import json

import pytest

from agent.aggregation import operations
from agent.aggregation.model import AggregationError, PackState
from agent.epcis import document, validate
from tests.aggregation.conftest import Floor
from tests.helpers import seed_codes


def _build_case(floor: Floor) -> None:
    for i in range(3):
        floor.agg.pack("box", floor.boxes[i], floor.items[2 * i: 2 * i + 2])
    floor.agg.pack("case", "C00000", floor.boxes[:3])


def _events(floor: Floor, kind: str) -> list[dict[str, object]]:
    return [json.loads(r[0]) for r in floor.ledger.conn.execute(
        "SELECT payload FROM events WHERE kind = ? AND uplink = 1 ORDER BY seq", (kind,))]


def test_every_uplinked_event_validates_against_epcis_schema(floor: Floor) -> None:
    _build_case(floor)
    seed_codes(floor.ledger, ["B-NEW"], level="box", package_id="spare")
    operations.replace(floor.agg, "B00001", "B-NEW")
    operations.unlink(floor.agg, "C00000", recursive=True)
    operations.decommission(floor.agg, "B00000")
    evts = [json.loads(r[0])["epcis"] for r in floor.ledger.conn.execute(
        "SELECT payload FROM events WHERE uplink = 1 ORDER BY seq")]
    assert {e["type"] for e in evts} == {"AggregationEvent", "ObjectEvent"}
    validate(document(evts))  # raises DocumentInvalid with the JSON path of any break
    adds = [e for e in evts if e.get("action") == "ADD"]
    assert all(e["bizStep"] == {"AggregationEvent": "packing", "ObjectEvent": "commissioning"}[e["type"]]
               for e in adds)
    assert any(e["action"] == "DELETE" and e["bizStep"] == "unpacking" for e in evts)
    # CBV lifecycle: a parent is commissioned before any event packs it; a decommissioned code before that
    # (the items here were verified without events, as a camera-less test floor does; parents were not)
    commissioned: set[str] = set()
    for e in evts:
        if e["type"] == "ObjectEvent" and e["action"] == "ADD":
            commissioned.update(e["epcList"])
        elif e["type"] == "AggregationEvent":
            assert e["parentID"] in commissioned, e
        elif e["action"] == "DELETE":
            assert e["bizStep"] == "decommissioning"
            assert {u for u in e["epcList"] if "B" in u or "C" in u} <= commissioned, e


def test_replace_a_child_and_a_parent_keeps_history(floor: Floor) -> None:
    _build_case(floor)
    seed_codes(floor.ledger, ["I-NEW"], level="item", package_id="spare-i")
    seed_codes(floor.ledger, ["B-NEW"], level="box", package_id="spare-b")
    operations.replace(floor.agg, floor.items[0], "I-NEW")
    assert floor.agg.children_of("B00000") == ["I-NEW", floor.items[1]] or \
        sorted(floor.agg.children_of("B00000")) == sorted(["I-NEW", floor.items[1]])
    operations.replace(floor.agg, "B00000", "B-NEW")
    assert sorted(floor.agg.children_of("B-NEW")) == sorted(["I-NEW", floor.items[1]])
    assert "B-NEW" in floor.agg.children_of("C00000") and "B00000" not in floor.agg.children_of("C00000")
    assert floor.agg.info("B00000").state is PackState.REPLACED
    assert floor.ledger.state_of("B00000") == "rejected"
    hist = floor.ledger.conn.execute("SELECT action, detail FROM pack_history ORDER BY id").fetchall()
    assert [h[0] for h in hist] == ["replace", "replace"]
    assert '"new": "B-NEW"' in hist[1][1]


def test_replace_refuses_used_foreign_or_other_level(floor: Floor) -> None:
    _build_case(floor)
    with pytest.raises(AggregationError, match="is a box code; 'I00000' is item"):
        operations.replace(floor.agg, floor.items[0], "B00010")
    with pytest.raises(AggregationError, match="already used"):
        operations.replace(floor.agg, floor.items[0], floor.items[10])
    with pytest.raises(AggregationError, match="not in any code package"):
        operations.replace(floor.agg, floor.items[0], "ZZZ")


def test_unlink_is_top_down(floor: Floor) -> None:
    _build_case(floor)
    with pytest.raises(AggregationError, match="is inside 'C00000'; unlink that first"):
        operations.unlink(floor.agg, "B00000")
    done = operations.unlink(floor.agg, "C00000")
    assert [(u.parent, u.children) for u in done] == [("C00000", 3)]
    assert floor.agg.children_of("B00000") == floor.items[:2]  # not recursive: boxes keep their bottles
    done = operations.unlink(floor.agg, "B00000", recursive=True)
    assert floor.agg.children_of("B00000") == []
    # The freed bottles pack again into a fresh box.
    floor.agg.pack("box", "B00009", floor.items[:2])


def test_decommission_needs_recursive_and_is_recursive(floor: Floor) -> None:
    _build_case(floor)
    with pytest.raises(AggregationError, match="holds 9 codes; decommission it with --recursive"):
        operations.decommission(floor.agg, "C00000")
    assert operations.decommission(floor.agg, "C00000", recursive=True) == 10
    states = {r[0] for r in floor.ledger.conn.execute(
        "SELECT state FROM codes WHERE code IN ('C00000','B00000','I00000','I00005')")}
    assert states == {"rejected"}
    assert floor.ledger.conn.execute("SELECT COUNT(*) FROM pack_links").fetchone()[0] == 0
    ev = _events(floor, "aggregation.decommission")[0]["epcis"]
    assert isinstance(ev, dict)
    assert ev["bizStep"] == "decommissioning" and len(ev["epcList"]) == 10
