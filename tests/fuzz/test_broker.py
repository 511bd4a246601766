"""The uplink (agent/sync/uplink.py on paho-mqtt 2.x) against a hostile broker.

A real mosquitto and the reference receiver run for the whole module; each example gives the uplink a
ledger of its own line and reaches the broker through the hostile device, which corrupts what the
broker sends: random bytes, CONNACKs refusing or malformed, remaining lengths of hundreds of MB,
PUBACKs for ids never sent, DISCONNECTs, packets re-framed with hostile fields, a cut mid-packet.
What must hold, checked from outside the uplink:
- no step of the uplink raises, and each returns (no hang);
- no batch is marked delivered whose events the receiver has not stored;
- once the broker is honest again the uplink reconnects and every batch is delivered, once.
Silence (a dropped CONNACK, a broker that stops answering) is left to the end of the hostile phase,
when every connection is cut: on its own, paho gives up on a silent broker after a keep-alive period
(MqttConfig.keepalive_s, 5 s at the least), which would make each such example that long.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given

from agent.config.mqtt import MqttConfig
from agent.epcis import event_hash
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from tests.fuzz.harness import HANG_S
from tests.fuzz.hostile import Action, Append, HostileDevice, Pass, Replace, Rewrite, Script
from tests.fuzz.strategies import budget, scripts
from tests.sync.conftest import Broker, fill

EVENTS = 5
HOSTILE_S = 1.5  # the hostile phase ends when the script is used up, or after this long (a silent broker)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_reframe(chunk: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """Edit the body of every whole MQTT control packet in the chunk and give it the remaining length
    that fits (MQTT Version 5.0, 2.1.4): a well-formed packet with hostile content."""
    out, i = bytearray(), 0
    while i < len(chunk):
        length, mult, j = 0, 1, i + 1
        while j < len(chunk) and j - i <= 4:
            length += (chunk[j] & 0x7F) * mult
            mult *= 128
            j += 1
            if not chunk[j - 1] & 0x80:
                break
        else:
            break  # a remaining length cut off by the chunk: the rest passes as it is
        if j + length > len(chunk):
            break
        body = edit(chunk[j : j + length])
        out += chunk[i : i + 1] + _varint(len(body)) + body
        i = j + length
    return bytes(out + chunk[i:])


# Whole packets a broker must not send, or sends only to refuse (MQTT Version 5.0, section 3).
PACKETS = [
    b"\x20\x03\x00\x87\x00",  # CONNACK: not authorized
    b"\x20\x03\x00\x80\x00",  # CONNACK: unspecified error
    b"\x20\x03\x01\x9f\x00",  # CONNACK: session present with a refusal (invalid)
    b"\x20\x02\x00\x00",  # CONNACK without its property length
    b"\x20\x03\x00\x00\xff",  # CONNACK whose properties run past the packet
    b"\x20\x0a\x00\x00\x07\x13\xff\xff\x21\x00\x00\x00",  # CONNACK: keep-alive 65535, receive maximum 0
    b"\x30\xff\xff\xff\x7f",  # PUBLISH claiming 268 MB that never come
    b"\x30\xff\xff\xff\xff\x7f",  # a remaining length of five bytes (at most four)
    b"\x32\x06\x00\x01a\xff\xff\x00",  # PUBLISH QoS 1 to topic "a", packet id 65535
    b"\x36\x04\x00\x01a\x00",  # PUBLISH with QoS 3
    b"\x30\x05\x00\x02\xff\xfe\x00",  # PUBLISH whose topic is not UTF-8
    b"\x40\x02\xff\xff",  # PUBACK for a packet id never used
    b"\x40\x02\x00\x00",  # PUBACK for packet id 0
    b"\x40\x04\x00\x01\x80\x00",  # PUBACK refusing packet 1
    b"\x90\x04\x00\x01\x00\x80",  # SUBACK refusing
    b"\xe0\x00",  # DISCONNECT
    b"\xe0\x01\x8e",  # DISCONNECT: session taken over
    b"\xd0\x01\x00",  # PINGRESP with a body
    b"\xf0\x00",  # AUTH nobody asked for
    b"\x00\x00",  # reserved packet type 0
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def received(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    db = tmp_path_factory.mktemp("receiver") / "received.db"
    receiver = Receiver(broker.url, SqliteStore(db))
    receiver.start()
    assert receiver.ready.wait(10), "receiver did not connect"
    yield db
    receiver.stop()


class DeviceThread:
    """The hostile device on an event loop of its own: the uplink is a blocking, threaded client."""

    def __init__(self, upstream_port: int, script: Script) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.device = HostileDevice(upstream_port, script)
        self.url = self._call(self.device.serve_tcp()).replace("tcp://", "mqtt://")

    def _call(self, coro: object) -> str:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def honest(self) -> None:
        """The script is over and every connection is cut: the uplink must come back on its own."""
        self.device.script.used = len(self.device.script.actions)
        self.loop.call_soon_threadsafe(self.device.cut)

    def close(self) -> None:
        self._call(self.device.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def stored_ids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {str(r[0]) for r in conn.execute("SELECT event_id FROM epcis_events")}
    finally:
        conn.close()


def delivered_ids(outbox: Outbox) -> set[str]:
    """Event ids of every batch the outbox marks delivered (acked as stored)."""
    rows = outbox.conn.execute(
        "SELECT first_seq, last_seq FROM sync_batches WHERE acked_at IS NOT NULL AND outcome = 'stored'").fetchall()
    events = dict(outbox_events(outbox))
    return {event_hash(events[s]) for first, last in rows for s in range(first, last + 1) if s in events}


def outbox_events(outbox: Outbox) -> list[tuple[int, dict[str, object]]]:
    import json

    rows = outbox.conn.execute("SELECT seq, payload FROM events WHERE uplink = 1 ORDER BY seq").fetchall()
    return [(int(seq), json.loads(payload)["epcis"]) for seq, payload in rows]


def step_bounded(uplink: Uplink) -> None:
    t0 = time.monotonic()
    uplink.step()  # anything it raises fails the example: in the daemon it would end the sync thread
    assert time.monotonic() - t0 < HANG_S, "one uplink step took longer than the hang detector"


_lines = itertools.count(1)


def exercise(broker: Broker, received: Path, tmp: Path, actions: list[Action]) -> None:
    line = f"F{next(_lines)}-{uuid.uuid4().hex[:6]}"
    ledger = tmp / f"{line}.db"
    fill(ledger, EVENTS, start=hash(line) % 10**7 * 10)
    device = DeviceThread(broker.port, Script(actions, mqtt_reframe))
    cfg = MqttConfig(broker=device.url, batch_max_events=2, batch_max_ms=5, inflight=2, ack_timeout_s=0.5,
                     keepalive_s=5, reconnect_min_s=0.01, reconnect_max_s=0.1)
    outbox = Outbox(ledger)
    uplink = Uplink(outbox, cfg, Topics("lineagent", "s1", line), client_id=f"fuzz-{line}")
    try:
        deadline = time.monotonic() + HOSTILE_S
        while time.monotonic() < deadline and device.device.script.used < len(actions):
            step_bounded(uplink)
            assert delivered_ids(outbox) <= stored_ids(received), "marked delivered, never stored"
        device.honest()
        deadline = time.monotonic() + 30.0
        while not uplink.drained():
            assert time.monotonic() < deadline, f"no reconnect and delivery after the hostile broker: {actions}"
            step_bounded(uplink)
            time.sleep(0.005)
        mine = {event_hash(e) for _, e in outbox_events(outbox)}
        assert delivered_ids(outbox) == mine
        assert mine <= stored_ids(received)
    finally:
        uplink.close()
        outbox.close()
        device.close()


@budget(4)
@given(actions=scripts(extra=PACKETS, max_size=6))
def test_a_hostile_broker_neither_crashes_nor_fakes_delivery_and_the_uplink_comes_back(
        broker: Broker, received: Path, tmp_path_factory: pytest.TempPathFactory, actions: list[Action]) -> None:
    exercise(broker, received, tmp_path_factory.mktemp("line"), actions)


# ---- regressions: the exact packets that crashed a client --------------------------------------
# Found: paho hands over a PUBLISH whose topic is not UTF-8 and raises UnicodeDecodeError only when
# the callback reads msg.topic; out of the callback it ended the uplink's step (the sync thread) and
# paho's network thread in the receiver. A topic of fewer levels gave the receiver an IndexError.
NOT_UTF8 = b"\x30\x05\x00\x02\xff\xfe\x00"  # PUBLISH QoS 0, topic ff fe, no properties
SHORT_TOPIC = b"\x30\x04\x00\x01a\x00"  # PUBLISH QoS 0 to topic "a"


@pytest.mark.parametrize("packet", [NOT_UTF8, SHORT_TOPIC], ids=["not-utf8", "short-topic"])
def test_the_uplink_drops_a_publish_it_cannot_read_and_delivers(broker: Broker, received: Path, tmp_path: Path,
                                                                 packet: bytes) -> None:
    exercise(broker, received, tmp_path, [Pass(), Replace(packet)])


@pytest.mark.parametrize("packet", [NOT_UTF8, SHORT_TOPIC], ids=["not-utf8", "short-topic"])
def test_the_receiver_drops_a_publish_it_cannot_read_and_keeps_storing(broker: Broker, tmp_path: Path,
                                                                       packet: bytes) -> None:
    tag = uuid.uuid4().hex[:8]
    ledger, db = tmp_path / "ledger.db", tmp_path / "received.db"
    fill(ledger, EVENTS)
    device = DeviceThread(broker.port, Script([Rewrite((Append(packet),))]))  # right after the CONNACK
    receiver = Receiver(device.url, SqliteStore(db), prefix=f"r{tag}", group=f"g{tag}", client_id=f"r{tag}")
    receiver.start()
    outbox = Outbox(ledger)
    uplink = Uplink(outbox, MqttConfig(broker=broker.url, batch_max_ms=5, ack_timeout_s=0.5),
                    Topics(f"r{tag}", "s1", "L1"), client_id=f"u{tag}")
    try:
        assert receiver.ready.wait(10), "receiver did not connect"
        deadline = time.monotonic() + 30
        while not uplink.drained():
            assert time.monotonic() < deadline, "the receiver stopped storing after the packet"
            step_bounded(uplink)
            time.sleep(0.005)
        assert stored_ids(db) == {event_hash(e) for _, e in outbox_events(outbox)}
    finally:
        uplink.close()
        outbox.close()
        receiver.stop()
        device.close()
