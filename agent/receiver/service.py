"""The reference receiver: shared subscription -> validate -> store once -> ack.

Why the MQTT PUBACK is sent by hand after the store commits (paho manual_ack): if the receiver dies
between receiving and storing, the broker redelivers to another member of the shared subscription.
The per-batch ack on `.../ack` is what the agent waits for; it too is sent only after the commit.
An invalid document is acked with status "invalid" and an error, so the line does not resend it
forever and the operator sees it (the agent raises it as a sync alarm).

Group commit: paho's thread only queues what arrives; one store thread takes every batch waiting (up
to GROUP_MAX_BATCHES), stores them in ONE transaction, and only after that commit publishes each
batch's ack and its PUBACK, in arrival order. A commit syncs the WAL, and committing per batch was
the largest single cost of a backlog drain (bench.sync); when batches arrive one at a time a group is
one batch, as before. paho runs in its own thread (loop_start) in every mode, so every write to its
socket happens there: the store thread only queues packets.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.epcis import DocumentInvalid, jsonio
from agent.epcis.document import prepare, validate_batch
from agent.receiver.store import EventStore
from agent.sync.mqtt import broker_address, properties

log = logging.getLogger(__name__)

GROUP_MAX_BATCHES = 32  # batches stored in one transaction at most (an agent keeps 20 in flight by default)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One events message as paho handed it over, waiting for the store thread."""

    site: str
    line: str
    payload: bytes
    props: dict[str, str]
    mid: int
    qos: int


@dataclass
class ReceiverStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0


class Receiver:
    def __init__(
        self,
        broker: str,
        store: EventStore,
        *,
        prefix: str = "lineagent",
        group: str = "lineagent-receivers",
        client_id: str = "lineagent-receiver",
        validate_documents: bool = True,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.stats = ReceiverStats()
        self.validate_documents = validate_documents
        if validate_documents:
            prepare()  # the first batch's ack should not wait for the schema to compile
        self.subscription = f"$share/{group}/{prefix}/+/+/events"
        self.host, self.port, tls = broker_address(broker)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=True)
        if tls:
            c.tls_set()
        c.max_inflight_messages_set(100)
        c.on_connect = self._connected
        c.on_message = self._message
        c.reconnect_delay_set(1, 5)
        self.client = c
        self.ready = threading.Event()
        self._inbox: queue.Queue[Delivery | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def _connected(self, client: paho.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            log.error("broker refused the receiver: %s", rc)
            return
        client.subscribe(self.subscription, qos=1)
        self.ready.set()

    def _message(self, client: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            parts = msg.topic.split("/")
        except UnicodeDecodeError:  # paho raises only when the topic is read
            parts = []
        if len(parts) < 4 or parts[-1] != "events":
            # Out of this callback an error would end paho's network thread: the receiver would go deaf
            # (tests/fuzz: a hostile broker). Acked so the broker does not hand it over again.
            log.warning("ignoring a message not on <prefix>/<site>/<line>/events (%d bytes)", len(msg.payload))
            client.ack(msg.mid, msg.qos)
            return
        props = dict(getattr(msg.properties, "UserProperty", None) or [])
        self._inbox.put(Delivery(parts[-3], parts[-2], bytes(msg.payload), props, msg.mid, msg.qos))

    def _serve(self) -> None:
        """The store thread: until stop(), store each group of waiting batches, then ack each batch."""
        while (first := self._inbox.get()) is not None:
            group = [first]
            closing = False
            while len(group) < GROUP_MAX_BATCHES:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                group.append(more)
            acks = self.handle_many([(d.site, d.line, d.payload, d.props) for d in group])
            for d, ack in zip(group, acks, strict=True):  # only now: the commit holding them is done
                self.client.publish(f"{self.prefix}/{d.site}/{d.line}/ack", json.dumps(ack).encode(), qos=1)
                self.client.ack(d.mid, d.qos)
            if closing:
                return

    def handle(self, site: str, line: str, payload: bytes, props: dict[str, str]) -> dict[str, Any]:
        """Decode, validate and store one batch; the ack to publish for it."""
        return self.handle_many([(site, line, payload, props)])[0]

    def handle_many(self, messages: Sequence[tuple[str, str, bytes, dict[str, str]]]) -> list[dict[str, Any]]:
        """Decode and validate each batch, store the valid ones in one transaction; an ack for each."""
        acks: list[dict[str, Any]] = []
        valid: list[tuple[int, str, str, int, list[dict[str, Any]], Any]] = []
        for site, line, payload, props in messages:
            batch = int(props.get("batch", "-1"))
            try:
                raw = zlib.decompress(payload) if props.get("content-encoding") == "deflate" else payload
                doc = jsonio.loads(raw)
                if self.validate_documents:
                    validate_batch(doc)
                events = doc["epcisBody"]["eventList"]
                missing = [i for i, e in enumerate(events) if not e.get("eventID")]
                if missing:
                    raise DocumentInvalid(f"events {missing[:5]} have no eventID")
            except (zlib.error, ValueError, KeyError, TypeError) as exc:
                self.stats.invalid += 1
                log.error("batch %s from %s/%s is invalid: %s", batch, site, line, exc)
                acks.append({"batch": batch, "status": "invalid", "error": str(exc)[:500]})
                continue
            valid.append((len(acks), site, line, batch, events, doc.get("id")))
            acks.append({})
        counts = self.store.store_many([(site, line, batch, events) for _, site, line, batch, events, _ in valid])
        for (i, _site, _line, batch, _events, doc_id), (new, dup) in zip(valid, counts, strict=True):
            self.stats.batches += 1
            self.stats.stored += new
            self.stats.duplicates += dup
            acks[i] = {"batch": batch, "status": "stored", "doc": doc_id, "stored": new, "duplicates": dup}
        return acks

    def start(self) -> None:
        """Connect and serve in background threads (paho's reconnects on its own); returns at once."""
        self._connect()
        self._worker = threading.Thread(target=self._serve_logged, name="receiver-store", daemon=True)
        self._worker.start()

    def _serve_logged(self) -> None:
        """The store thread of start(): a store that fails stops the service loudly (nothing more is
        acked; the broker keeps every unacked batch for the next receiver)."""
        try:
            self._serve()
        except Exception:
            log.exception("the receiver's store failed; it stops storing and acking")
            self.client.disconnect()
            raise

    def stop(self) -> None:
        """Store and ack what has arrived, then disconnect."""
        if self._worker is not None:
            self._inbox.put(None)
            self._worker.join()
            self._worker = None
        self.client.disconnect()
        self.client.loop_stop()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (KeyboardInterrupt), then disconnect."""
        self._connect()
        try:
            self._serve()
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def _connect(self) -> None:
        props = properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
