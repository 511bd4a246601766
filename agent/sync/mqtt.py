"""The one place that knows paho-mqtt 2.x: an MQTT v5 session the uplink drives from its own thread.

Why a single-threaded adapter (the owner calls `poll()`) rather than paho's loop thread: every ledger
write of the sync happens in the uplink thread, acks included, so there is no lock between the network
callbacks and SQLite, and reconnect timing (jittered exponential backoff) is ours, not paho's fixed one.

Session: clean_start=False with a session expiry, so acks and commands published while the agent was
away are kept by the broker and delivered on reconnect. Will: the retained status "offline".
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import select
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config.mqtt import MqttConfig

log = logging.getLogger(__name__)


class LinkState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


@dataclass(frozen=True, slots=True)
class Topics:
    """lineagent/<site>/<line>/{events,ack,status,cmd,cmd/result}: one tree per line."""

    prefix: str
    site: str
    line: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.line}"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def cmd_result(self) -> str:
        return f"{self.base}/cmd/result"


def broker_address(url: str) -> tuple[str, int, bool]:
    """mqtt://host[:port] or mqtts://host[:port] -> (host, port, tls)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
        raise ValueError(f"broker URL {url!r} must look like mqtt://host:port or mqtts://host:port")
    tls = parsed.scheme == "mqtts"
    return parsed.hostname, parsed.port or (8883 if tls else 1883), tls


@dataclass
class Backoff:
    """Full-jitter exponential backoff: a fleet of lines does not reconnect in lock-step after an outage."""

    low: float
    high: float
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        cap = min(self.high, self.low * (2**self.failures))
        self.failures += 1
        return self.rng.uniform(self.low, max(self.low, cap))

    def reset(self) -> None:
        self.failures = 0


def properties(packet_type: int) -> Properties:
    """MQTT v5 properties for a packet (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


Handler = Callable[[str, bytes, dict[str, str]], None]


class Selectable(Protocol):
    def fileno(self) -> int: ...


class MqttLink:
    def __init__(self, cfg: MqttConfig, topics: Topics, client_id: str, on_message: Handler) -> None:
        self.cfg = cfg
        self.topics = topics
        self.host, self.port, tls = broker_address(cfg.broker)
        self.state = LinkState.DISCONNECTED
        self.connected_since: float | None = None  # wall time, shown; never compared (agent/clock.py)
        self.sessions = 0  # sessions opened so far: a new one is told by this count, not by a time
        self.last_error = ""
        self._on_message = on_message
        self._backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
        self._next_attempt = 0.0
        self._acked_mids: list[int] = []
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        c.max_inflight_messages_set(cfg.inflight)
        c.max_queued_messages_set(0)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password)
        if tls or cfg.tls:
            t = cfg.tls
            c.tls_set(
                ca_certs=str(t.ca_file) if t else None,
                certfile=str(t.cert_file) if t and t.cert_file else None,
                keyfile=str(t.key_file) if t and t.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        c.will_set(topics.status, json.dumps({"state": "offline"}), qos=1, retain=True)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        c.on_publish = self._published
        self.client = c

    # ---- paho callbacks (run inside poll()) ---------------------------------------------------

    def _connected(self, client: paho.Client, _u: object, flags: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            self.last_error = f"broker refused the connection: {rc}"
            return
        self.state = LinkState.CONNECTED
        self.connected_since = time.time()
        self.sessions += 1
        self._backoff.reset()
        client.subscribe([(self.topics.ack, 1), (self.topics.cmd, 1)])
        self.publish_status("online")

    def _disconnected(self, _c: paho.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.last_error = f"disconnected: {rc}"
        self.state = LinkState.DISCONNECTED
        self.connected_since = None
        self._next_attempt = time.monotonic() + self._backoff.next_delay()

    def _message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            # paho hands such a PUBLISH over and raises only when the topic is read; out of this callback
            # the error would end the uplink's thread (tests/fuzz: a hostile broker). Not ours: dropped.
            log.warning("ignoring a message whose topic is not UTF-8 (%d bytes of payload)", len(msg.payload))
            return
        props = dict(getattr(msg.properties, "UserProperty", None) or [])
        self._on_message(topic, bytes(msg.payload), props)

    def _published(self, _c: paho.Client, _u: object, mid: int, _rc: object, _p: object) -> None:
        self._acked_mids.append(mid)

    # ---- driving ------------------------------------------------------------------------------

    def poll(self, timeout: float = 0.01, wake: Selectable | None = None) -> None:
        """Do network I/O for up to `timeout` s; (re)connect when the backoff allows.

        With `wake`, the wait is one select() on the socket and `wake`: it ends at once when either is
        readable (an ack, a command; the owner's signal), and paho's own loop then does the I/O without
        waiting. Data TLS has already read and buffered is not on the socket, so then there is no wait.
        """
        if self.state is LinkState.DISCONNECTED:
            if time.monotonic() < self._next_attempt:
                return
            self._connect()
            return
        if wake is not None and timeout > 0:
            sock = self.client.socket()
            pending = getattr(sock, "pending", None)
            if sock is not None and not (pending is not None and pending()):
                with contextlib.suppress(OSError, ValueError):  # closed under us: paho's loop below says so
                    select.select([sock, wake], [sock] if self.client.want_write() else [], [], timeout)
            timeout = 0.0
        if self.client.loop(timeout) != paho.MQTT_ERR_SUCCESS:
            self._lost()

    @property
    def next_attempt_in(self) -> float:
        """Seconds until the backoff allows the next connection attempt (0 when not disconnected)."""
        if self.state is not LinkState.DISCONNECTED:
            return 0.0
        return max(0.0, self._next_attempt - time.monotonic())

    def _lost(self) -> None:
        """The socket failed under loop() without a DISCONNECT callback (e.g. the broker vanished)."""
        if self.state is not LinkState.DISCONNECTED:
            self._disconnected(self.client, None, None, ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"), None)

    def _connect(self) -> None:
        props = properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        self.state = LinkState.CONNECTING
        try:
            self.client.connect(self.host, self.port, keepalive=self.cfg.keepalive_s, clean_start=False,
                                properties=props)
        except (OSError, ssl.SSLError) as exc:
            self.last_error = f"cannot reach {self.host}:{self.port}: {exc}"
            self.state = LinkState.DISCONNECTED
            self._next_attempt = time.monotonic() + self._backoff.next_delay()

    def publish(self, topic: str, payload: bytes, *, user: dict[str, str], content_type: str, retain: bool = False
                ) -> int:
        props = properties(PacketTypes.PUBLISH)
        props.ContentType = content_type
        props.UserProperty = list(user.items())
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        return int(info.mid)

    def publish_status(self, state: str, **extra: object) -> None:
        body = json.dumps({"state": state, "at": time.time(), **extra}).encode()
        self.publish(self.topics.status, body, user={}, content_type="application/json", retain=True)

    def take_pubacks(self) -> list[int]:
        mids, self._acked_mids = self._acked_mids, []
        return mids

    def close(self) -> None:
        if self.state is LinkState.CONNECTED:
            self.publish_status("offline")
            self.client.loop(0.05)
        self.client.disconnect()
