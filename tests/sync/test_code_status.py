"""Delivery state per event as the outbox records it: a resent batch, an invalid outcome, and the
decommissioning of a box with its bottles, one event filed under one of its codes only."""

from __future__ import annotations

from pathlib import Path

from agent.aggregation import operations
from agent.sync.code_status import Delivery, deliveries, summary
from agent.sync.outbox import Outbox
from tests.aggregation.conftest import make_floor


def test_resent_batch_acked_counts_and_an_invalid_outcome_is_kept(tmp_path: Path) -> None:
    floor = make_floor(tmp_path / "ledger.db")
    floor.agg.pack("box", "B00000", ["I00000", "I00001"], durable=True)
    floor.agg.pack("box", "B00001", ["I00002", "I00003"], durable=True)
    floor.ledger.commit()
    outbox = Outbox(tmp_path / "ledger.db")
    first = outbox.cut(2, sending=True)  # B00000's commissioning and packing: sent, the ack lost
    second = outbox.cut(2, sending=True)  # B00001's two events: the receiver judged them invalid
    assert first is not None and second is not None
    outbox.mark_acked(second.id, "invalid: schema")
    codes = {"B00000": "self", "B00001": "self"}
    with floor.ledger.lock:
        before = {e.code: e for e in deliveries(floor.ledger.conn, codes)}
    assert before["B00000"].state is Delivery.DELIVERED and before["B00000"].attempts == 1
    assert (before["B00001"].state, before["B00001"].outcome) == (Delivery.ACKED, "invalid: schema")
    assert outbox.resend_since(0.0, 500) == 4  # an operator's `sync resend`: one batch over all four
    resend = outbox.unacked(10)[-1]
    outbox.mark_sent(resend.id)
    outbox.mark_acked(resend.id, "stored")
    with floor.ledger.lock:
        after = {e.code: e for e in deliveries(floor.ledger.conn, codes)}
    assert (after["B00000"].state, after["B00000"].batch, after["B00000"].outcome) == \
        (Delivery.ACKED, resend.id, "stored")
    assert after["B00000"].attempts == 2  # the first publish and the resend
    assert summary(after.values()) == {"pending": 0, "delivered": 0, "acked": 2}
    outbox.close()
    floor.ledger.close()


def test_a_bottle_decommissioned_with_its_box_shows_that_event(tmp_path: Path) -> None:
    floor = make_floor(tmp_path / "ledger.db")
    floor.agg.pack("box", "B00000", ["I00000", "I00001"], durable=True)
    assert operations.decommission(floor.agg, "B00000", recursive=True) == 3
    with floor.ledger.lock:
        events = deliveries(floor.ledger.conn, {"I00001": "self"})
        filed = [tuple(r) for r in floor.ledger.conn.execute(
            "SELECT code FROM events WHERE kind = 'aggregation.decommission'")]
    assert len(filed) == 1 and filed[0] != ("I00001",)  # one event for the box and its bottles, filed under one
    with floor.ledger.lock:
        box = deliveries(floor.ledger.conn, {"B00000": "self"})
    assert [(e.kind, e.code, e.relation, e.state) for e in events] == \
        [("aggregation.decommission", "I00001", "self", Delivery.PENDING)]
    assert [(e.kind, e.code) for e in box] == [("aggregation.commission", "B00000"), ("aggregation.add", "B00000"),
                                             ("aggregation.delete", "B00000"), ("aggregation.decommission", "B00000")]
    floor.ledger.close()
