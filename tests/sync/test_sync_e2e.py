"""End to end: ledger outbox -> uplink -> real mosquitto -> reference receiver, through faults.

The assertion that matters everywhere: the receiver ends with every event exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config.mqtt import MqttConfig
from agent.epcis import event_hash
from agent.ledger import Ledger
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from tests.sync.conftest import Broker, Proxy, fill


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _expected_ids(ledger_path: Path) -> set[str]:
    return {event_hash(e) for e in _outbox_events(ledger_path)}


def _outbox_events(ledger_path: Path) -> list[dict[str, object]]:
    import json

    conn = sqlite3.connect(ledger_path)
    rows = conn.execute("SELECT payload FROM events WHERE uplink = 1 ORDER BY seq").fetchall()
    conn.close()
    return [json.loads(r[0])["epcis"] for r in rows]


def _received(db: Path) -> list[tuple[str, int, int]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT event_id, batch, pos FROM epcis_events ORDER BY batch, pos").fetchall()
    conn.close()
    return [(str(a), int(b), int(c)) for a, b, c in rows]


def _receiver(broker: Broker, db: Path) -> Receiver:
    r = Receiver(broker.url, SqliteStore(db))
    r.start()
    assert r.ready.wait(10), "receiver did not connect"
    return r


def test_backlog_drains_exactly_once_in_order(broker: Broker, tmp_path: Path) -> None:
    ledger, rdb = tmp_path / "ledger.db", tmp_path / "received.db"
    fill(ledger, 1200)
    receiver = _receiver(broker, rdb)
    cfg = MqttConfig(broker=broker.url, batch_max_events=100, batch_max_ms=10, inflight=5, ack_timeout_s=2)
    outbox = Outbox(ledger)
    uplink = Uplink(outbox, cfg, Topics("lineagent", "s1", "L1"))
    stop = threading.Event()
    t = threading.Thread(target=uplink.run, args=(stop,))
    t.start()
    try:
        _wait(lambda: len(_received(rdb)) == 1200, 30, "1200 events at the receiver")
        _wait(uplink.drained, 10, "every batch acked")
    finally:
        stop.set()
        t.join()
        receiver.stop()
    got = _received(rdb)
    assert {g[0] for g in got} == _expected_ids(ledger)
    # order per line: (batch, pos) follows the journal
    order = [e for e, _, _ in got]
    assert order == [event_hash(e) for e in _outbox_events(ledger)]
    assert outbox.backlog().undelivered_events == 0


def _agent(ledger: Path, url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.sync", "--db", str(ledger), "--broker", url, "--site", "s1", "--line", "L1",
         "--batch", "50", "--batch-ms", "20", "--inflight", "4", "--ack-timeout", "1.0"],
        cwd=Path(__file__).resolve().parents[2],
    )


def _run_faults(broker: Broker, proxy: Proxy, tmp_path: Path, rounds: int, per_round: int) -> None:
    ledger, rdb = tmp_path / "ledger.db", tmp_path / "received.db"
    fill(ledger, per_round)
    receiver = _receiver(broker, rdb)
    agent = _agent(ledger, proxy.url)
    try:
        for i in range(rounds):
            _wait(lambda: len(_received(rdb)) > 0, 20, "first deliveries")
            fill(ledger, per_round, start=(i + 1) * per_round, at=1_767_300_000.0 + i)
            time.sleep(0.3)
            fault = i % 3
            if fault == 0:  # the broker crashes and comes back, twice in a row
                for _ in range(2):
                    broker.stop()
                    time.sleep(0.2)
                    broker.start()
            elif fault == 1:  # the agent dies mid-sync
                agent.send_signal(signal.SIGKILL)
                agent.wait()
                agent = _agent(ledger, proxy.url)
            else:  # the network drops every connection
                proxy.cut()
        total = per_round * (rounds + 1)
        _wait(lambda: len(_received(rdb)) == total, 60, f"{total} events at the receiver")
        _wait(lambda: Outbox(ledger).backlog().undelivered_events == 0, 30, "every batch acked")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        receiver.stop()
    got = _received(rdb)
    ids = [g[0] for g in got]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == _expected_ids(ledger)


def test_exactly_once_through_broker_crashes_agent_kills_and_cuts(broker: Broker, proxy: Proxy,
                                                                  tmp_path: Path) -> None:
    _run_faults(broker, proxy, tmp_path, rounds=6, per_round=300)


@pytest.mark.soak
def test_soak_exactly_once_through_many_faults(broker: Broker, proxy: Proxy, tmp_path: Path) -> None:
    _run_faults(broker, proxy, tmp_path, rounds=60, per_round=2000)


def test_backlog_counts_survive_a_restart(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    fill(ledger, 30)
    with Ledger(ledger) as led:
        led.append_event("note", {"x": 1})  # not uplink: never counted
        led.commit()
    ob = Outbox(ledger)
    b = ob.cut(20)
    assert b is not None and b.events == 20
    ob.close()
    ob = Outbox(ledger)
    backlog = ob.backlog()
    assert (backlog.undelivered_events, backlog.unbatched_events, backlog.open_batches) == (30, 10, 1)
    assert ob.mark_acked(b.id, "stored") and not ob.mark_acked(b.id, "stored")
    assert ob.backlog().undelivered_events == 10
    assert os.path.exists(ledger)
