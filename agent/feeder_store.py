"""The feeder's durable memory: which code went to which coder under which seq (ledger migration 5).

Why it lives in the ledger and not in the feeder object: after a kill -9 of the agent, a new feeder
must still know which codes sit in a coder's FIFO, and under which seq the coder reports them, or it
could not tell printed codes from in-doubt ones. Every write here is in the same SQLite file as the
code states, inside the same transaction, so the seq mapping and the `sent` state can never disagree.

All functions are synchronous (SQLite); the async feeder calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.ledger import CodeState, Group, Ledger, LedgerError
from agent.ledger.store import Receipt

# States that count towards a job's target: the item carries the code.
_DONE = ("printed", "verified", "rejected")


@dataclass(frozen=True, slots=True)
class Mark:
    """Everything up to `settled_seq` is settled; `print_count` is the coder's counter at that moment."""

    settled_seq: int
    print_count: int | None


@dataclass(frozen=True, slots=True)
class Progress:
    done: int  # printed (or later states): on a product
    sent: int  # in some coder's FIFO, not yet confirmed
    allocated: int  # reserved for the job, not yet sent
    target: int

    @property
    def needed(self) -> int:
        """Codes still to push so that, if all print, the job reaches its target exactly."""
        return max(0, self.target - self.done - self.sent)


def next_seq(ledger: Ledger, coder: str) -> int:
    """One more than the highest seq ever used for `coder`: seqs are never reused, even after a crash."""
    with ledger.lock:
        row = ledger.conn.execute(
            "SELECT MAX(seq) FROM coder_feed WHERE coder = ?", (coder,)
        ).fetchone()
        mark = get_mark(ledger, coder)
    high = max(int(row[0] or 0), mark.settled_seq if mark else 0)
    return high + 1


def progress(ledger: Ledger, job: int) -> Progress:
    """How far the job is, counting only codes of the job's own level (the ones printed on items).

    Why the level filter: aggregation allocates box, case and pallet codes to the same job, and
    counting them made a packing job stop short of its target (a 120-item job printed 112). A code
    the verify station voided because no read proved its print (agent.verify.station) still sat on
    an item that was judged, so it counts as done too: the item was made, and it left at the gate
    like any other reject.
    """
    with ledger.lock:
        row = ledger.conn.execute("SELECT target_qty, level FROM jobs WHERE id = ?", (job,)).fetchone()
        if row is None:
            raise LedgerError(f"no job with id {job}")
        counts = dict(
            ledger.conn.execute(
                "SELECT state, COUNT(*) FROM codes WHERE job = ? AND level = ? GROUP BY state", (job, row[1])
            ).fetchall()
        )
        judged_void = ledger.conn.execute(
            "SELECT COUNT(*) FROM codes c WHERE c.job = ? AND c.state = 'voided' AND c.level = ? "
            "AND EXISTS (SELECT 1 FROM items i WHERE i.code = c.id)", (job, row[1])
        ).fetchone()[0]
    return Progress(
        done=sum(int(counts.get(s, 0)) for s in _DONE) + int(judged_void),
        sent=int(counts.get("sent", 0)),
        allocated=int(counts.get("allocated", 0)),
        target=int(row[0]),
    )


def refresh(ledger: Ledger, job: int, last: Progress) -> Progress:
    """`last` with its sent and allocated counts re-read: both are small sets (an index range), so
    this is cheap at every tick, while `progress` counts the whole job and runs only now and then."""
    with ledger.lock:
        counts = dict(ledger.conn.execute(
            "SELECT state, COUNT(*) FROM codes WHERE job = ? AND state IN ('sent', 'allocated') "
            "AND level = (SELECT level FROM jobs WHERE id = ?) GROUP BY state", (job, job)).fetchall())
    return Progress(done=last.done, sent=int(counts.get("sent", 0)),
                    allocated=int(counts.get("allocated", 0)), target=last.target)


def allocated_codes(ledger: Ledger, job: int, limit: int) -> list[str]:
    """The job's reserved, never-sent codes of its own level, oldest first (shared by every coder on
    the job); parent codes aggregation allocated to the job are for labels, never for this coder."""
    with ledger.lock:
        rows = ledger.conn.execute(
            "SELECT code FROM codes WHERE job = ? AND state = 'allocated' "
            "AND level = (SELECT level FROM jobs WHERE id = ?) ORDER BY id LIMIT ?",
            (job, job, limit),
        ).fetchall()
    return [r[0] for r in rows]


def available_count(ledger: Ledger, level: str) -> int:
    with ledger.lock:
        row = ledger.conn.execute(
            "SELECT COUNT(*) FROM codes WHERE level = ? AND state IN ('available', 'returned')", (level,)
        ).fetchone()
    return int(row[0])


def record_sent(ledger: Ledger, coder: str, job: int, batch: Sequence[tuple[int, str]]) -> None:
    """Mark `batch` (seq, code) sent to `coder` and remember the seqs; durable when this returns.

    This is the step that must finish before any byte leaves: the commit is the promise that the
    code is spent, so a crash after it can only make the code in doubt, never send it twice.
    """
    if not batch:
        return
    now = time.time()
    with ledger.atomic(durable=True) as conn:
        conn.executemany(
            "INSERT INTO coder_feed(coder, seq, code, job, sent_at) "
            "SELECT ?, ?, id, ?, ? FROM codes WHERE code = ?",
            [(coder, seq, job, now, code) for seq, code in batch],
        )
        ledger.transition_many(
            [code for _, code in batch], CodeState.SENT, expect=CodeState.ALLOCATED,
            kind="codes.sent", job=job,
        )
        ledger.append_event(
            "coder.pushed", {"coder": coder, "first_seq": batch[0][0], "last_seq": batch[-1][0],
                             "count": len(batch)}, job=job,
        )


def open_records(ledger: Ledger, coder: str) -> list[tuple[int, str]]:
    """(seq, code) of every code this coder holds or may hold: sent and not yet settled."""
    with ledger.lock:
        rows = ledger.conn.execute(
            "SELECT f.seq, c.code FROM coder_feed f JOIN codes c ON c.id = f.code "
            "WHERE f.coder = ? AND c.state = 'sent' ORDER BY f.seq",
            (coder,),
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def confirm_upto(ledger: Ledger, coder: str, last_printed: int, *, print_count: int | None = None) -> int:
    """Every open record of `coder` with seq <= last_printed is printed (FIFO order); returns how many.

    With `print_count` (the coder's own product counter) the claim is checked first: since the last
    mark the coder cannot have printed more of our records than its counter went up. A driver that
    matches "last printed index" against indexes that wrap can mistake records lost in a cleared
    FIFO for printed ones; the counter cannot. Such a claim raises CounterMismatch and confirms
    nothing, so the caller reconciles and the codes end in doubt, never falsely printed.
    """
    floors = _floors.setdefault(ledger, {})
    floor, group = floors.get(coder, (0, None))
    if group is not None and group.failed:  # the confirmations behind the floor were rolled back
        floors.pop(coder, None)
        floor = 0  # rescan from the start: slower once, never wrong
    with ledger.lock:
        rows = ledger.conn.execute(
            "SELECT c.code, f.job, f.seq FROM coder_feed f JOIN codes c ON c.id = f.code "
            "WHERE f.coder = ? AND f.seq > ? AND f.seq <= ? AND c.state = 'sent' ORDER BY f.seq",
            (coder, floor, last_printed),
        ).fetchall()
        if rows and print_count is not None:
            mark = get_mark(ledger, coder)
            if mark is not None and mark.print_count is not None:
                # Seqs after a mark are contiguous and confirmed as a prefix, so everything between
                # the mark and the first still-open seq is what was confirmed since the mark.
                confirmed = max(0, int(rows[0][2]) - 1 - mark.settled_seq)
                allowed = print_count - mark.print_count - confirmed
                if len(rows) > allowed:
                    raise CounterMismatch(
                        f"coder {coder}: the driver reports seq {last_printed} printed, which would "
                        f"confirm {len(rows)} more records, but the coder's counter allows {allowed} "
                        f"(counter {print_count}, {mark.print_count} at the last reconcile)"
                    )
        confirmed, commit = _confirm(ledger, rows)
        if rows:  # never past a record we have seen: a claim beyond what was pushed moves nothing
            floors[coder] = (max(floor, int(rows[-1][2])), commit)
        return confirmed


# Per ledger and coder, a seq up to which no record is `sent` any more: every open record up to
# it was confirmed by an earlier call. It bounds confirm_upto's scan to what is still open, so the cost stays
# flat over a long job instead of growing with the coder's feed history. Held in memory only: a
# new process starts from 0 (slower once, never wrong), and records only ever leave `sent`. Beside it the
# commit group of the confirmations that moved it: if that group failed (the ledger rolled it back, the
# codes are `sent` again), the floor is dropped and the next call scans from 0, so a printed code is never
# skipped and later put in doubt.
_floors: weakref.WeakKeyDictionary[Ledger, dict[str, tuple[int, Group | None]]] = weakref.WeakKeyDictionary()


class CounterMismatch(LedgerError):
    """The coder's counter contradicts the printed records its driver reports."""


def confirm_by_count(ledger: Ledger, coder: str, mark: Mark, print_count: int) -> int:
    """Confirm by the coder's counter: the first (count - mark.count) records after the mark printed.

    Sound because a coder prints its FIFO in order and a FIFO loss only drops the unprinted tail. A
    counter that went backwards or ran past what was pushed is not trusted: nothing is confirmed,
    and reconciliation leaves those codes in doubt.
    """
    if mark.print_count is None:
        return 0
    delta = print_count - mark.print_count
    if delta <= 0:
        return 0
    with ledger.lock:
        rows = ledger.conn.execute(
            "SELECT c.code, f.job, c.state FROM coder_feed f JOIN codes c ON c.id = f.code "
            "WHERE f.coder = ? AND f.seq > ? ORDER BY f.seq LIMIT ?",
            (coder, mark.settled_seq, delta + 1),
        ).fetchall()
        if len(rows) < delta:
            return 0
        return _confirm(ledger, [r for r in rows[:delta] if r[2] == "sent"])[0]


def _confirm(ledger: Ledger, rows: Sequence[Any]) -> tuple[int, Group | None]:
    """Confirm `rows`; returns how many and the commit group they went into."""
    by_job: dict[int, list[str]] = {}
    for code, job, *_ in rows:
        by_job.setdefault(int(job), []).append(str(code))
    commit: Group | None = None
    with ledger.atomic():
        for job, codes in by_job.items():
            receipt = ledger.transition_many(codes, CodeState.PRINTED, expect=CodeState.SENT,
                                             kind="codes.printed", job=job)
            commit = receipt.commit
    return len(rows), commit


def settle_in_doubt(ledger: Ledger, coder: str, reason: str, print_count: int | None) -> list[str]:
    """Every still-open record of `coder` becomes in_doubt; then a new mark is set. Durable on return."""
    return settle(ledger, coder, reason, print_count, ()).in_doubt


@dataclass(frozen=True, slots=True)
class Settled:
    returned: list[str]  # proven flushed, never printed: back in the pool (sent -> returned)
    in_doubt: list[str]  # fate unknown: never sent again, voided unless a read proves them


def settle(ledger: Ledger, coder: str, reason: str, print_count: int | None,
           flushed: Sequence[int]) -> Settled:
    """Close every still-open record of `coder`: the seqs in `flushed` (the coder proved it discarded
    them unprinted) return to the pool, every other one goes in doubt; then a new mark is set.

    A returned code loses its coder_feed row (the journal keeps the push and the return), so it can be
    sent again under a new seq; UNIQUE(code) still forbids two open pushes of one code. Durable on return.
    """
    with ledger.lock:  # one view: a print-complete confirm must not slip in between read and write
        rows = ledger.conn.execute(
            "SELECT f.seq, c.code, f.job FROM coder_feed f JOIN codes c ON c.id = f.code "
            "WHERE f.coder = ? AND c.state = 'sent' ORDER BY f.seq", (coder,)).fetchall()
        high = ledger.conn.execute("SELECT MAX(seq) FROM coder_feed WHERE coder = ?", (coder,)).fetchone()
        mark = get_mark(ledger, coder)
        settled = max(int(high[0] or 0), mark.settled_seq if mark else 0)
        proven = set(flushed)
        back: dict[int, list[str]] = {}
        doubt: dict[int, list[str]] = {}
        back_seqs: list[int] = []
        order: tuple[list[str], list[str]] = ([], [])
        for seq, code, job in rows:
            if int(seq) in proven:
                back.setdefault(int(job), []).append(str(code))
                back_seqs.append(int(seq))
                order[0].append(str(code))
            else:
                doubt.setdefault(int(job), []).append(str(code))
                order[1].append(str(code))
        with ledger.atomic() as conn:
            for job, codes in back.items():
                ledger.transition_many(codes, CodeState.RETURNED, expect=CodeState.SENT,
                                       kind="codes.returned", job=job)
            if back_seqs:
                conn.executemany("DELETE FROM coder_feed WHERE coder = ? AND seq = ?",
                                 [(coder, seq) for seq in back_seqs])
                ledger.append_event("coder.flushed", {"coder": coder, "reason": reason, "seqs": back_seqs},
                                    uplink=False)
            for job, codes in doubt.items():
                ledger.transition_many(codes, CodeState.IN_DOUBT, expect=CodeState.SENT,
                                       kind="codes.in_doubt", job=job)
            conn.execute(
                "INSERT INTO coder_marks(coder, settled_seq, print_count, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(coder) DO UPDATE SET settled_seq = excluded.settled_seq, "
                "print_count = excluded.print_count, at = excluded.at",
                (coder, settled, print_count, time.time()),
            )
            ledger.append_event("coder.reconciled", {"coder": coder, "reason": reason, "in_doubt": len(order[1]),
                                                     "returned": len(back_seqs), "settled_seq": settled,
                                                     "print_count": print_count}, uplink=False)
        ledger.commit()
    return Settled(order[0], order[1])


def get_mark(ledger: Ledger, coder: str) -> Mark | None:
    with ledger.lock:
        row = ledger.conn.execute(
            "SELECT settled_seq, print_count FROM coder_marks WHERE coder = ?", (coder,)
        ).fetchone()
    if row is None:
        return None
    return Mark(int(row[0]), None if row[1] is None else int(row[1]))


def void_in_doubt(ledger: Ledger, job: int) -> int:
    """Void every in-doubt code of `job` (at job close, once no camera read can prove them)."""
    with ledger.lock:
        codes = [r[0] for r in ledger.conn.execute(
            "SELECT code FROM codes WHERE job = ? AND state = 'in_doubt' ORDER BY id", (job,))]
    with ledger.atomic():
        ledger.transition_many(codes, CodeState.VOIDED, expect=CodeState.IN_DOUBT,
                               kind="codes.voided", job=job)
    ledger.commit()
    return len(codes)


def void_unprintable(ledger: Ledger, code: str, *, coder: str, job: int, reason: str) -> Receipt:
    """An allocated code this coder cannot print (its text does not render, or the protocol cannot
    carry it): voided before anything is sent, with the reason in the journal. Never `sent`, so it
    is never in doubt and never takes a seq; another code of the job takes its item."""
    receipt = ledger.transition(code, CodeState.VOIDED, expect=CodeState.ALLOCATED, kind="codes.unprintable",
                                payload={"coder": coder, "reason": reason}, job=job)
    ledger.commit()
    return receipt


def prove_printed(ledger: Ledger, code: str, *, evidence: str = "camera read") -> Receipt:
    """A camera read proves an in-doubt code is on a product: it becomes printed after all."""
    receipt = ledger.transition(code, CodeState.PRINTED, expect=CodeState.IN_DOUBT,
                                kind="codes.proven_printed", payload={"evidence": evidence})
    ledger.commit()
    return receipt


def coder_of(ledger: Ledger, code: str) -> tuple[str, int] | None:
    """(coder, seq) a code was pushed under, or None if it never left for a coder."""
    with ledger.lock:
        row = ledger.conn.execute(
            "SELECT f.coder, f.seq FROM coder_feed f JOIN codes c ON c.id = f.code WHERE c.code = ?",
            (code,),
        ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))
