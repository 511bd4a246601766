"""The station judges and rejects while another thread holds the ledger (a commit's fsync), and reports
verdicts only once they are committed.

Regression: the station read code states through the shared writer connection on the event loop, so a
commit elsewhere stalled verification; at 2,000 items/min items went unread and the line stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

from agent.ledger import CodeState
from agent.verify.station import VerifySettings
from agent.verify.verdict import Verdict
from tests.verify.test_station import Item, close_line, open_line, wait_for


def test_verification_goes_on_while_the_ledger_is_held_and_reports_after_the_commit(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=1, read_window=0, gate_at=4, max_consecutive_rejects=100)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 8, settings)
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with line.ledger.lock:  # what a long commit does to every user of the writer connection
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        await asyncio.to_thread(held.wait)
        try:
            run = asyncio.create_task(line.run({3: Item(texts=()), 5: Item(texts=("C000002",))}, 12))
            await wait_for(lambda: line.sim.model.rejected[:2] == [3, 5])  # the gate acted meanwhile
            assert line.station.tracker.late_reads == 0
            assert line.verdicts == {}  # nothing is final before its commit
            with contextlib.closing(line.ledger.reader()) as committed:
                assert committed.execute(
                    "SELECT COUNT(*) FROM codes WHERE state IN ('verified', 'rejected')").fetchone()[0] == 0
        finally:
            release.set()
            await asyncio.to_thread(holder.join)
        await run
        v = {seq: j.verdict for seq, j in line.verdicts.items() if seq <= 8}
        assert v == {1: Verdict.GOOD, 2: Verdict.GOOD, 3: Verdict.NO_READ, 4: Verdict.GOOD,
                     5: Verdict.DUPLICATE, 6: Verdict.GOOD, 7: Verdict.GOOD, 8: Verdict.GOOD}
        assert line.ledger.state_of("C000002") is CodeState.VERIFIED  # item 2 keeps it; item 5 left
        assert line.ledger.state_of("C000003") is CodeState.REJECTED
        assert line.ledger.state_of("C000005") is CodeState.REJECTED  # printed on item 5, which left
        await close_line(line, plc)

    asyncio.run(scenario())


def test_a_duplicate_is_caught_before_the_first_verdict_is_committed(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=1, read_window=0, gate_at=4, max_consecutive_rejects=100)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 4, settings)
        release = threading.Event()

        def hold() -> None:
            with line.ledger.lock:
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            run = asyncio.create_task(line.run({2: Item(texts=("C000001",))}, 8))
            await wait_for(lambda: 2 in line.sim.model.rejected)  # item 1's verdict is not on disk yet
        finally:
            release.set()
            await asyncio.to_thread(holder.join)
        await run
        assert line.verdicts[2].verdict is Verdict.DUPLICATE
        await close_line(line, plc)

    asyncio.run(scenario())
