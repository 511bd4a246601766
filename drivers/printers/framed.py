"""The concrete base of every framed coder protocol (template method, as python-can's `BusABC`).

Why: timeouts, retries, the request/reply lock, reconnecting, frame tracing, and the event stream are
the same for Leibinger, the generic protocol and the other framed drivers; each protocol should only
say how its payloads look. So this base owns:

- the link: one transport (drivers/transport.py), one reader task that de-frames everything that
  arrives (drivers/framing.py) and routes each frame to the oldest waiting request, or to
  `on_unsolicited` (print-complete and similar messages);
- requests: `exchange(payload)` sends one frame under the lock and waits `timeout_s` for its reply;
  `exchange_many(payloads)` keeps up to `window` frames in flight (pipelining, for FIFO refills:
  lock-step at 115,200 baud wastes most of the link waiting for each answer);
- retries: a request marked `retry=True` (queries; never a record push, which could store twice) is
  re-sent after a timeout or a garbled reply, `retries` times;
- link health: a closed transport (TCP reset, serial error) starts a jittered-backoff reconnect loop;
  `link_down_after` timed-out requests in a row on an open link (a serial device powered off goes
  silent, it does not "disconnect") also count as the link down. Either way a LINK_DOWN event, LinkDown
  errors until the device answers again, then LINK_UP and the `on_link_up` hook, where a protocol
  re-reads the coder's FIFO to find out what a power loss cleared.

A protocol subclass implements `frame_spec`, optionally `is_unsolicited`/`on_unsolicited`,
`reply_matches`, `on_link_up`, and the Printer methods in terms of `exchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from confkit.base import Strict
from drivers.framing import GARBAGE, Deframer, Frame, FrameError, FrameSpec, encode
from drivers.printers.base import (
    BadRecord,
    CoderSettings,
    DeviceTimeout,
    Fault,
    LinkDown,
    Printer,
    PrinterError,
    PrintEvent,
    PrintEventKind,
    ProtocolError,
)
from drivers.transport import Backoff, LinkClosed, ReadTimeout, Transport, TransportError, open_transport

log = logging.getLogger(__name__)


class FramedSettings(CoderSettings):
    """Keys every framed coder accepts in its `devices.coders.<name>` section."""

    url: str = Field(description="serial_for_url URL (/dev/ttyUSB0, socket://h:p, loop://) or tcp://host:port")
    baud: int = Field(115200, gt=0)
    timeout_s: float = Field(1.0, gt=0, description="wait for one reply")
    retries: int = Field(2, ge=0, description="re-sends of a query after a timeout or garbled reply")
    trace: bool = Field(False, description="log every frame in and out as hex (logger lineagent.trace)")
    job: str | None = Field(None, description="job/message selected on connect")
    window: int = Field(8, ge=1, le=256, description="frames in flight when pushing records (1 = lock-step)")
    connect_timeout_s: float = Field(3.0, gt=0)
    reconnect_min_s: float = Field(0.05, gt=0)
    reconnect_max_s: float = Field(5.0, gt=0)
    link_down_after: int = Field(3, ge=1, description="timed-out requests in a row that mean the link is down")


class LinkState(StrEnum):
    CLOSED = "closed"  # not connected, or close() called
    UP = "up"
    RECONNECTING = "reconnecting"  # the transport went away; the reconnect loop is running
    SILENT = "silent"  # transport open, but the device stopped answering (serial power loss)


@dataclass
class _Waiter:
    request: bytes
    future: asyncio.Future[Frame] = field(repr=False)
    noise: str = ""  # garbage or a foreign frame seen while waiting: a timeout is then a ProtocolError


class FramedPrinter(Printer):
    """Base for framed protocols; see the module docstring for what a subclass provides."""

    Settings: ClassVar[type[Strict]] = FramedSettings
    frame_spec: FrameSpec

    def __init__(self, settings: FramedSettings, *, name: str = "coder") -> None:
        self.settings = settings
        self.name = name
        self.link = LinkState.CLOSED
        self.window = settings.window  # a protocol may force 1 (lock-step only)
        self._transport: Transport | None = None
        self._deframer: Deframer | None = None
        self._waiters: deque[_Waiter] = deque()
        self._lock = asyncio.Lock()
        self._events: asyncio.Queue[PrintEvent] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._silent_count = 0
        self._quiet_due = False
        self._resync_due = False
        self._in_resync = False
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)

    # --- hooks for protocols ---------------------------------------------------------------------

    def is_unsolicited(self, frame: Frame) -> bool:
        """True for frames the device sends on its own (print complete...); default: none."""
        return False

    def on_unsolicited(self, frame: Frame) -> None:
        """Handle an unsolicited frame (usually: update the FIFO tracker and `emit` events)."""

    def reply_matches(self, request: bytes, reply: Frame) -> bool:
        """Does `reply` answer `request`? A non-matching frame is a stale late reply and is dropped."""
        return True

    async def on_link_up(self) -> None:
        """Re-sync after the device answers again (reconnect, end of silence): re-read its FIFO."""

    # --- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.link is not LinkState.CLOSED:
            return
        transport = self._new_transport()
        try:
            await transport.open(self.settings.connect_timeout_s)
        except LinkClosed as exc:
            raise LinkDown(str(exc)) from exc
        self._attach(transport)
        try:
            await self.on_connected()
        except BaseException:
            await self.close()  # all or nothing: no half-initialised driver holding the link
            raise

    async def on_connected(self) -> None:
        """First contact after connect(): protocols select the configured job, read the FIFO."""

    async def close(self) -> None:
        self.link = LinkState.CLOSED
        # Detached first: the reader loop runs while `self._transport is transport`, so it ends on its
        # own even if its cancellation is lost (tests/fuzz: a device streaming without end).
        transport, self._transport = self._transport, None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_waiters(LinkDown(f"{self.name}: closed"))
        if transport is not None:
            await transport.close()

    async def events(self) -> AsyncIterator[PrintEvent]:
        while True:
            yield await self._events.get()

    def pending_events(self) -> list[PrintEvent]:
        """The events emitted so far and not yet taken, without waiting (for a caller that polls)."""
        out: list[PrintEvent] = []
        while not self._events.empty():
            out.append(self._events.get_nowait())
        return out

    def emit(
        self, kind: PrintEventKind, *, seq: int | None = None, faults: frozenset[Fault] = frozenset(), detail: str = ""
    ) -> None:
        self._events.put_nowait(PrintEvent(kind, time.monotonic(), seq=seq, faults=faults, detail=detail))

    # --- requests --------------------------------------------------------------------------------

    async def exchange(self, payload: bytes, *, retry: bool = False, raw: bool = False) -> Frame:
        """Send one frame and return its reply; DeviceTimeout/ProtocolError/LinkDown otherwise.
        `raw`: send the bytes unframed (an ENQ before a frame, for handshaking protocols)."""
        await self._resync_if_due()
        attempts = 1 + (self.settings.retries if retry else 0)
        last: PrinterError = DeviceTimeout(f"{self.name}: no reply")
        for attempt in range(attempts):
            try:
                async with self._lock:
                    return await self._send_and_wait(payload, raw=raw)
            except (DeviceTimeout, ProtocolError) as exc:
                last = exc
                if attempt + 1 < attempts:
                    log.info("%s: retrying %r after: %s", self.name, payload[:24], exc)
        raise last

    async def exchange_many(self, payloads: Sequence[bytes]) -> list[Frame | PrinterError]:
        """Pipelined with a sliding window: up to `window` frames in flight, and as each answer arrives
        the next frame leaves, so the line never idles waiting for a round trip. One result per
        payload, in order. Never retried (pushes are not idempotent): the caller decides what a failed
        item means. Every payload is framed before the first is sent, so a BadRecord sends nothing."""
        wires = [self._frame(p) for p in payloads]
        await self._resync_if_due()
        results: list[Frame | PrinterError] = []
        inflight: deque[_Waiter] = deque()
        async with self._lock:
            try:
                for payload, wire in zip(payloads, wires, strict=True):
                    if len(inflight) >= self.window:
                        results.append(await self._collect(inflight.popleft(), partial=True))
                    inflight.append(await self._send(payload, wire))
                while inflight:
                    results.append(await self._collect(inflight.popleft(), partial=True))
            except LinkDown as exc:
                results.extend([exc] * (len(payloads) - len(results)))
            finally:  # a waiter left behind would take the next request's answer
                self._forget(list(inflight))
        return results

    async def exchange_batch(self, frames: Sequence[bytes], *, answered: Sequence[bool] | None = None) -> list[Frame]:
        """Framed requests in ONE write; the replies of those `answered` (default: all) in order. Never
        retried (the caller falls back to `exchange`). Why: a device handles requests back to back as
        they arrive, so queries sent together (and records between them) describe one moment, where
        one at a time a print or a stop could come between them (and each costs its own round trip)."""
        await self._resync_if_due()
        flags = [True] * len(frames) if answered is None else list(answered)
        async with self._lock:
            transport = self._linked()
            loop = asyncio.get_running_loop()
            waiters = [_Waiter(f, loop.create_future()) for f, a in zip(frames, flags, strict=True) if a]
            self._waiters.extend(waiters)  # before the write: the answers may beat its return
            try:
                await transport.write(b"".join(frames))
            except LinkClosed as exc:
                self._forget(waiters)
                self._link_lost(str(exc))
                raise LinkDown(str(exc)) from exc
            replies: list[Frame] = []
            try:
                for w in waiters:
                    reply = await self._collect(w, partial=False)
                    assert not isinstance(reply, PrinterError)  # partial=False raises instead
                    replies.append(reply)
            finally:  # a waiter left behind would take the next request's answer
                self._forget(waiters[len(replies):])
        return replies

    def _frame(self, payload: bytes) -> bytes:
        try:
            return encode(self.frame_spec, payload)
        except ValueError as exc:
            raise BadRecord(f"{self.name}: cannot frame the request: {exc}") from None

    async def _send_and_wait(self, payload: bytes, *, raw: bool = False) -> Frame:
        waiter = await self._send(payload, payload if raw else self._frame(payload))
        reply = await self._collect(waiter, partial=False)
        if isinstance(reply, PrinterError):  # not reached: partial=False raises instead
            raise reply
        return reply

    async def _send(self, payload: bytes, wire: bytes) -> _Waiter:
        if self._quiet_due and not self._waiters:
            # After a timeout the late answer may still come: let it arrive with nobody waiting (it is
            # dropped) rather than be taken for the answer to this request.
            self._quiet_due = False
            await asyncio.sleep(2 * self.settings.timeout_s)
        transport = self._linked()
        waiter = _Waiter(payload, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)  # before the write: the answer may beat the write's return
        try:
            await transport.write(wire)
        except LinkClosed as exc:
            self._forget([waiter])
            self._link_lost(str(exc))
            raise LinkDown(str(exc)) from exc
        return waiter

    async def _collect(self, waiter: _Waiter, *, partial: bool) -> Frame | PrinterError:
        """The answer to `waiter` within timeout_s (counted from now: it is the oldest in flight)."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):  # not wait_for: see drivers/transport.py
                frame = await waiter.future
        except TimeoutError:
            self._forget([waiter])
            err = self._timed_out(waiter)
            if not partial or isinstance(err, LinkDown):
                raise err from None
            return err
        except ProtocolError as exc:
            if not partial:
                raise
            return exc
        self._answered()
        return frame

    def _new_transport(self) -> Transport:
        s = self.settings
        return open_transport(s.url, baud=s.baud, name=self.name, trace=s.trace)

    def _linked(self) -> Transport:
        if self._transport is None or self.link in (LinkState.CLOSED, LinkState.RECONNECTING):
            raise LinkDown(f"{self.name}: link is {self.link} ({self.settings.url})")
        return self._transport

    def _forget(self, waiters: Sequence[_Waiter]) -> None:
        for w in waiters:
            with contextlib.suppress(ValueError):
                self._waiters.remove(w)

    def _answered(self) -> None:
        self._silent_count = 0
        if self.link is LinkState.SILENT:
            self.link = LinkState.UP
            self._resync_due = True
            log.warning("%s: device answers again", self.name)
            self.emit(PrintEventKind.LINK_UP, detail="device answers again")

    def _timed_out(self, waiter: _Waiter) -> PrinterError:
        self._quiet_due = True
        if waiter.noise:  # the device talks, but not sense: not a silent link
            return ProtocolError(f"{self.name}: no valid reply to {waiter.request[:24]!r}; got {waiter.noise}")
        self._silent_count += 1
        if self.link is LinkState.UP and self._silent_count >= self.settings.link_down_after:
            self.link = LinkState.SILENT
            log.warning("%s: %d requests unanswered, link considered down", self.name, self._silent_count)
            self.emit(PrintEventKind.LINK_DOWN, detail=f"{self._silent_count} requests unanswered")
        if self.link is LinkState.SILENT:
            return LinkDown(f"{self.name}: device not answering on {self.settings.url}")
        return DeviceTimeout(f"{self.name}: no reply to {waiter.request[:24]!r} within {self.settings.timeout_s} s")

    async def _resync_if_due(self) -> None:
        if self._resync_due and not self._in_resync and self.link is LinkState.UP:
            self._in_resync = True
            try:
                await self.on_link_up()
                self._resync_due = False
            finally:
                self._in_resync = False

    # --- reader and reconnect --------------------------------------------------------------------

    def _attach(self, transport: Transport) -> None:
        self._transport = transport
        self._deframer = Deframer(self.frame_spec)
        self.link = LinkState.UP
        self._silent_count = 0
        self._spawn(self._read_loop(transport), "reader")

    def _spawn(self, coro: object, what: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=f"{self.name}-{what}")  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self, transport: Transport) -> None:
        deframer = self._deframer
        assert deframer is not None
        while self._transport is transport:
            try:
                data = await transport.read(1.0)
            except ReadTimeout:
                continue
            except TransportError as exc:
                if self._transport is transport:
                    self._link_lost(str(exc))
                return
            for item in deframer.feed(data):
                self._route(item)

    def _route(self, item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            # Noise before a frame may still be followed by the good reply: remember it and let the
            # waiter's timeout decide. A broken frame (checksum, escape) was the reply: fail now.
            if not self._waiters:
                log.warning("%s: unexpected bytes: %s", self.name, item)
            elif item.reason == GARBAGE:
                self._waiters[0].noise = str(item)
            else:
                w = self._waiters.popleft()
                if not w.future.done():
                    w.future.set_exception(item)
            return
        if self.is_unsolicited(item):
            self.on_unsolicited(item)
            return
        while self._waiters:
            w = self._waiters.popleft()
            if w.future.done():
                continue
            if self.reply_matches(w.request, item):
                w.future.set_result(item)
                return
            self._waiters.appendleft(w)
            w.noise = f"an unexpected frame {item.payload[:40]!r}"
            break
        log.info("%s: dropped a reply nobody waits for: %r", self.name, item.payload[:40])

    def _link_lost(self, reason: str) -> None:
        if self.link in (LinkState.CLOSED, LinkState.RECONNECTING):
            return
        log.warning("%s: link lost: %s", self.name, reason)
        self.link = LinkState.RECONNECTING
        self._fail_waiters(LinkDown(f"{self.name}: {reason}"))
        self.emit(PrintEventKind.LINK_DOWN, detail=reason)
        self._spawn(self._reconnect_loop(), "reconnect")

    def _fail_waiters(self, exc: PrinterError) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.future.done():
                w.future.set_exception(exc)

    async def _reconnect_loop(self) -> None:
        old = self._transport
        self._transport = None
        if old is not None:
            await old.close()
        self._backoff.reset()
        while self.link is LinkState.RECONNECTING:
            await asyncio.sleep(self._backoff.next_delay())
            transport = self._new_transport()
            try:
                await transport.open(self.settings.connect_timeout_s)
            except LinkClosed as exc:
                log.info("%s: reconnect failed: %s", self.name, exc)
                continue
            if self.link is not LinkState.RECONNECTING:  # closed meanwhile
                await transport.close()
                return
            self._attach(transport)
            self._resync_due = True
            log.warning("%s: reconnected", self.name)
            self.emit(PrintEventKind.LINK_UP, detail="reconnected")
            return
