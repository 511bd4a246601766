"""Where the reference receiver keeps events: SQLite or PostgreSQL, one row per eventID.

Why the eventID is the primary key: the agent re-sends batches whose ack it did not see, so the same
event arrives again after every outage; `ON CONFLICT DO NOTHING` on the CBV hash makes the second copy
a no-op, inside the same transaction as the rest of the batch, before the ack is sent.

Why `store_many`: the receiver commits every batch waiting for it in one transaction (group commit),
then acks each. A commit syncs the WAL, and on a backlog drain the per-batch commit was the largest
single cost (about a third of the receiver's time in bench.sync, most of it kernel time); each batch
still gets its own counts and its own ack, and none is acked before the commit that holds it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from agent.epcis import jsonio

_COLUMNS = "event_id, site, line, batch, pos, event_type, event_time, body, received_at"
_DDL = """
CREATE TABLE IF NOT EXISTS epcis_events (
    event_id    TEXT PRIMARY KEY,
    site        TEXT NOT NULL,
    line        TEXT NOT NULL,
    batch       BIGINT NOT NULL,   -- the agent's batch number: (batch, pos) is the line's order
    pos         INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    event_time  TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
)
"""


CACHE_KIB = 65536
CHECKPOINT_PAGES = 10000  # ~40 MB of WAL between checkpoints
_PG_INSERT = (
    f"INSERT INTO epcis_events({_COLUMNS}) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
    "%s::bigint[], %s::integer[], %s::text[], %s::text[], %s::text[], %s::double precision[]) "
    "ON CONFLICT (event_id) DO NOTHING"
)


# (site, line, batch number, events) of one received batch
BatchRows = tuple[str, str, int, Sequence[dict[str, Any]]]


class EventStore(Protocol):
    def store(self, site: str, line: str, batch: int, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Store a batch atomically; returns (new events, duplicates ignored)."""
        ...

    def store_many(self, batches: Sequence[BatchRows]) -> list[tuple[int, int]]:
        """Store several batches in one transaction; per batch (new events, duplicates ignored)."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def _rows(site: str, line: str, batch: int, events: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows in eventID order: consecutive inserts then walk neighbouring index pages, not random ones.

    (batch, pos) keeps the line's order, so the insert order is free to choose.
    """
    now = time.time()
    rows = [
        (e["eventID"], site, line, batch, i, e["type"], e["eventTime"], jsonio.dumps(e).decode(), now)
        for i, e in enumerate(events)
    ]
    rows.sort(key=_by_event_id)
    return rows


def _by_event_id(row: tuple[Any, ...]) -> str:
    return str(row[0])


_INSERT = f"INSERT INTO epcis_events({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING"


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # Each commit still syncs the WAL (the ack follows the commit, so a stored event is on disk).
        # A larger page cache and a rarer checkpoint keep the eventID index's hot pages in memory
        # and write each index page back once per many batches instead of once per few: about a
        # fifth less CPU per stored event on a growing table.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        self.conn.execute(_DDL)

    def store(self, site: str, line: str, batch: int, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
        return self.store_many([(site, line, batch, events)])[0]

    def store_many(self, batches: Sequence[BatchRows]) -> list[tuple[int, int]]:
        if not batches:
            return []
        counts = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for site, line, batch, events in batches:
                new = self.conn.executemany(_INSERT, _rows(site, line, batch, events)).rowcount
                counts.append((new, len(events) - new))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return counts

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM epcis_events").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class PostgresStore:
    def __init__(self, dsn: str) -> None:
        import psycopg  # imported here: only the PostgreSQL path needs it

        self.conn = psycopg.connect(dsn, autocommit=False)
        with self.conn.cursor() as cur:
            cur.execute(_DDL)
        self.conn.commit()

    def store(self, site: str, line: str, batch: int, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
        return self.store_many([(site, line, batch, events)])[0]

    def store_many(self, batches: Sequence[BatchRows]) -> list[tuple[int, int]]:
        counts = []
        with self.conn.cursor() as cur:
            try:
                # One statement per batch (unnest of arrays): per-row round trips would cap a
                # remote database at a few thousand events/s.
                for site, line, batch, events in batches:
                    new = 0
                    if events:
                        columns = zip(*_rows(site, line, batch, events), strict=True)
                        cur.execute(_PG_INSERT, [list(c) for c in columns])
                        new = cur.rowcount
                    counts.append((new, len(events) - new))
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
        return counts

    def count(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM epcis_events")
            row = cur.fetchone()
        self.conn.commit()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


def open_store(db: str) -> EventStore:
    """`postgresql://...` -> PostgreSQL; anything else is a SQLite file path."""
    if db.startswith(("postgresql://", "postgres://")):
        return PostgresStore(db)
    return SqliteStore(db)
