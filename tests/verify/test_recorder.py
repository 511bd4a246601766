"""The verify station's writer thread (agent/verify/recorder.py): writes wait for one commit up to the
hold, a deadline pulls the commit in, and every result is reported on the loop after its commit, in
submission order. Hold times are far longer than the hang detectors, so no assertion depends on speed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.ledger import Ledger
from agent.verify.recorder import Recorder

HANG_S = 30.0
LONG_HOLD_S = 600.0  # a group that waited for this would trip every hang detector here


def _writer(ledger: Ledger, n: int) -> Any:
    def write() -> int:
        with ledger.atomic():
            ledger.append_event("test.write", {"n": n})
        return n

    return write


def _durable(ledger: Ledger) -> set[int]:
    conn = ledger.reader()
    try:
        rows = conn.execute("SELECT json_extract(payload, '$.n') FROM events WHERE kind = 'test.write'").fetchall()
        return {int(r[0]) for r in rows}
    finally:
        conn.close()


def test_writes_held_together_are_one_commit_reported_in_order_after_it(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")

    async def scenario() -> None:
        rec = Recorder(ledger, hold_s=LONG_HOLD_S)
        seen: list[tuple[int, bool]] = []
        for n in range(20):
            rec.submit(_writer(ledger, n), lambda r, e: seen.append((r, r in _durable(ledger))))
        await asyncio.sleep(0.05)  # the thread is holding the group: nothing reported yet
        assert seen == []
        await asyncio.wait_for(rec.flush(), HANG_S)  # a flush asks for its commit now
        assert [n for n, _ in seen] == list(range(20))  # submission order
        assert all(durable for _, durable in seen)  # each reported only once on disk
        assert rec.commits == 1
        rec.close()

    asyncio.run(scenario())
    ledger.close()


def test_a_deadline_commits_without_waiting_for_the_hold(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")

    async def scenario() -> None:
        rec = Recorder(ledger, hold_s=LONG_HOLD_S)
        done = asyncio.Event()
        rec.submit(_writer(ledger, 1))  # no deadline of its own: rides with the next commit
        rec.submit(_writer(ledger, 2), lambda r, e: done.set(), by=0.0)  # a release waits on this one
        await asyncio.wait_for(done.wait(), HANG_S)
        assert _durable(ledger) == {1, 2}
        rec.close()

    asyncio.run(scenario())
    ledger.close()


def test_a_failing_write_is_reported_and_the_rest_commit(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")

    async def scenario() -> None:
        rec = Recorder(ledger, hold_s=LONG_HOLD_S)
        results: list[tuple[Any, BaseException | None]] = []

        def boom() -> None:
            raise ValueError("refused")

        rec.submit(_writer(ledger, 1), lambda r, e: results.append((r, e)))
        rec.submit(boom, lambda r, e: results.append((r, e)))
        rec.submit(_writer(ledger, 3), lambda r, e: results.append((r, e)))
        await asyncio.wait_for(rec.flush(), HANG_S)
        assert [r for r, _ in results] == [1, None, 3]
        assert isinstance(results[1][1], ValueError) and results[0][1] is None and results[2][1] is None
        assert _durable(ledger) == {1, 3}
        rec.close()

    asyncio.run(scenario())
    ledger.close()
