"""A job request that meets a run ending on its own: the operator's request is still carried out.

Regression: `job finish` sent just as the run reached its target was answered with the run's own "done"
report, and the job stayed running in the ledger until a second `job finish`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from agent.control.dispatch import job_command
from agent.control.protocol import Command
from agent.jobs import JobSpec, JobState, create_job, get_job, start_job
from agent.ledger import Ledger
from agent.line.jobrun import JobControl
from tests.helpers import seed_codes


def test_a_finish_that_meets_a_run_ending_done_finishes_the_job(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    seed_codes(ledger, [f"{i:07d}" for i in range(10)], package_id="p")
    job = start_job(ledger, create_job(ledger, JobSpec(name="WO-1", gtin="09506000134352",
                                                       product_name="water", lot="L1", target_qty=5)))

    async def main() -> dict[str, object]:
        control = JobControl()
        control.begin()
        line = SimpleNamespace(ledger=ledger, current=job, job_control=control)

        async def run_ends_done() -> None:  # the run reached its target as the request came
            await asyncio.wait_for(control.asked.wait(), 30)
            line.current = None
            control.ended({"job": "WO-1", "ended": "done", "verdicts": {}})

        ending = asyncio.create_task(run_ends_done())
        answer = await job_command(line, Command.JOB_FINISH, "WO-1")  # type: ignore[arg-type]
        await ending
        return answer

    try:
        answer = asyncio.run(main())
        assert answer["state"] == "finished"
        assert get_job(ledger, "WO-1").state is JobState.FINISHED
    finally:
        ledger.close()
