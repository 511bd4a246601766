"""A clock that jumps back or forward orders nothing and expires nothing early.

The seams are where the code already takes a time: `Stamp`s for the boot clock (agent/clock.py), the
`at` of a journal entry and of an EPCIS event, the audit's `at`, the alarm board's clock. The jumps are
written out by hand below; what must hold is stated independently of the code: the PIN lock-out window is
10 minutes of real time (agent/pins.py's documented policy), journal order is the order of writing, a
partial uplink batch leaves within batch_max_ms of real time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent import pins
from agent.cli.main import app
from agent.clock import Stamp, boot_id, elapsed, since_boot, stamp
from agent.config.mqtt import MqttConfig
from agent.epcis import commissioning_event, epc_for, event_hash
from agent.ledger import Ledger
from agent.line.alarms import AlarmBoard, Severity
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from tests.aggregation.test_cli import PIN
from tests.aggregation.test_cli import line as pack_line
from tests.sync.conftest import CTX, Broker

HOUR = 3600.0
B = "boot-a"


@pytest.mark.parametrize(("earlier", "now", "seconds"), [
    (Stamp(1000.0, B, 50.0), Stamp(1010.0, B, 60.0), 10.0),  # no jump
    (Stamp(1000.0, B, 50.0), Stamp(1000.0 + 2 * HOUR, B, 60.0), 10.0),  # clock set forward 2 h
    (Stamp(1000.0, B, 50.0), Stamp(1000.0 - 2 * HOUR, B, 60.0), 10.0),  # clock set back 2 h
    (Stamp(1000.0, B, 50.0), Stamp(1100.0, "boot-b", 5.0), 100.0),  # rebooted: only the wall clock is left
    (Stamp(1000.0, B, 50.0), Stamp(900.0, "boot-b", 5.0), 0.0),  # rebooted and set back: the future is now
    (Stamp(1000.0), Stamp(1030.0, B, 60.0), 30.0),  # an older row without the boot clock
])
def test_elapsed_is_measured_on_the_boot_clock_within_a_boot(earlier: Stamp, now: Stamp, seconds: float) -> None:
    assert elapsed(earlier, now) == pytest.approx(seconds)


def five_wrong(at_boot_s: float, wall: float = 1000.0) -> list[Stamp]:
    return [Stamp(wall + i, B, at_boot_s + i) for i in range(5)]


def test_a_pin_lock_out_is_not_ended_or_stretched_by_setting_the_clock() -> None:
    failures = five_wrong(100.0)  # five wrong PINs within 4 s
    ten_min = 600.0
    # 60 s of real time later, the clock was set 2 h forward: still locked for the rest of the 10 minutes.
    now = Stamp(1004.0 + 2 * HOUR + 60, B, 164.0)
    assert pins.locked_until(failures, now) == pytest.approx(now.wall + ten_min - 64.0)
    # ... set 2 h back instead: locked for the same rest, not 2 h more.
    now = Stamp(1004.0 - 2 * HOUR + 60, B, 164.0)
    assert pins.locked_until(failures, now) == pytest.approx(now.wall + ten_min - 64.0)
    # 10 minutes of real time after the fifth (the oldest is then 604 s old), whatever the wall clock says.
    assert pins.locked_until(failures, Stamp(1004.0 - 2 * HOUR + 601, B, 705.0)) is None
    # Four wrong PINs lock nothing.
    assert pins.locked_until(failures[1:], Stamp(1010.0, B, 110.0)) is None


def test_the_cli_keeps_a_pin_lock_out_after_the_clock_is_set_forward(tmp_path: Path) -> None:
    """Five wrong PINs audited now, whose wall times read two hours old (the clock was set forward
    since); the next CLI run, a process of its own, measures on the boot clock and stays locked."""
    cfg, db = pack_line(tmp_path)  # packs on the floor, the operator PIN configured
    with Ledger(db) as ledger:
        for _ in range(5):
            ledger.audit("pack.unlink", {"code": "B00001"}, pins.WRONG,
                         at=Stamp(time.time() - 2 * HOUR, boot_id(), since_boot()))
    result = CliRunner().invoke(app, ["pack", "unlink", "B00001", "--pin", PIN, *cfg])
    assert result.exit_code == 1 and "locked until" in result.output, result.output


def test_alarms_keep_the_order_they_were_raised_in_when_the_clock_goes_back() -> None:
    wall = [5000.0]
    board = AlarmBoard(clock=lambda: wall[0])
    board.set("coder1", "coder_fault", True, Severity.STOP, "first")
    wall[0] -= HOUR  # set back an hour
    board.set("plc1", "communication", True, Severity.STOP, "second")
    board.set("sync", "backlog", True, Severity.WARNING, "third")
    assert [a.detail for a in board.active] == ["first", "second", "third"]
    assert [a.since for a in board.active] == [5000.0, 5000.0 - HOUR, 5000.0 - HOUR]  # shown as it was


def test_events_across_clock_jumps_reach_the_receiver_in_journal_order(tmp_path: Path) -> None:
    """Written while the clock ran an hour ahead, then after it was set back two hours: a partial batch
    still leaves on time, the receiver keeps the journal's order, every eventID is its event's hash, and
    eventTime goes backwards as the clock did."""
    broker = Broker(tmp_path)
    broker.start()
    ledger_path, rdb = tmp_path / "ledger.db", tmp_path / "received.db"
    now = time.time()
    ahead, behind = [now + HOUR, now + HOUR + 1, now + HOUR + 2], [now - HOUR, now - HOUR + 1]

    def journal(times: list[float], first: int) -> None:
        with Ledger(ledger_path) as ledger:
            for i, t in enumerate(times, first):
                event = commissioning_event(CTX, [epc_for(f"JUMP{i:04d}")], at=t, lot="L1")
                ledger.append_event("item.commissioned", {"epcis": event}, uplink=True, at=t)
            ledger.commit()

    def until_received(n: int) -> None:
        deadline = time.monotonic() + 30  # a hang detector: with batch_max_events 500, only the time rule cuts
        while time.monotonic() < deadline and len(received(rdb)) < n:
            time.sleep(0.05)
        assert len(received(rdb)) == n

    journal(ahead, 0)  # the uplink sees only events from its future first
    receiver = Receiver(broker.url, SqliteStore(rdb))
    receiver.start()
    uplink = Uplink(Outbox(ledger_path), MqttConfig(broker=broker.url, batch_max_events=500, batch_max_ms=100),
                    Topics("lineagent", "s1", "L1"))
    stop = threading.Event()
    thread = threading.Thread(target=uplink.run, args=(stop,))
    thread.start()
    try:
        assert receiver.ready.wait(10)
        until_received(len(ahead))
        journal(behind, len(ahead))
        until_received(len(ahead) + len(behind))
    finally:
        stop.set()
        thread.join(30)
        receiver.stop()
        broker.stop()
    rows = received(rdb)
    journal = outbox_events(ledger_path)
    assert [r[0] for r in rows] == [event_hash(e) for e in journal]  # (batch, pos) order is the journal's
    assert len({r[0] for r in rows}) == len(ahead) + len(behind)
    event_times = [r[1] for r in rows]
    assert event_times[3] < event_times[2]  # eventTime went back with the clock; the order did not


def received(db: Path) -> list[tuple[str, str]]:
    import sqlite3

    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return [(str(a), str(b)) for a, b in conn.execute(
            "SELECT event_id, event_time FROM epcis_events ORDER BY batch, pos")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def outbox_events(ledger_path: Path) -> list[dict[str, object]]:
    import json
    import sqlite3

    conn = sqlite3.connect(ledger_path)
    try:
        return [json.loads(r[0])["epcis"] for r in conn.execute(
            "SELECT payload FROM events WHERE uplink = 1 ORDER BY seq")]
    finally:
        conn.close()


def test_stamp_reads_this_boot() -> None:
    s = stamp()
    assert s.boot == boot_id() and s.since_boot is not None and s.since_boot > 0


def test_a_dead_daemon_is_not_alive_because_the_clock_went_back() -> None:
    """Its last beat was 10 s ago on the boot clock; the wall clock was set back an hour since, so the
    beat's wall time lies in the future. `status` must still call it dead (a beat is good for 5 s)."""
    from agent.line.status import DaemonStatus

    now = stamp()
    assert now.since_boot is not None
    st = DaemonStatus(pid=1, started_at=0, beat_at=now.wall + HOUR, state="running", light="green",
                      beat_boot=now.boot, beat_since_boot=now.since_boot - 10)
    assert not st.alive(now) and st.age(now) == pytest.approx(10.0)
    fresh = DaemonStatus(pid=1, started_at=0, beat_at=now.wall - HOUR, state="running", light="green",
                         beat_boot=now.boot, beat_since_boot=now.since_boot - 1)
    assert fresh.alive(now)  # and a clock set forward does not kill a live one
