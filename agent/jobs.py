"""Jobs (work orders): create, start, stop, finish. Finishing returns unused codes to the pool.

A job names the product (GTIN, name), lot, expiry, target quantity, the packing spec and the code
template; it prints codes of one level on items. States are explicit and move only forward, except
running <-> stopped.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from agent.ledger import CodeState, Ledger, LedgerError


class JobState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"  # the line halted for a while; `job start` resumes it (a restart does not)
    STOPPED = "stopped"
    FINISHED = "finished"


JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.CREATED: frozenset({JobState.RUNNING, JobState.FINISHED}),
    JobState.RUNNING: frozenset({JobState.PAUSED, JobState.STOPPED, JobState.FINISHED}),
    JobState.PAUSED: frozenset({JobState.RUNNING, JobState.STOPPED, JobState.FINISHED}),
    JobState.STOPPED: frozenset({JobState.RUNNING, JobState.FINISHED}),
    JobState.FINISHED: frozenset(),
}


class JobError(LedgerError):
    pass


class JobNotFound(JobError):
    """No job by that name or id (the CLI exits 4, "not found")."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    gtin: str
    product_name: str
    lot: str
    target_qty: int
    level: str = "item"
    expiry: date | None = None
    packing_spec: str | None = None
    template: str = "raw"


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    gtin: str
    product_name: str
    lot: str
    expiry: date | None
    target_qty: int
    level: str
    packing_spec: str | None
    template: str
    state: JobState

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"], name=row["name"], gtin=row["gtin"], product_name=row["product_name"],
            lot=row["lot"], expiry=date.fromisoformat(row["expiry"]) if row["expiry"] else None,
            target_qty=row["target_qty"], level=row["level"], packing_spec=row["packing_spec"],
            template=row["template"], state=JobState(row["state"]),
        )


@dataclass(frozen=True)
class FinishReport:
    returned: int  # allocated, never sent: back to the pool
    in_doubt: int  # sent, never confirmed: must not be used again


def create_job(ledger: Ledger, spec: JobSpec) -> int:
    if spec.target_qty <= 0:
        raise JobError(f"job {spec.name!r}: target quantity must be positive, got {spec.target_qty}")
    with ledger.atomic(durable=True) as conn:
        try:
            cur = conn.execute(
                "INSERT INTO jobs(name, gtin, product_name, lot, expiry, target_qty, level, packing_spec,"
                " template, state, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (spec.name, spec.gtin, spec.product_name, spec.lot,
                 spec.expiry.isoformat() if spec.expiry else None, spec.target_qty, spec.level,
                 spec.packing_spec, spec.template, JobState.CREATED.value, time.time()),
            )
        except sqlite3.IntegrityError as exc:
            raise JobError(f"a job named {spec.name!r} already exists") from exc
        job_id = int(cur.lastrowid or 0)
        ledger.append_event("job.created", {"name": spec.name, "gtin": spec.gtin, "lot": spec.lot,
                                            "target_qty": spec.target_qty}, job=job_id)
    return job_id


def get_job(ledger: Ledger, ref: str | int) -> Job:
    with ledger.lock:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            row = ledger.conn.execute("SELECT * FROM jobs WHERE id = ? OR name = ?", (int(ref), str(ref))).fetchone()
        else:
            row = ledger.conn.execute("SELECT * FROM jobs WHERE name = ?", (ref,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job {ref!r}")
    return Job.from_row(row)


def list_jobs(ledger: Ledger) -> list[Job]:
    with ledger.lock:
        rows = ledger.conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()
    return [Job.from_row(r) for r in rows]


def _move(ledger: Ledger, job: Job, target: JobState, *, durable: bool = True) -> None:
    if target not in JOB_TRANSITIONS[job.state]:
        raise JobError(f"job {job.name!r} is {job.state}; it cannot go to {target}")
    column = {JobState.RUNNING: "started_at", JobState.FINISHED: "finished_at"}.get(target)
    with ledger.atomic(durable=durable) as conn:
        conn.execute("UPDATE jobs SET state = ? WHERE id = ?", (target.value, job.id))
        if column:
            conn.execute(f"UPDATE jobs SET {column} = COALESCE({column}, ?) WHERE id = ?", (time.time(), job.id))
        ledger.append_event(f"job.{target.value}", {"name": job.name}, job=job.id)


def start_job(ledger: Ledger, ref: str | int) -> Job:
    job = get_job(ledger, ref)
    with ledger.lock:
        other = ledger.conn.execute(
            "SELECT name FROM jobs WHERE state = 'running' AND level = ? AND id != ?", (job.level, job.id)
        ).fetchone()
    if other:
        raise JobError(f"job {other[0]!r} is already running on level {job.level!r}; stop it first")
    _move(ledger, job, JobState.RUNNING)
    return get_job(ledger, job.id)


def stop_job(ledger: Ledger, ref: str | int) -> Job:
    job = get_job(ledger, ref)
    _move(ledger, job, JobState.STOPPED)
    return get_job(ledger, job.id)


def pause_job(ledger: Ledger, ref: str | int) -> Job:
    job = get_job(ledger, ref)
    _move(ledger, job, JobState.PAUSED)
    return get_job(ledger, job.id)


def finish_job(ledger: Ledger, ref: str | int) -> FinishReport:
    """Finish: unused allocated codes go back to the pool; sent-but-unconfirmed codes go in doubt.

    Why in doubt and not returned: a code in a coder's FIFO may already be on a product when the job
    ends; returning it could print it twice. The feeder reconciles with the coder before this.
    """
    job = get_job(ledger, ref)
    if JobState.FINISHED not in JOB_TRANSITIONS[job.state]:
        raise JobError(f"job {job.name!r} is already {job.state}")
    with ledger.lock:
        allocated = [r[0] for r in ledger.conn.execute(
            "SELECT code FROM codes WHERE job = ? AND state = 'allocated' ORDER BY id", (job.id,))]
        sent = [r[0] for r in ledger.conn.execute(
            "SELECT code FROM codes WHERE job = ? AND state = 'sent' ORDER BY id", (job.id,))]
        with ledger.atomic():
            ledger.transition_many(allocated, CodeState.RETURNED, expect=CodeState.ALLOCATED,
                                   kind="codes.returned", job=job.id)
            ledger.transition_many(sent, CodeState.IN_DOUBT, expect=CodeState.SENT,
                                   kind="codes.in_doubt", job=job.id)
            _move(ledger, job, JobState.FINISHED, durable=False)
        ledger.commit()
    return FinishReport(returned=len(allocated), in_doubt=len(sent))
