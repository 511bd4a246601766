"""A job's progress counts only codes of its own level: packing codes on the same job do not shorten it.

Regression: aggregation allocates box, case and pallet codes to the job that prints the items, and the
feeder used to count them towards the item target, so a 120-item job with packing printed 112.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from agent.feeder_store import allocated_codes, progress
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import CodeState, Ledger
from tests.agent.test_feeder import feeder, open_line, run, states, unrender
from tests.helpers import seed_codes


def packing_job(ledger: Ledger, target: int) -> tuple[int, list[str]]:
    """A running item job with 10 box codes allocated to it and printed on labels (as packing does)."""
    seed_codes(ledger, [f"{i:07d}" for i in range(target * 3)], package_id="items")
    seed_codes(ledger, [f"B{i:06d}" for i in range(10)], level="box", package_id="boxes")
    job = create_job(ledger, JobSpec(name="j1", gtin="09506000134352", product_name="Water", lot="L1",
                                     target_qty=target))
    start_job(ledger, job)
    boxes = ledger.allocate(job, "box", 10)
    ledger.transition_many(boxes[:8], CodeState.PRINTED, expect=CodeState.ALLOCATED)  # labels printed
    ledger.commit()
    return job, boxes


def test_progress_and_the_feed_ignore_codes_of_other_levels(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    job, _ = packing_job(ledger, 120)
    p = progress(ledger, job)
    assert (p.done, p.sent, p.allocated, p.needed) == (0, 0, 0, 120)  # 8 printed box labels are not items
    assert allocated_codes(ledger, job, 50) == []  # the 2 unprinted box codes are never fed to the coder
    items = ledger.allocate(job, "item", 5)
    assert allocated_codes(ledger, job, 50) == items
    assert progress(ledger, job).allocated == 5
    ledger.close()


def test_a_packing_job_prints_its_full_target(tmp_path: Path) -> None:
    async def body() -> None:
        ledger = Ledger(tmp_path / "l.db")
        job, boxes = packing_job(ledger, 120)
        async with open_line("leibinger-pty", rate=600) as line:
            await feeder(ledger, line, job).run()
        printed = [unrender(t) for t in line.printed]
        assert max(Counter(printed).values()) == 1
        assert not set(boxes) & set(printed)  # no box code ever reached the item coder
        by_state = states(ledger, job)
        assert len(by_state["printed"] - set(boxes)) == 120  # was 112 while the 8 printed box labels counted
        # At 600 products/s the FIFO runs dry now and then (error 5043). A stop that falls between the
        # push's first look and its one record leaves a case the protocol cannot settle (FifoEntrys
        # leaves out the loaded record: 0 either way), so that record goes in doubt and is replaced. If
        # the coder kept it, the job has one item more than its target. Every such item carries a code
        # in doubt, never one counted twice.
        extra = set(printed) - by_state["printed"]
        assert extra <= by_state.get("in_doubt", set()), f"printed but neither printed nor in doubt: {extra}"
        assert by_state["printed"] - set(boxes) <= set(printed)
        ledger.close()

    run(body())
