"""The receiver's stores keep an eventID once, in one transaction per batch: SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.epcis import commissioning_event, document
from agent.receiver.service import Receiver
from agent.receiver.store import EventStore, PostgresStore, SqliteStore, open_store
from tests.sync.conftest import CTX

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _events(n: int, start: int = 0) -> list[dict[str, Any]]:
    events = [commissioning_event(CTX, [f"urn:example:lineagent:code:{i}"], at=1.8e9 + i)
              for i in range(start, start + n)]
    doc = document(events)
    return list(doc["epcisBody"]["eventList"])


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server reachable at {PG}: {exc}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def _check(store: EventStore) -> None:
    first = _events(50)
    assert store.store("s1", "L1", 1, first) == (50, 0)
    assert store.store("s1", "L1", 1, first) == (0, 50)  # a re-sent batch
    assert store.store("s1", "L1", 2, first[40:] + _events(10, start=50)) == (10, 10)
    assert store.count() == 60
    assert store.store("s1", "L1", 3, []) == (0, 0)
    later = _events(5, start=60)  # a group in one transaction, counted per batch
    assert store.store_many([("s1", "L1", 4, later), ("s1", "L1", 5, later)]) == [(5, 0), (0, 5)]
    assert store.count() == 65


def _order(rows: list[tuple[str, int, int]], batches: list[list[dict[str, Any]]]) -> None:
    """Rows are inserted sorted by eventID; (batch, pos) must still give back the line's order."""
    expected = [(e["eventID"], b, i) for b, events in enumerate(batches) for i, e in enumerate(events)]
    assert sorted(rows, key=lambda r: (r[1], r[2])) == expected


def test_sqlite_store_keeps_each_event_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "r.db"))
    assert isinstance(store, SqliteStore)
    _check(store)


def test_stores_keep_the_lines_order_in_batch_and_pos(tmp_path: Path, pg_dsn: str) -> None:
    batches = [_events(30, start=100), _events(30, start=200)]
    for store in (SqliteStore(tmp_path / "o.db"), PostgresStore(pg_dsn)):
        for b, events in enumerate(batches):
            store.store("s1", "L1", b, events)
        conn = store.conn
        cur = conn.execute("SELECT event_id, batch, pos FROM epcis_events")
        _order([(str(r[0]), int(r[1]), int(r[2])) for r in cur.fetchall()], batches)
        store.close()


def test_postgres_store_keeps_each_event_once(pg_dsn: str) -> None:
    store = open_store(pg_dsn)
    assert isinstance(store, PostgresStore)
    _check(store)
    store.close()


def test_receiver_acks_invalid_documents_as_invalid(tmp_path: Path) -> None:
    r = Receiver("mqtt://127.0.0.1:1", SqliteStore(tmp_path / "r.db"))
    doc = document(_events(2))
    doc["epcisBody"]["eventList"][1]["action"] = "ADDED"
    ack = r.handle("s1", "L1", json.dumps(doc).encode(), {"batch": "7"})
    assert (ack["batch"], ack["status"]) == (7, "invalid") and "action" in ack["error"]
    ack = r.handle("s1", "L1", b"\x78\x9c garbage", {"batch": "8", "content-encoding": "deflate"})
    assert ack["status"] == "invalid"
    assert r.store.count() == 0


def test_sqlite_group_of_batches_is_one_transaction_with_counts_per_batch(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db")
    a, b = _events(20), _events(20, start=10)
    counts = store.store_many([("s1", "L1", 1, a), ("s1", "L1", 2, a), ("s1", "L1", 3, b)])
    assert counts == [(20, 0), (0, 20), (10, 10)]
    assert store.count() == 30
    broken = [dict(e) for e in _events(5, start=100)]
    del broken[3]["type"]
    with pytest.raises(KeyError):
        store.store_many([("s1", "L1", 4, _events(5, start=200)), ("s1", "L1", 5, broken)])
    assert store.count() == 30  # the whole group rolled back: nothing of batch 4 is kept either
    assert store.store_many([]) == []


def test_receiver_group_acks_each_batch_in_order_and_stores_only_valid_ones(tmp_path: Path) -> None:
    r = Receiver("mqtt://127.0.0.1:1", SqliteStore(tmp_path / "r.db"))
    good, again = document(_events(3)), document(_events(4, start=2))
    bad = document(_events(2, start=50))
    bad["epcisBody"]["eventList"][0]["action"] = "ADDED"
    acks = r.handle_many([("s1", "L1", json.dumps(d).encode(), {"batch": str(i)})
                          for i, d in enumerate((good, bad, again), start=1)])
    assert [(a["batch"], a["status"]) for a in acks] == [(1, "stored"), (2, "invalid"), (3, "stored")]
    assert (acks[0]["stored"], acks[0]["duplicates"]) == (3, 0)
    assert (acks[2]["stored"], acks[2]["duplicates"]) == (3, 1)  # one event already stored by batch 1
    assert r.store.count() == 6
