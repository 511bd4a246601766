"""The reference receiver: shared subscription -> validate -> store once -> ack.

Why the MQTT PUBACK is sent by hand after the store commits (paho manual_ack): if the receiver dies
between receiving and storing, the broker redelivers to another member of the shared subscription.
The per-batch ack on `.../ack` is what the agent waits for; it too is sent only after the commit.
An invalid document is acked with status "invalid" and an error, so the line does not resend it
forever and the operator sees it (the agent raises it as a sync alarm).
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
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

    def _connected(self, client: paho.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            log.error("broker refused the receiver: %s", rc)
            return
        client.subscribe(self.subscription, qos=1)
        self.ready.set()

    def _message(self, client: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        props = dict(getattr(msg.properties, "UserProperty", None) or [])
        site, line = parts[-3], parts[-2]
        ack = self.handle(site, line, bytes(msg.payload), props)
        client.publish(f"{self.prefix}/{site}/{line}/ack", json.dumps(ack).encode(), qos=1)
        client.ack(msg.mid, msg.qos)

    def handle(self, site: str, line: str, payload: bytes, props: dict[str, str]) -> dict[str, Any]:
        """Decode, validate and store one batch; the ack to publish for it."""
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
            return {"batch": batch, "status": "invalid", "error": str(exc)[:500]}
        new, dup = self.store.store(site, line, batch, events)
        self.stats.batches += 1
        self.stats.stored += new
        self.stats.duplicates += dup
        return {"batch": batch, "status": "stored", "doc": doc.get("id"), "stored": new, "duplicates": dup}

    def start(self) -> None:
        """Connect and serve in paho's thread (it reconnects on its own); returns at once."""
        props = properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def serve_forever(self) -> None:
        props = properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_forever(retry_first_connection=True)
