"""The resource guard on its own, against the real file system: the free-space floor, the disk reserve,
the hold, and its end (the interrupted job paused, never resumed by itself).

The floor is set above or below what statvfs(2) reports for the test's own disk (read here with
os.statvfs, independently of the guard), so the breach and the recovery are real measurements."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from agent.jobs import JobSpec, JobState, create_job, get_job, start_job
from agent.ledger import Ledger
from agent.line.alarms import AlarmBoard, Light, Severity
from agent.line.resources import ResourceGuard


def free_mb_now(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e6


def running_job(ledger: Ledger) -> int:
    job = create_job(ledger, JobSpec(name="WO-1", gtin="09506000134352", product_name="water", lot="L1",
                                     target_qty=10))
    start_job(ledger, job)
    return job


def test_a_breach_of_the_floor_stops_the_line_and_holds_until_space_returns(db_path: Path) -> None:
    ledger = Ledger(db_path)
    board = AlarmBoard()
    job = running_job(ledger)
    above = free_mb_now(db_path.parent) + 1_000_000  # a terabyte more than this disk has free
    guard = ResourceGuard(ledger, board, min_free_mb=above, reserve_mb=2, check_every_s=0.05)
    stops: list[bool] = []

    async def stop_line() -> None:
        stops.append(True)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(guard.run(stop, stop_line))
        try:
            async with asyncio.timeout(30):  # a hang detector
                while not stops:
                    await asyncio.sleep(0.01)
            alarm = next(a for a in board.active if a.source == "ledger")
            assert (alarm.key, alarm.severity) == ("disk_low", Severity.STOP)
            assert f"below the {above:.0f} MB minimum" in alarm.detail or str(int(above)) in alarm.detail
            assert board.light(running=True) is Light.RED
            assert guard.active and guard.refusal() is not None
            reserve = db_path.with_name(db_path.name + ".reserve")
            assert reserve.stat().st_blocks * 512 >= 2_000_000  # really allocated, not a sparse file
            await asyncio.sleep(0.3)
            assert len(stops) == 1 and guard.active  # one stop, and the hold goes on while the breach does
            assert get_job(ledger, job).state is JobState.RUNNING  # the runtime's job end pauses it, not this

            guard.min_free_mb = 0  # space is back
            async with asyncio.timeout(30):
                await guard.cleared.wait()
            assert not guard.active and not [a for a in board.active if a.source == "ledger"]
            assert get_job(ledger, job).state is JobState.PAUSED  # waits for `job start`
        finally:
            stop.set()
            await task

    try:
        asyncio.run(scenario())
        with ledger.lock:
            kinds = [r[0] for r in ledger.conn.execute("SELECT kind FROM events ORDER BY seq")]
        assert kinds[-2:] == ["job.paused", "line.resources_ok"]
        assert "probe" not in kinds  # the growth probe is rolled back, never journaled
        guard.close()
        assert not db_path.with_name(db_path.name + ".reserve").exists()
    finally:
        ledger.close()


def test_the_sync_backlog_at_its_bound_stops_the_line_until_it_drains(db_path: Path) -> None:
    ledger = Ledger(db_path)
    board = AlarmBoard()
    running_job(ledger)
    guard = ResourceGuard(ledger, board, min_free_mb=0, reserve_mb=0, check_every_s=0.05)
    stops: list[bool] = []

    async def stop_line() -> None:
        stops.append(True)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(guard.run(stop, stop_line))
        try:
            await asyncio.sleep(0.1)
            assert not stops and not guard.active
            guard.sync_alarm(True, "Line stopped: 5,000,000 events wait for delivery to the cloud")
            async with asyncio.timeout(30):
                while not stops:
                    await asyncio.sleep(0.01)
            assert "events wait for delivery" in (guard.refusal() or "")
            guard.sync_alarm(False, "cloud sync up to date")
            async with asyncio.timeout(30):
                await guard.cleared.wait()
        finally:
            stop.set()
            await task

    try:
        asyncio.run(scenario())
        assert get_job(ledger, 1).state is JobState.PAUSED
    finally:
        ledger.close()
