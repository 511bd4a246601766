"""Trace and export over a real hierarchy: ancestors outermost first, the whole subtree, every field."""

from __future__ import annotations

import csv
import io
import json

import pytest

from agent.aggregation import trace as tracing
from agent.aggregation.model import AggregationError
from tests.aggregation.conftest import Floor
from tests.helpers import seed_codes


def _pallet(floor: Floor) -> None:
    for i in range(6):
        floor.agg.pack("box", floor.boxes[i], floor.items[2 * i: 2 * i + 2])
    floor.agg.pack("case", "C00000", floor.boxes[:3])
    floor.agg.pack("case", "C00001", floor.boxes[3:6])
    seed_codes(floor.ledger, ["P1"], level="pallet", package_id="pallets")
    floor.agg.pack("pallet", "P1", ["C00000", "C00001"])


def test_trace_of_a_bottle_names_every_ancestor_with_job_and_lot(floor: Floor) -> None:
    _pallet(floor)
    t = tracing.trace(floor.ledger.conn, floor.items[7])
    assert [(a.level, a.code) for a in t.ancestors] == [("pallet", "P1"), ("case", "C00001"), ("box", "B00003")]
    assert t.root.children == [] and t.root.state == "verified"
    assert {(a.job_name, a.lot, a.pack_state) for a in t.ancestors} == {("J1", "LOT1", "closed")}
    assert all(a.linked_at for a in t.ancestors[1:]) and t.ancestors[0].linked_at is None


def test_trace_of_a_pallet_holds_the_whole_tree(floor: Floor) -> None:
    _pallet(floor)
    t = tracing.trace(floor.ledger.conn, "P1")
    assert t.ancestors == [] and t.count() == 1 + 2 + 6 + 12
    assert [c.code for c in t.root.children] == ["C00000", "C00001"]
    assert [b.code for b in t.root.children[1].children] == floor.boxes[3:6]
    doc = json.loads(tracing.export_json(t))
    assert doc["hierarchy"]["children"][0]["children"][0]["children"][1]["code"] == floor.items[1]
    rows = list(csv.DictReader(io.StringIO(tracing.export_csv(t))))
    assert [r["code"] for r in rows[:4]] == ["P1", "C00000", "B00000", floor.items[0]]
    assert {r["parent"] for r in rows if r["level"] == "item"} == set(floor.boxes[:6])


def test_trace_of_an_unknown_code_says_so(floor: Floor) -> None:
    with pytest.raises(AggregationError, match="'X' is not in this ledger"):
        tracing.trace(floor.ledger.conn, "X")
