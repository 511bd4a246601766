"""Job lifecycle: create, start, stop, finish; finishing returns unused codes and puts sent ones in doubt."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agent.jobs import JobError, JobSpec, JobState, create_job, finish_job, get_job, start_job, stop_job
from agent.ledger import CodeState, Ledger
from tests.helpers import seed_codes

SPEC = JobSpec(name="WO-1", gtin="09506000134352", product_name="Water", lot="L1", target_qty=10,
               expiry=date(2027, 1, 31), template="dl")


def test_lifecycle(db_path: Path) -> None:
    led = Ledger(db_path)
    seed_codes(led, [f"C{i}" for i in range(10)])
    job = create_job(led, SPEC)
    assert get_job(led, "WO-1").state is JobState.CREATED
    assert get_job(led, job).expiry == date(2027, 1, 31)
    start_job(led, "WO-1")
    stop_job(led, "WO-1")
    assert start_job(led, "WO-1").state is JobState.RUNNING
    codes = led.allocate(job, "item", 6)
    for c in codes[:2]:
        led.transition(c, CodeState.SENT)
        led.transition(c, CodeState.PRINTED)
    led.transition(codes[2], CodeState.SENT)
    report = finish_job(led, "WO-1")
    assert (report.returned, report.in_doubt) == (3, 1)
    states = dict(led.conn.execute("SELECT code, state FROM codes").fetchall())
    assert [states[c] for c in codes] == ["printed", "printed", "in_doubt", "returned", "returned", "returned"]
    assert get_job(led, "WO-1").state is JobState.FINISHED
    # returned codes are allocatable again, for the next job
    job2 = create_job(led, JobSpec(name="WO-2", gtin="09506000134352", product_name="W", lot="L2", target_qty=1))
    assert led.allocate(job2, "item", 3) == codes[3:6]
    kinds = [r[0] for r in led.conn.execute("SELECT kind FROM events WHERE job = ? ORDER BY seq", (job,))]
    assert kinds[:5] == ["job.created", "job.running", "job.stopped", "job.running", "codes.allocated"]
    assert "codes.returned" in kinds and "codes.in_doubt" in kinds and kinds[-1] == "job.finished"


def test_illegal_job_moves_are_refused(db_path: Path) -> None:
    led = Ledger(db_path)
    create_job(led, SPEC)
    with pytest.raises(JobError, match="is created; it cannot go to stopped"):
        stop_job(led, "WO-1")
    finish_job(led, "WO-1")
    with pytest.raises(JobError, match="already finished"):
        finish_job(led, "WO-1")
    with pytest.raises(JobError, match="already exists"):
        create_job(led, SPEC)
    with pytest.raises(JobError, match="no job 'nope'"):
        start_job(led, "nope")


def test_one_running_job_per_level(db_path: Path) -> None:
    led = Ledger(db_path)
    create_job(led, SPEC)
    create_job(led, JobSpec(name="WO-2", gtin="09506000134352", product_name="W", lot="L2", target_qty=1))
    start_job(led, "WO-1")
    with pytest.raises(JobError, match="'WO-1' is already running"):
        start_job(led, "WO-2")
