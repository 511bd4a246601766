"""Delivery state of the transactional outbox: batches cut from the journal, sent, acked.

Why batches are fixed seq ranges of the append-only journal: after a crash, a lost ack or a broker
restart, a batch is rebuilt from the ledger to exactly the same events and eventIDs, so the receiver
recognises every re-sent event. Nothing here deletes: an event leaves the backlog only when the
receiver's ack for its batch is recorded.

The outbox has its own SQLite connection to the ledger file (WAL), so the uplink never waits on the
line's group commit and the line never waits on the network.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.epcis import event_hash, jsonio
from agent.ledger.schema import migrate


class OutboxError(RuntimeError):
    """An outbox row that cannot become an EPCIS event; the message names the journal seq."""


@dataclass(frozen=True, slots=True)
class Batch:
    id: int
    first_seq: int
    last_seq: int
    events: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Backlog:
    undelivered_events: int  # in unacked batches plus not yet batched
    unbatched_events: int
    open_batches: int
    oldest_undelivered_at: float | None
    delivered_last_minute: int


class Outbox:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    # ---- cutting batches ----------------------------------------------------------------------

    def cursor(self) -> int:
        row = self.conn.execute("SELECT value FROM sync_state WHERE key = 'cursor'").fetchone()
        return int(row[0]) if row else 0

    def pending(self, limit: int) -> tuple[int, int | None]:
        """How many unbatched uplink events wait (up to limit), and the journal seq of the oldest.

        The seq, not its wall time: the uplink measures how long an event has waited on its own
        monotonic clock from when it first saw that seq (the journal's `at` may jump with the clock)."""
        rows = self.conn.execute(
            "SELECT count(*), min(seq) FROM (SELECT seq FROM events WHERE uplink = 1 AND seq > ? ORDER BY seq LIMIT ?)",
            (self.cursor(), limit),
        ).fetchone()
        return int(rows[0]), rows[1]

    def cut(self, max_events: int, *, sending: bool = False) -> Batch | None:
        """Put the next up to max_events unbatched events into a new batch, durably.

        `sending` records the first publish in the same transaction (one commit per new batch, not
        two); the returned Batch still says 0 attempts, the count before that publish.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            start = self.cursor()
            count, first, last = self.conn.execute(
                "SELECT count(*), min(seq), max(seq) FROM "
                "(SELECT seq FROM events WHERE uplink = 1 AND seq > ? ORDER BY seq LIMIT ?)",
                (start, max_events),
            ).fetchone()
            if not count:
                self.conn.execute("ROLLBACK")
                return None
            now = time.time()
            cur = self.conn.execute(
                "INSERT INTO sync_batches(first_seq, last_seq, events, created_at, sent_at, attempts) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (first, last, count, now, now if sending else None, 1 if sending else 0),
            )
            self.conn.execute(
                "INSERT INTO sync_state(key, value) VALUES ('cursor', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(last),),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return Batch(int(cur.lastrowid or 0), int(first), int(last), int(count), 0)

    # ---- sending and acks ---------------------------------------------------------------------

    def unacked(self, limit: int) -> list[Batch]:
        rows = self.conn.execute(
            "SELECT id, first_seq, last_seq, events, attempts FROM sync_batches WHERE acked_at IS NULL "
            "ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [Batch(*r) for r in rows]

    def events(self, batch: Batch) -> Iterator[dict[str, Any]]:
        """The batch's EPCIS events, each with its eventID, in journal order."""
        for seq, payload in self.conn.execute(
            "SELECT seq, payload FROM events WHERE uplink = 1 AND seq BETWEEN ? AND ? ORDER BY seq",
            (batch.first_seq, batch.last_seq),
        ):
            try:
                event = jsonio.loads(payload)["epcis"]
            except (ValueError, KeyError, TypeError) as exc:
                raise OutboxError(f"outbox event seq {seq} has no EPCIS event under payload key 'epcis'") from exc
            if not isinstance(event, dict):
                raise OutboxError(f"outbox event seq {seq}: payload key 'epcis' holds {type(event).__name__}, "
                                  "not an EPCIS event object")
            if not event.get("eventID"):  # parsed just now, so ours to complete in place
                event["eventID"] = event_hash(event)
            yield event

    def mark_sent(self, batch_id: int) -> None:
        self.conn.execute(
            "UPDATE sync_batches SET sent_at = ?, attempts = attempts + 1 WHERE id = ?", (time.time(), batch_id)
        )

    def mark_acked(self, batch_id: int, outcome: str) -> bool:
        """Record the receiver's ack; False when the batch was already acked (a duplicate ack)."""
        return self.mark_acked_many([(batch_id, outcome)])[0]

    def mark_acked_many(self, acks: Sequence[tuple[int, str]]) -> list[bool]:
        """Record several acks in one transaction: one commit for all acks taken in one network poll.

        Per ack: True when it delivered its batch, False for a duplicate (already acked).
        """
        if not acks:
            return []
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            fresh = [
                self.conn.execute(
                    "UPDATE sync_batches SET acked_at = ?, outcome = ? WHERE id = ? AND acked_at IS NULL",
                    (now, outcome, batch_id),
                ).rowcount == 1
                for batch_id, outcome in acks
            ]
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return fresh

    def resend_since(self, since: float, max_events: int) -> int:
        """Queue already delivered events written at or after `since` again; the receiver skips them."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = self.cursor()
            seqs = [
                int(r[0])
                for r in self.conn.execute(
                    "SELECT seq FROM events WHERE uplink = 1 AND at >= ? AND seq <= ? ORDER BY seq", (since, cursor)
                )
            ]
            now = time.time()
            for i in range(0, len(seqs), max_events):
                chunk = seqs[i : i + max_events]
                self.conn.execute(
                    "INSERT INTO sync_batches(first_seq, last_seq, events, created_at, resend) VALUES (?, ?, ?, ?, 1)",
                    (chunk[0], chunk[-1], len(chunk), now),
                )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return len(seqs)

    # ---- reporting ----------------------------------------------------------------------------

    def drained(self) -> bool:
        """Nothing left to deliver: `backlog()` would say 0 undelivered and 0 open batches.

        Two EXISTS probes on the indexes instead of counting the backlog, because drain loops ask
        this often while a million events may still wait.
        """
        row = self.conn.execute(
            "SELECT EXISTS(SELECT 1 FROM events WHERE uplink = 1 AND seq > ?), "
            "EXISTS(SELECT 1 FROM sync_batches WHERE acked_at IS NULL AND resend = 0)",
            (self.cursor(),),
        ).fetchone()
        return not row[0] and not row[1]

    def backlog(self) -> Backlog:
        cursor = self.cursor()
        unbatched, oldest_unbatched = self.conn.execute(
            "SELECT count(*), min(at) FROM events WHERE uplink = 1 AND seq > ?", (cursor,)
        ).fetchone()
        open_events, open_batches, first_open = self.conn.execute(
            "SELECT coalesce(sum(events), 0), count(*), min(first_seq) FROM sync_batches "
            "WHERE acked_at IS NULL AND resend = 0"
        ).fetchone()
        oldest = oldest_unbatched
        if first_open is not None:
            row = self.conn.execute("SELECT at FROM events WHERE seq = ?", (first_open,)).fetchone()
            oldest = row[0] if row else oldest
        recent = self.conn.execute(
            "SELECT coalesce(sum(events), 0) FROM sync_batches WHERE acked_at >= ? AND resend = 0",
            (time.time() - 60.0,),
        ).fetchone()[0]
        return Backlog(
            undelivered_events=int(unbatched) + int(open_events),
            unbatched_events=int(unbatched),
            open_batches=int(open_batches),
            oldest_undelivered_at=oldest,
            delivered_last_minute=int(recent),
        )
