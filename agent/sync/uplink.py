"""The uplink: outbox -> EPCIS documents -> MQTT, delivered only when the receiver acks each batch.

Why at-least-once plus eventIDs gives exactly-once: the agent re-sends any batch whose ack it has not
recorded (after the ack timeout, after every reconnect, after a restart), and the receiver stores an
eventID once. A batch is marked delivered only by the receiver's ack on `.../ack`, never by the
broker's PUBACK, because a broker can lose a message it has acknowledged (restart without
persistence).

Order per line: batches are numbered from the journal order, at most `inflight` are open, and they are
always (re)published in number order on one MQTT session.

Pacing: the thread sleeps in one select() on its MQTT socket and a wake-up (agent/sync/wakeup.py)
that the line's ledger raises after a commit with outbox rows, only when they matter (the first row
when nothing is pending, enough rows to fill the batch otherwise), until the earliest deadline it
knows (a partial batch's `batch_max_ms`, an ack timeout, the status every STATUS_EVERY_S) and at most
FALLBACK_S. Without a wake-up (another process writes the outbox: `lineagent sync run`) it looks at
the outbox every `batch_max_ms / 2` (at least 20 ms, at most FALLBACK_S).

A full or failing disk (agent.ledger.faults) is not the uplink's end: the step that met it wrote
nothing (each outbox write is one transaction), `on_fault` tells the line (which stops), and the uplink
tries again every FAULT_RETRY_S; an ack it could not record is asked for again by the re-send.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from agent.config.mqtt import MqttConfig
from agent.epcis import document, jsonio
from agent.ledger.faults import resource_fault
from agent.sync.backlog import BacklogLevel, SyncAlarm, assess, free_disk_mb
from agent.sync.mqtt import LinkState, MqttLink, Topics
from agent.sync.outbox import Batch, Outbox
from agent.sync.wakeup import NEVER, Wakeup

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/ld+json"
ENCODING_PROPERTY = "content-encoding"  # user property: "deflate" (zlib) or "identity"
STATUS_EVERY_S = 2.0
FALLBACK_S = 1.0  # the longest sleep: a wake-up missed (it cannot be, but) costs at most this
MIN_POLL_S = 0.02  # without a wake-up, the shortest look interval
OFFLINE_WAIT_S = 0.02  # while the handshake runs
FAULT_RETRY_S = 1.0

CommandHandler = Callable[[bytes], dict[str, object]]
AlarmHandler = Callable[[SyncAlarm], None]
FaultHandler = Callable[[BaseException], object]


@dataclass
class UplinkStats:
    batches_sent: int = 0
    batches_resent: int = 0
    acks: int = 0
    duplicate_acks: int = 0
    invalid_batches: int = 0


class Uplink:
    def __init__(
        self,
        outbox: Outbox,
        cfg: MqttConfig,
        topics: Topics,
        *,
        client_id: str | None = None,
        on_command: CommandHandler | None = None,
        on_alarm: AlarmHandler | None = None,
        on_fault: FaultHandler | None = None,
        wakeup: Wakeup | None = None,
    ) -> None:
        """`wakeup`: raised by the ledger that writes the outbox (Ledger.on_outbox(wakeup.added)) in this
        process; None when another process writes it, and the outbox is looked at on a timer."""
        self.outbox = outbox
        self.cfg = cfg
        self.topics = topics
        self.on_command = on_command
        self.on_alarm = on_alarm
        self.on_fault = on_fault
        self.faulted = False  # the last step met a full or failing disk
        self.stats = UplinkStats()
        self.alarm = SyncAlarm(BacklogLevel.OK, "starting", 0, 0.0)
        self._sent: dict[int, float] = {}  # batch id -> monotonic time of the last publish, this session
        self._seen_session = 0
        self._oldest: tuple[int, float] | None = None  # (seq, monotonic time first seen) of the oldest unbatched
        self._next_status = 0.0
        self._acks: list[tuple[int, str, str]] = []  # (batch, outcome, error) taken in this poll
        self.wakeup = wakeup
        self._own_wakeup = wakeup is None  # a private one still ends the select() at stop (wake())
        self._wakeup = wakeup or Wakeup()
        # Without rows counted by the ledger: look every half batch_max_ms, so a partial batch leaves
        # within 1.5 x batch_max_ms.
        self._look_s = min(FALLBACK_S, max(MIN_POLL_S, self.cfg.batch_max_ms / 2000))
        self._wait_s = 0.0
        self.wakes = 0  # select() rounds, for the bench
        self.link = MqttLink(cfg, topics, client_id or f"lineagent-{topics.site}-{topics.line}", self._message)

    # ---- incoming -----------------------------------------------------------------------------

    def _message(self, topic: str, payload: bytes, _props: dict[str, str]) -> None:
        if topic == self.topics.ack:
            self._ack(payload)
        elif topic == self.topics.cmd and self.on_command is not None:
            result = self.on_command(payload)
            self.link.publish(self.topics.cmd_result, json.dumps(result).encode(), user={},
                              content_type="application/json")

    def _ack(self, payload: bytes) -> None:
        """Queue an ack; `_record_acks` writes every ack of one network poll in one transaction."""
        try:
            ack = json.loads(payload)
            batch_id, status = int(ack["batch"]), str(ack["status"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed ack on %s: %r", self.topics.ack, payload[:200])
            return
        error = str(ack.get("error", ""))
        self._acks.append((batch_id, "stored" if status == "stored" else f"invalid: {error}", error))

    def _record_acks(self) -> None:
        acks, self._acks = self._acks, []
        fresh = self.outbox.mark_acked_many([(batch_id, outcome) for batch_id, outcome, _ in acks])
        for (batch_id, outcome, error), new in zip(acks, fresh, strict=True):
            self._sent.pop(batch_id, None)
            if not new:
                self.stats.duplicate_acks += 1
                continue
            self.stats.acks += 1
            if outcome != "stored":
                self.stats.invalid_batches += 1
                log.error("the receiver refused batch %d as invalid: %s", batch_id, error)
                if self.on_alarm is not None:
                    self.on_alarm(SyncAlarm(
                        BacklogLevel.WARN,
                        f"The cloud refused batch {batch_id} as invalid EPCIS ({error}); its events "
                        "stay in the ledger. Call service: a producer wrote a malformed event.",
                        self.alarm.backlog_events, self.alarm.free_disk_mb,
                    ))

    # ---- outgoing -----------------------------------------------------------------------------

    def encode(self, batch: Batch) -> bytes:
        doc = document(self.outbox.events(batch), owned=True,
                       doc_id=f"urn:lineagent:{self.topics.site}:{self.topics.line}:batch:{batch.id}")
        raw = jsonio.dumps(doc)
        return zlib.compress(raw, 1) if self.cfg.compress else raw

    def _publish(self, batch: Batch, *, recorded: bool = False) -> None:
        """Publish a batch; `recorded` when cut() already wrote this publish into the batch row."""
        body = self.encode(batch)
        user = {
            ENCODING_PROPERTY: "deflate" if self.cfg.compress else "identity",
            "batch": str(batch.id),
            "events": str(batch.events),
        }
        self.link.publish(self.topics.events, body, user=user, content_type=CONTENT_TYPE)
        if batch.id in self._sent or batch.attempts:
            self.stats.batches_resent += 1
        self.stats.batches_sent += 1
        self._sent[batch.id] = time.monotonic()
        if not recorded:
            self.outbox.mark_sent(batch.id)

    def _due(self, pending: int, oldest_seq: int | None) -> bool:
        """A batch is due when full, or when its oldest event has waited batch_max_ms, measured on the
        monotonic clock from when this uplink first saw it: the journal's wall time `at` may jump (a
        clock set back an hour would have held a partial batch for an hour)."""
        if pending >= self.cfg.batch_max_events:
            return True
        if oldest_seq is None:
            return False
        now = time.monotonic()
        if self._oldest is None or self._oldest[0] != oldest_seq:
            self._oldest = (oldest_seq, now)
        return (now - self._oldest[1]) * 1000 >= self.cfg.batch_max_ms

    def wake(self) -> None:
        """End the current wait now (the owner set the stop event)."""
        self._wakeup.wake()

    def step(self) -> bool:
        """One round: network I/O, then (re)publish due batches and cut new ones; False when offline.

        The poll waits until an ack or command arrives, the wake-up is raised, or the earliest deadline
        `_pace` found last round; with more due at once (a backlog after an outage) it does not wait.
        """
        self.wakes += 1
        self.link.poll(self._wait_s, self._wakeup)
        self._wakeup.clear()
        self._wait_s = 0.0
        self._record_acks()
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            self._check_backlog()
        if self.link.state is not LinkState.CONNECTED:
            return False
        if self.link.sessions != self._seen_session:  # a new session: everything open is due again
            self._seen_session = self.link.sessions
            self._sent.clear()
        self.link.take_pubacks()
        self._wakeup.look()  # rows committed from here on are counted against what the queries below see
        open_batches = self.outbox.unacked(self.cfg.inflight)
        for batch in open_batches:
            sent = self._sent.get(batch.id)
            if sent is None or now - sent >= self.cfg.ack_timeout_s:
                self._publish(batch)
        room = self.cfg.inflight - len(open_batches)
        pending = 0
        while room > 0:
            pending, oldest = self.outbox.pending(self.cfg.batch_max_events)
            if not pending or not self._due(pending, oldest):
                break
            cut = self.outbox.cut(self.cfg.batch_max_events, sending=True)
            if cut is None:
                pending = 0
                break
            self._publish(cut, recorded=True)
            room -= 1
            pending = -1  # more may be due at once: flush and come straight back
        if pending >= 0:
            self._pace(now, room, pending)
        return True

    def _pace(self, now: float, room: int, pending: int) -> None:
        """How long the next poll may sleep, and how many new outbox rows should end it early.

        Rows matter only while the window has room: the first one (nothing pending: it starts a
        partial batch's clock) or the ones that fill the batch (one is already waiting for its
        batch_max_ms). Deadlines: that partial batch's, the ack timeout of the oldest batch in flight,
        the status, and FALLBACK_S."""
        deadline = min(self._next_status, now + FALLBACK_S)
        if self._sent:
            deadline = min(deadline, min(self._sent.values()) + self.cfg.ack_timeout_s)
        if room <= 0:
            self._wakeup.expect(NEVER)
        else:
            if pending and self._oldest is not None:
                deadline = min(deadline, self._oldest[1] + self.cfg.batch_max_ms / 1000)
            if self._own_wakeup:
                deadline = min(deadline, now + self._look_s)
            self._wakeup.expect(max(1, self.cfg.batch_max_events - pending) if pending else 1)
        self._wait_s = max(0.0, deadline - time.monotonic())

    def _check_backlog(self) -> None:
        backlog = self.outbox.backlog()
        alarm = assess(backlog.undelivered_events, free_disk_mb(self.outbox.path), self.cfg)
        if alarm.level != self.alarm.level and self.on_alarm is not None:
            self.on_alarm(alarm)
        self.alarm = alarm
        self.outbox.conn.execute(
            "INSERT INTO sync_state(key, value) VALUES ('link', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (json.dumps({"state": str(self.link.state), "since": self.link.connected_since, "at": time.time(),
                         "last_error": self.link.last_error, "alarm": str(alarm.level)}),),
        )
        if self.link.state is LinkState.CONNECTED:
            self.link.publish_status("online", backlog=backlog.undelivered_events, alarm=str(alarm.level))

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set; the daemon gives this its own thread."""
        try:
            while not stop.is_set():
                try:
                    online = self.step()
                except sqlite3.Error as exc:
                    self._fault(exc)
                    stop.wait(FAULT_RETRY_S)
                    continue
                self.faulted = False
                if not online:  # offline: the backoff decides when to dial again
                    stop.wait(min(FALLBACK_S, max(OFFLINE_WAIT_S, self.link.next_attempt_in)))
        finally:
            self.close()

    def _fault(self, exc: sqlite3.Error) -> None:
        """A full or failing disk: tell the line once, keep trying; anything else is a bug and raises."""
        if resource_fault(exc) is None:
            raise exc
        if not self.faulted:
            log.error("uplink: the ledger cannot write (%s); retrying every %.0f s", exc, FAULT_RETRY_S)
            if self.on_fault is not None:
                self.on_fault(exc)
        self.faulted = True

    def close(self) -> None:
        """Say offline and disconnect; acks that arrive during the goodbye are still recorded."""
        self.link.close()
        try:
            self._record_acks()
        except sqlite3.Error as exc:  # a full disk: the receiver's re-ack after the next re-send counts
            self._fault(exc)
        if self._own_wakeup:
            self._wakeup.close()

    def drained(self) -> bool:
        return self.outbox.drained()
