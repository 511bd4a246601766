"""Downlink: every bad message is refused, recorded and reported, and never applied."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from agent.codes.package import load_signing_key, load_verify_key, make_package
from agent.config import load_config
from agent.config.mqtt import MqttConfig
from agent.ledger import Ledger
from agent.sync.apply import code_package_applier, journal_handlers
from agent.sync.downlink import Downlink, sign_message
from agent.sync.mqtt import LinkState, Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from tests.helpers import make_line
from tests.sync.conftest import Broker

NOW = 1_800_000_000.0


@pytest.fixture
def line(tmp_path: Path) -> Path:
    return make_line(tmp_path)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.db")


@pytest.fixture
def cloud(line: Path) -> Ed25519PrivateKey:
    return load_signing_key(line.parent / "keys" / "cloud" / "private.pem")


@pytest.fixture
def downlink(line: Path, ledger: Ledger) -> Downlink:
    cfg = load_config(line)
    conn = sqlite3.connect(ledger.path, isolation_level=None)  # the uplink's own connection, as in the agent
    return Downlink(conn, load_verify_key(line.parent / "keys" / "cloud" / "public.pem"), "s1", "L1",
                    apply_package=code_package_applier(ledger, cfg), handlers=journal_handlers(ledger),
                    clock=lambda: NOW)


def msg(seq: int, kind: str = "work_order", body: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"id": f"m{seq}", "kind": kind, "seq": seq, "line": "s1/L1",
                         "expires_at": "2027-02-01T00:00:00Z", "body": body or {"name": f"WO{seq}"}}
    m.update(over)
    return m


def signed(m: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    return sign_message(m, key.sign)


def journal(ledger: Ledger) -> list[str]:
    return [r[0] for r in ledger.conn.execute("SELECT kind FROM events WHERE kind LIKE 'cloud.%' ORDER BY seq")]


def test_signed_work_order_is_applied_once(downlink: Downlink, ledger: Ledger, cloud: Ed25519PrivateKey) -> None:
    wire = signed(msg(1), cloud)
    result = downlink.handle(wire)
    assert result["status"] == "applied", result
    again = downlink.handle(wire)
    assert (again["status"], again["reason"]) == ("refused", "replayed")
    assert journal(ledger) == ["cloud.work_order"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k: json.dumps(msg(5)).encode(), "unsigned"),
        (lambda k: signed(msg(5), Ed25519PrivateKey.generate()), "forged"),
        (lambda k: _tampered(signed(msg(5), k)), "forged"),
        (lambda k: signed(msg(5, expires_at="2020-01-01T00:00:00Z"), k), "expired"),
        (lambda k: signed(msg(5, line="s1/L2"), k), "wrong_line"),
        (lambda k: signed(msg(5, kind="format_disk"), k), "unknown_kind"),
        (lambda k: signed(msg(0), k), "malformed"),
        (lambda k: signed({k2: v for k2, v in msg(5).items() if k2 != "expires_at"}, k), "malformed"),
        (lambda k: b"\xff not json", "malformed"),
        (lambda k: b'["a list"]', "malformed"),
    ],
)
def test_bad_messages_are_refused_and_never_applied(downlink: Downlink, ledger: Ledger, cloud: Ed25519PrivateKey,
                                                     make: Any, reason: str) -> None:
    result = downlink.handle(make(cloud))
    assert (result["status"], result["reason"]) == ("refused", reason), result
    assert journal(ledger) == []
    recorded = downlink.conn.execute("SELECT status FROM sync_commands").fetchall()
    assert [r[0] for r in recorded] == ["refused"]


def _tampered(wire: bytes) -> bytes:
    m = json.loads(wire)
    m["body"]["name"] = "WO-evil"
    return json.dumps(m).encode()


def test_an_older_sequence_number_is_a_replay(downlink: Downlink, ledger: Ledger, cloud: Ed25519PrivateKey) -> None:
    assert downlink.handle(signed(msg(10), cloud))["status"] == "applied"
    result = downlink.handle(signed(msg(9), cloud))
    assert (result["status"], result["reason"]) == ("refused", "replayed")
    assert downlink.handle(signed(msg(11, kind="command", body={"do": "pause"}), cloud))["status"] == "applied"
    assert journal(ledger) == ["cloud.work_order", "cloud.command"]


def test_chunked_code_package_is_imported_when_complete(downlink: Downlink, ledger: Ledger,
                                                        cloud: Ed25519PrivateKey) -> None:
    codes = [f"CODE{i:05d}" for i in range(300)]
    package = make_package(codes, level="item", signing_key=cloud)
    size = len(package) // 3 + 1
    chunks = [package[i : i + size] for i in range(0, len(package), size)]
    order = [2, 0, 1]  # chunks may arrive in any order
    results = []
    for seq, idx in enumerate(order, start=1):
        body = {"package_id": "pk1", "index": idx, "total": len(chunks),
                "data": base64.b64encode(chunks[idx]).decode()}
        results.append(downlink.handle(signed(msg(seq, kind="code_package_chunk", body=body), cloud)))
    assert [r["status"] for r in results] == ["pending", "pending", "applied"], results
    assert "300 codes imported" in results[-1]["detail"]
    assert ledger.conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 300


def test_a_package_whose_own_signature_fails_is_reported_failed(downlink: Downlink, ledger: Ledger,
                                                                cloud: Ed25519PrivateKey) -> None:
    package = make_package(["A1", "A2"], level="item", signing_key=Ed25519PrivateKey.generate())
    body = {"package_id": "pk2", "index": 0, "total": 1, "data": base64.b64encode(package).decode()}
    result = downlink.handle(signed(msg(1, kind="code_package_chunk", body=body), cloud))
    assert result["status"] == "failed" and "ImportRefused" in result["detail"], result
    assert ledger.conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 0


def test_refusals_are_kept_in_the_ledger(tmp_path: Path, downlink: Downlink, cloud: Ed25519PrivateKey) -> None:
    downlink.handle(signed(msg(3, expires_at="2001-01-01T00:00:00Z"), cloud))
    conn = sqlite3.connect(tmp_path / "ledger.db")
    rows = conn.execute("SELECT msg_id, status, detail FROM sync_commands").fetchall()
    assert rows and rows[0][:2] == ("m3", "refused") and "expired" in rows[0][2]


def test_results_travel_on_cmd_result_over_a_real_broker(broker: Broker, downlink: Downlink, ledger: Ledger,
                                                         cloud: Ed25519PrivateKey, tmp_path: Path) -> None:
    topics = Topics("lineagent", "s1", "L1")
    uplink = Uplink(Outbox(tmp_path / "ledger.db"), MqttConfig(broker=broker.url), topics,
                    on_command=downlink.handle)
    results: list[dict[str, Any]] = []
    cloud_side = paho.Client(CallbackAPIVersion.VERSION2, client_id="cloud", protocol=paho.MQTTv5)
    cloud_side.on_message = lambda _c, _u, m: results.append(json.loads(m.payload))
    cloud_side.connect("127.0.0.1", broker.port)
    cloud_side.subscribe(topics.cmd_result, qos=1)
    cloud_side.loop_start()
    try:
        while uplink.link.state is not LinkState.CONNECTED:
            uplink.step()
        cloud_side.publish(topics.cmd, signed(msg(1), cloud), qos=1)
        cloud_side.publish(topics.cmd, signed(msg(2), Ed25519PrivateKey.generate()), qos=1)
        deadline = time.monotonic() + 10
        while len(results) < 2 and time.monotonic() < deadline:
            uplink.step()
    finally:
        cloud_side.loop_stop()
        uplink.link.close()
    assert [(r["id"], r["status"], r.get("reason")) for r in results] == [
        ("m1", "applied", None), ("m2", "refused", "forged")]
    assert journal(ledger) == ["cloud.work_order"]
