"""Durable before its bytes leave, when the commit fails: a feeder whose `sent` record cannot be written
sends nothing, and the coder simulator's own record says so.

The failure is real SQLite: the ledger file is capped at its size (`PRAGMA max_page_count`) just before
the first refill is recorded. That refill fills a 256-record FIFO in one chunk, 255 coder_feed rows and a
journal entry naming them, several pages more than any B-tree's last page can hold, so SQLite refuses
(SQLITE_FULL) as on a full disk. The coder is the Leibinger simulator on a pty."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import traceback
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from agent.feeder import Feeder
from agent.ledger import Ledger, LedgerError
from agent.ledger.faults import ResourceKind, resource_fault
from drivers.sim.leibinger import LeibingerSim
from tests.agent.test_feeder import make_job, open_line, render, unrender, until


def cap(ledger: Ledger) -> None:
    with ledger.lock:
        pages = ledger.conn.execute("PRAGMA page_count").fetchone()[0]
        ledger.conn.execute(f"PRAGMA max_page_count = {pages}")


class CapBeforeRecord(Feeder):
    """Caps the ledger right before the first refill is recorded (allocation has happened)."""

    capped: list[str] | None = None

    def record_sent(self, batch: Sequence[tuple[int, str]]) -> None:
        if self.capped is None:
            self.capped = [code for _, code in batch]
            cap(self.ledger)
        super().record_sent(batch)


def test_a_sent_record_that_cannot_commit_keeps_its_codes_from_the_coder(db_path: Path) -> None:
    received: list[str] = []
    failure: list[BaseException] = []
    refused: list[str] = []  # the refill whose record met the cap

    async def body() -> None:
        ledger = Ledger(db_path)
        job = make_job(ledger, target=600, pool=1200)
        try:
            async with open_line("leibinger-pty", rate=0, capacity=256) as line:
                sim = line.sim
                assert isinstance(sim, LeibingerSim)
                store = sim.store

                def logged(text: str, tag: int = 0) -> bool:
                    ok = store(text, tag)
                    if ok:
                        received.append(text)
                    return ok

                sim.store = logged  # type: ignore[method-assign]  # the simulator's own record of what it took
                f = CapBeforeRecord(ledger, line.printer, coder="c1", job=job, level="item", render=render,
                                    push_chunk=255, poll_s=0.005, retry_s=0.01, max_retry_s=0.1)
                run = asyncio.create_task(f.run())
                await until(run.done, "the feeder ends on the full ledger", 60)
                failure.append(run.exception() or AssertionError("the feeder went on"))
                before = len(received)
                await asyncio.sleep(0.3)  # a driver that kept sending would show here
                assert len(received) == before
                assert f.capped is not None
                refused.extend(f.capped)
        finally:
            ledger.close()

    asyncio.run(asyncio.wait_for(body(), 120))
    exc = failure[0]
    assert isinstance(exc, (LedgerError, sqlite3.Error)), exc
    assert resource_fault(exc) is ResourceKind.DISK_FULL
    frames: list[str] = []  # the feeder's last commit reports it again; the first failure is its context
    link: BaseException | None = exc
    while link is not None:
        frames += [fr.name for fr in traceback.extract_tb(link.__traceback__)]
        link = link.__context__
    assert "record_sent" in frames, frames  # it was the refill's record that failed

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        sent: Counter[str] = Counter()
        for (payload,) in conn.execute("SELECT payload FROM events WHERE kind = 'codes.sent'"):
            sent.update(json.loads(payload)["codes"])
        open_codes = {r[0] for r in conn.execute("SELECT code FROM codes WHERE state = 'sent'")}
    finally:
        conn.close()
    got = Counter(unrender(t) for t in received)
    assert len(refused) == 255
    assert not got, f"the coder received {len(got)} codes whose sent record never committed"
    assert not sent and not open_codes, "a code is `sent` in the ledger after the failed commit"
