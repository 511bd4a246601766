"""Every packing rule, failing on a real ledger, with the reason the operator is shown."""

from __future__ import annotations

import pytest

from agent.aggregation.burst import pack_burst
from agent.aggregation.model import AggregationError, PackRejected, PackState, Reason
from agent.aggregation.packs import Aggregator
from agent.jobs import JobSpec, create_job
from agent.ledger import Ledger
from tests.aggregation.conftest import Floor
from tests.helpers import seed_codes


def rejected(floor: Floor, level: str, parent: str, children: list[str], **kw: object) -> PackRejected:
    with pytest.raises(PackRejected) as info:
        floor.agg.pack(level, parent, children, **kw)  # type: ignore[arg-type]
    # Nothing of a rejected pack is linked, and the rejection is journaled with its reasons.
    assert floor.agg.children_of(parent) == []
    row = floor.ledger.conn.execute(
        "SELECT payload FROM events WHERE kind = 'pack.rejected' ORDER BY seq DESC LIMIT 1").fetchone()
    for r in info.value.reasons:
        assert r.value in row[0]
    return info.value


def test_exact_pack_links_children_and_closes(floor: Floor) -> None:
    info = floor.agg.pack("box", "B00000", floor.items[:2])
    assert (info.state, info.children, info.expected_count) == (PackState.CLOSED, 2, 2)
    assert floor.agg.children_of("B00000") == floor.items[:2]
    assert floor.ledger.state_of("B00000") == "verified"


def test_too_many(floor: Floor) -> None:
    e = rejected(floor, "box", "B00000", floor.items[:3])
    assert e.reasons == [Reason.TOO_MANY]
    assert "3 item codes, a box holds 2" in str(e)


def test_too_few_unless_force_closed(floor: Floor) -> None:
    e = rejected(floor, "box", "B00000", floor.items[:1])
    assert e.reasons == [Reason.TOO_FEW]
    with pytest.raises(AggregationError, match="a force-close needs a reason"):
        floor.agg.pack("box", "B00000", floor.items[:1], partial_reason="  ")
    info = floor.agg.pack("box", "B00000", floor.items[:1], partial_reason="end of lot")
    assert info.partial_reason == "end of lot"
    hist = floor.ledger.conn.execute("SELECT action, detail FROM pack_history").fetchall()
    assert hist[0][0] == "force_close" and "end of lot" in hist[0][1]


def test_duplicate_in_one_read(floor: Floor) -> None:
    e = rejected(floor, "box", "B00000", [floor.items[0], floor.items[0]])
    assert Reason.DUPLICATE in e.reasons
    assert f"{floor.items[0]!r}: read 2 times in one box" in str(e)


def test_child_already_in_another_parent(floor: Floor) -> None:
    floor.agg.pack("box", "B00000", floor.items[:2])
    e = rejected(floor, "box", "B00001", [floor.items[1], floor.items[2]])
    assert e.reasons == [Reason.ALREADY_PACKED]
    assert floor.items[1] in str(e)


def test_foreign_child(floor: Floor) -> None:
    e = rejected(floor, "box", "B00000", [floor.items[0], "NOT-OURS"])
    assert e.reasons == [Reason.FOREIGN]
    assert "'NOT-OURS': not in any code package of this line" in str(e)


def test_unverified_child(floor: Floor) -> None:
    seed_codes(floor.ledger, ["RAW1"], level="item", package_id="p-raw")
    e = rejected(floor, "box", "B00000", [floor.items[0], "RAW1"])
    assert e.reasons == [Reason.NOT_VERIFIED]
    assert "never verified (state available)" in str(e)


def test_wrong_level_child(floor: Floor) -> None:
    e = rejected(floor, "box", "B00000", [floor.items[0], "C00000"])
    assert e.reasons == [Reason.WRONG_LEVEL]


def test_mixed_lot_and_mixed_job(floor: Floor) -> None:
    other_lot = create_job(floor.ledger, JobSpec("J2", "09506000134352", "Water", "LOT2", 10))
    same_lot = create_job(floor.ledger, JobSpec("J3", "09506000134352", "Water", "LOT1", 10))
    floor.verify([floor.items[1]], job=other_lot)
    floor.verify([floor.items[3]], job=same_lot)
    e = rejected(floor, "box", "B00000", [floor.items[0], floor.items[1]])
    assert e.reasons == [Reason.MIXED_LOT]
    assert "is lot 'LOT2', the pack is lot 'LOT1'" in str(e)
    e = rejected(floor, "box", "B00001", [floor.items[2], floor.items[3]])
    assert e.reasons == [Reason.MIXED_JOB]


def test_parent_rules(floor: Floor) -> None:
    e = rejected(floor, "box", "NOPE", floor.items[:2])
    assert e.reasons == [Reason.PARENT_FOREIGN]
    e = rejected(floor, "box", "C00000", floor.items[:2])
    assert e.reasons == [Reason.PARENT_WRONG_LEVEL]
    floor.agg.pack("box", "B00000", floor.items[:2])
    with pytest.raises(PackRejected) as info:
        floor.agg.pack("box", "B00000", floor.items[2:4])
    assert info.value.reasons == [Reason.PARENT_USED]
    assert "already a closed box" in str(info.value)


def test_higher_level_children_must_be_closed_packs(floor: Floor) -> None:
    floor.agg.pack("box", "B00000", floor.items[:2])
    floor.agg.open("box", "B00001")
    e = rejected(floor, "case", "C00000", ["B00000", "B00001", "B00002"])
    assert e.reasons == [Reason.CHILD_NOT_CLOSED]
    assert "'B00001': is a open pack" in str(e) and "'B00002': is no pack at all" in str(e)


def test_open_add_park_resume_close(floor: Floor) -> None:
    for i in range(3):
        floor.agg.pack("box", floor.boxes[i], floor.items[2 * i: 2 * i + 2])
    floor.agg.open("case", "C00000")
    floor.agg.add("C00000", ["B00000"])
    floor.agg.park("C00000")
    with pytest.raises(Exception, match="is parked; only an open pack takes children"):
        floor.agg.add("C00000", ["B00001"])
    # Survives a restart: the parked pack is in the file, not in memory.
    path = floor.ledger.path
    floor.ledger.close()
    floor.ledger = Ledger(path)
    floor.agg = Aggregator(floor.ledger, floor.agg.plans, floor.agg.ctx)
    assert [p.code for p in floor.agg.unfinished("case")] == ["C00000"]
    floor.agg.resume("C00000")
    floor.agg.add("C00000", ["B00001"])
    with pytest.raises(PackRejected) as info:
        floor.agg.close("C00000")
    assert info.value.reasons == [Reason.TOO_FEW]
    floor.agg.add("C00000", ["B00002"])
    assert floor.agg.close("C00000").state is PackState.CLOSED


def test_a_burst_links_the_good_packs_and_returns_the_bad_with_reasons(floor: Floor) -> None:
    burst = [
        ("B00000", floor.items[0:2]),
        ("B00001", [floor.items[1], floor.items[2]]),  # items[1] is already in the first pack
        ("B00002", floor.items[3:5]),
        ("B00000", floor.items[5:7]),  # the first pack's parent again
        ("B00003", [floor.items[7]]),  # too few
    ]
    bad = pack_burst(floor.agg, "box", burst, job=floor.job)
    assert [(b.parent, b.reasons) for b in bad] == [
        ("B00001", [Reason.ALREADY_PACKED]), ("B00000", [Reason.PARENT_USED]), ("B00003", [Reason.TOO_FEW])]
    assert "is in an earlier pack of this burst" in str(bad[0])
    assert floor.agg.children_of("B00000") == floor.items[0:2]
    assert floor.agg.children_of("B00002") == floor.items[3:5]
    assert floor.agg.children_of("B00001") == [] and floor.agg.children_of("B00003") == []
    assert floor.agg.info("B00002").state is PackState.CLOSED
