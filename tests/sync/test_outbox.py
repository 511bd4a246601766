"""Outbox bookkeeping on a real ledger file: one commit per new batch, one per poll's acks, and
events rebuilt from the journal with their eventIDs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent.epcis import commissioning_event, epc_for, event_hash
from agent.ledger import Ledger
from agent.sync.outbox import Outbox, OutboxError
from tests.sync.conftest import CTX, fill


def _row(ledger: Path, batch_id: int) -> tuple[object, ...]:
    conn = sqlite3.connect(ledger)
    row = conn.execute("SELECT sent_at, attempts, acked_at, outcome FROM sync_batches WHERE id = ?",
                       (batch_id,)).fetchone()
    conn.close()
    return tuple(row)


def test_a_batch_cut_for_sending_records_its_first_publish(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    fill(ledger, 30)
    ob = Outbox(ledger)
    quiet = ob.cut(10)
    sending = ob.cut(10, sending=True)
    assert quiet is not None and sending is not None
    assert (quiet.attempts, sending.attempts) == (0, 0)  # attempts before this publish
    assert _row(ledger, quiet.id)[:2] == (None, 0)
    sent_at, attempts, _, _ = _row(ledger, sending.id)
    assert sent_at is not None and attempts == 1
    assert (sending.first_seq, sending.events) == (quiet.last_seq + 1, 10)
    ob.close()


def test_acks_of_one_poll_are_recorded_together_and_duplicates_told_apart(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    fill(ledger, 30)
    ob = Outbox(ledger)
    a, b, c = (ob.cut(10) for _ in range(3))
    assert a and b and c
    assert not ob.drained()
    assert ob.mark_acked_many([(a.id, "stored"), (b.id, "invalid: no"), (a.id, "stored")]) == [True, True, False]
    assert ob.mark_acked_many([]) == []
    assert _row(ledger, b.id)[3] == "invalid: no" and _row(ledger, c.id)[2] is None
    assert [x.id for x in ob.unacked(10)] == [c.id]
    assert not ob.drained()
    ob.mark_acked(c.id, "stored")
    assert ob.drained() and ob.backlog().undelivered_events == 0
    ob.resend_since(0.0, 10)  # re-sent batches are duplicates: they never make the backlog undrained
    assert ob.drained() and ob.backlog().open_batches == 0
    ob.close()


def test_events_keep_a_producers_event_id_and_hash_the_rest(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    with_id = commissioning_event(CTX, [epc_for("CODE1")], at=1.8e9, lot="L1")
    without_id = commissioning_event(CTX, [epc_for("CODE2")], at=1.8e9, lot="L1")
    with_id["eventID"] = "urn:uuid:00000000-0000-4000-8000-000000000001"  # a producer's own ID stays
    del without_id["eventID"]  # a producer that leaves the eventID to the uplink
    with Ledger(ledger) as led:
        for event in (with_id, without_id):
            led.append_event("item.commissioned", {"epcis": event}, uplink=True)
        led.commit()
    ob = Outbox(ledger)
    batch = ob.cut(10)
    assert batch is not None
    events = list(ob.events(batch))
    assert [e["eventID"] for e in events] == [with_id["eventID"], event_hash(without_id)]
    ob.close()


@pytest.mark.parametrize("payload", ["not json", json.dumps({"other": 1}), json.dumps({"epcis": "text"})])
def test_a_row_that_is_no_event_is_named_by_its_seq(tmp_path: Path, payload: str) -> None:
    ledger = tmp_path / "ledger.db"
    with Ledger(ledger) as led, led.atomic(durable=True) as conn:
        conn.execute("INSERT INTO events(at, kind, uplink, payload) VALUES (1.0, 'x', 1, ?)", (payload,))
    ob = Outbox(ledger)
    batch = ob.cut(10)
    assert batch is not None
    with pytest.raises(OutboxError, match=f"seq {batch.first_seq}"):
        list(ob.events(batch))
    ob.close()
