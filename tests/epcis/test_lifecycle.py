"""The CBV lifecycle of operator corrections on a packing floor: nothing is decommissioned or packed
before it was commissioned, and a code that never was is commissioned first (the documented rule)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.aggregation import operations
from agent.ledger import CodeState
from tests.aggregation.conftest import Floor, make_floor
from tests.helpers import seed_codes


def _uplink(floor: Floor) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, json.loads(payload)["epcis"]) for kind, payload in floor.ledger.conn.execute(
        "SELECT kind, payload FROM events WHERE uplink = 1 ORDER BY seq")]


def _check_lifecycle(events: list[tuple[str, dict[str, Any]]], already: set[str]) -> None:
    live = set(already)
    for _kind, e in events:
        if e["type"] == "ObjectEvent" and e["action"] == "ADD":
            assert not set(e["epcList"]) & live, e
            live |= set(e["epcList"])
        elif e["type"] == "ObjectEvent":
            assert (e["action"], e["bizStep"]) == ("DELETE", "decommissioning")
            assert set(e["epcList"]) <= live, e
            live -= set(e["epcList"])
        else:
            assert {e["parentID"], *e["childEPCs"]} <= live, e


def test_a_printed_code_scrapped_before_its_verdict_is_commissioned_then_decommissioned(tmp_path: Path) -> None:
    floor = make_floor(tmp_path / "ledger.db", items=4)
    try:
        seed_codes(floor.ledger, ["P1"], level="item", package_id="printed")
        with floor.ledger.atomic(durable=True):
            for source, target in ((CodeState.AVAILABLE, CodeState.ALLOCATED), (CodeState.ALLOCATED, CodeState.SENT),
                                   (CodeState.SENT, CodeState.PRINTED)):
                floor.ledger.transition_many(["P1"], target, expect=source, job=floor.job)
        assert operations.decommission(floor.agg, "P1") == 1
        events = _uplink(floor)
        assert [k for k, _ in events] == ["aggregation.commission", "aggregation.decommission"]
        (_, first), (_, last) = events
        assert first["epcList"] == last["epcList"] == ["urn:example:lineagent:code:P1"]
        assert first["eventTime"] < last["eventTime"] and last["lineagent:reason"] == "operator_decommission"
        _check_lifecycle(events, set())
    finally:
        floor.ledger.close()


def test_packing_replacing_and_scrapping_keep_the_lifecycle(tmp_path: Path) -> None:
    floor = make_floor(tmp_path / "ledger.db", items=12)
    try:
        for i in range(3):
            floor.agg.pack("box", floor.boxes[i], floor.items[2 * i: 2 * i + 2])
        floor.agg.pack("case", floor.cases[0], floor.boxes[:3])
        seed_codes(floor.ledger, ["B-NEW"], level="box", package_id="spare")
        operations.replace(floor.agg, floor.boxes[1], "B-NEW")
        operations.decommission(floor.agg, floor.cases[0], recursive=True)
        events = _uplink(floor)
        # the items were verified by the floor without a camera (so without events): they count as commissioned
        items = {f"urn:example:lineagent:code:{c}" for c in floor.items}
        _check_lifecycle(events, items)
        retired = [e for _, e in events if e["type"] == "ObjectEvent" and e["action"] == "DELETE"]
        assert retired[0]["epcList"] == [f"urn:example:lineagent:code:{floor.boxes[1]}"]  # replaced
        assert len(retired) == 2
    finally:
        floor.ledger.close()
