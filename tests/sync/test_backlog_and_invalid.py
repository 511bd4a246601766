"""Backlog policy thresholds, and a malformed producer event surfacing as an alarm, not a silent loss."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from agent.config.mqtt import MqttConfig
from agent.epcis import commissioning_event
from agent.ledger import Ledger
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from agent.sync.backlog import BacklogLevel, SyncAlarm, assess
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from tests.sync.conftest import CTX, Broker, fill

CFG = MqttConfig(backlog_warn_events=100, backlog_stop_events=1000, min_free_disk_mb=50)


def test_backlog_levels_and_operator_messages() -> None:
    assert assess(99, 10_000, CFG).level is BacklogLevel.OK
    warn = assess(100, 10_000, CFG)
    assert warn.level is BacklogLevel.WARN and "100 events wait" in warn.message
    stop = assess(1000, 10_000, CFG)
    assert stop.level is BacklogLevel.STOP and "Line stopped" in stop.message
    assert "No data has been lost" in stop.message
    disk = assess(0, 49, CFG)
    assert disk.level is BacklogLevel.STOP and "49 MB free" in disk.message


def test_an_invalid_event_is_reported_and_the_rest_delivered(broker: Broker, tmp_path: Path) -> None:
    ledger_path, rdb = tmp_path / "ledger.db", tmp_path / "r.db"
    fill(ledger_path, 5)
    bad = commissioning_event(CTX, ["urn:example:lineagent:code:bad"], at=1.8e9)
    bad["action"] = "ADDED"  # a buggy producer
    with Ledger(ledger_path) as ledger:
        ledger.append_event("item.commissioned", {"epcis": bad}, uplink=True)
        ledger.commit()
    fill(ledger_path, 5, start=100)
    receiver = Receiver(broker.url, SqliteStore(rdb))
    receiver.start()
    alarms: list[SyncAlarm] = []
    cfg = MqttConfig(broker=broker.url, batch_max_events=5, batch_max_ms=1, inflight=1, ack_timeout_s=5)
    uplink = Uplink(Outbox(ledger_path), cfg, Topics("lineagent", "s1", "L1"), on_alarm=alarms.append)
    stop = threading.Event()
    t = threading.Thread(target=uplink.run, args=(stop,))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while not uplink.drained() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
        receiver.stop()
    assert uplink.drained()
    # batches of 5: [5 good] [bad + 4 good] [1 good]; the refused batch's good events stay in the ledger
    assert SqliteStore(rdb).count() == 6
    assert any("refused batch" in a.message and "action" in a.message for a in alarms), alarms
    outcomes = [r[0] for r in Outbox(ledger_path).conn.execute("SELECT outcome FROM sync_batches ORDER BY id")]
    assert outcomes[0] == "stored" and outcomes[1].startswith("invalid") and outcomes[2] == "stored"
