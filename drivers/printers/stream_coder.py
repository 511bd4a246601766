"""Shared plumbing of the lock-step byte-stream coder drivers (Videojet WSI, Hitachi, Markem NGPCL).

Why: the three protocols differ in their bytes and exchange rules; opening and re-opening the link,
serializing exchanges, retrying queries, telling a silent device from a slow one, publishing events
and the counter-derived FIFO bookkeeping are the same, and a fix to them must reach all three.

A subclass implements `_probe()` (a harmless query, run on every (re)connect and to test a silent
device), `_after_outage()` (bring the coder's queue to a known state after the link was down), and
the Printer commands through `self._exchange()`.

Link health, as in drivers/printers/framed.py: a closed transport is re-opened on the next call;
`link_down_after` unanswered requests in a row on an open link (a serial device that lost power goes
silent, it does not hang up) also mean the link is down. Either way LINK_DOWN, LinkDown errors until
the device answers the probe again, then LINK_UP and `_after_outage()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from pydantic import Field

from drivers.printers.base import (
    CoderSettings,
    DeviceTimeout,
    LinkDown,
    Printer,
    PrintEvent,
    PrintEventKind,
    ProtocolError,
)
from drivers.printers.coder_link import CoderLink
from drivers.printers.counted_fifo import CountedFifo

log = logging.getLogger(__name__)
T = TypeVar("T")


class StreamSettings(CoderSettings):
    url: str = Field(description="tcp://host:port, or a serial_for_url URL (/dev/ttyUSB0, a pty path)")
    baud: int = Field(115200, gt=0)
    timeout_s: float = Field(1.0, gt=0, le=60, description="wait for one answer")
    retries: int = Field(2, ge=0, description="re-sends of a query (never of a store) after silence or garbage")
    link_down_after: int = Field(3, ge=1, description="unanswered requests in a row that mean the link is down")
    trace: bool = Field(False, description="log every chunk in and out as hex (logger lineagent.trace)")


class StreamCoder(Printer):
    def __init__(self, settings: StreamSettings, *, name: str, capacity: int) -> None:
        self.name = name
        self.timeout_s = settings.timeout_s
        self.retries = settings.retries
        self.link_down_after = settings.link_down_after
        self.link = CoderLink(settings.url, name=name, baud=settings.baud, trace=settings.trace)
        self.fifo = CountedFifo(name, capacity)
        self._lock = asyncio.Lock()
        self._events: asyncio.Queue[PrintEvent] = asyncio.Queue()
        self._was_linked = False
        self._unanswered = 0
        self._silent_down = False
        self._closed = True  # until connect(); a closed driver does not reopen the link on its own

    # -- hooks ----------------------------------------------------------------------------------
    async def _probe(self) -> None:
        """A harmless query: proves the device speaks our protocol; reads baseline counters."""

    async def _after_outage(self) -> None:
        """The link was down: the coder may have lost its queue, or kept it. Default: assume lost."""
        self._doubt("link was down")

    def _reset_parser(self) -> None:
        """Drop a half-parsed answer (subclasses with a de-framer reset it here)."""

    def _doubt(self, why: str) -> None:
        """The coder's queue may differ from ours (silence, a garbled store)."""
        self._publish(self.fifo.lose(why))

    # -- lifecycle ------------------------------------------------------------------------------
    async def connect(self) -> None:
        async with self._lock:
            self._closed = False
            await self._open_locked()

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            await self.link.close()

    async def events(self) -> AsyncIterator[PrintEvent]:
        while True:
            yield await self._events.get()

    async def _open_locked(self) -> None:
        await self.link.open()
        try:
            await self._probe()
            if self._was_linked:
                await self._after_outage()
        except BaseException:
            await self.link.close()
            raise
        self._unanswered = 0
        self._silent_down = False
        self._emit(PrintEventKind.LINK_UP, "reconnected" if self._was_linked else "connected")
        self._was_linked = True

    async def _ensure_up(self) -> None:
        if self._closed:
            raise LinkDown(f"{self.name}: not connected (call connect() first)")
        if not self.link.is_open:
            await self._open_locked()
        elif self._silent_down:
            try:
                await self._probe()
            except DeviceTimeout as exc:
                await self._resync()
                raise LinkDown(f"{self.name}: device still not answering on {self.link.url}") from exc
            await self._after_outage()
            self._silent_down = False
            self._unanswered = 0
            log.warning("%s: device answers again", self.name)
            self._emit(PrintEventKind.LINK_UP, "device answers again")

    # -- exchanges ------------------------------------------------------------------------------
    async def _exchange(self, op: Callable[[], Awaitable[T]], *, retry: bool = False, stores: bool = False) -> T:
        """Run one request/reply under the lock.

        `retry`: a query, re-run after silence or garbage up to `retries` times. Silence may be a
        power loss, and garbage in answer to a store (`stores`) leaves open whether it was stored;
        either way the driver's record of the coder's queue is no longer trusted (`_doubt`).
        """
        async with self._lock:
            attempts = 1 + (self.retries if retry else 0)
            for attempt in range(attempts):
                last = attempt + 1 == attempts
                try:
                    await self._ensure_up()
                    result = await op()
                except LinkDown:
                    if self._was_linked and not self.link.is_open and not self._silent_down:
                        self._silent_down = True  # reported once; cleared when the link is back
                        self._emit(PrintEventKind.LINK_DOWN, "link lost")
                    raise
                except DeviceTimeout as exc:
                    await self._resync()
                    self._doubt("no answer (power loss?)")
                    self._unanswered += 1
                    if self._unanswered >= self.link_down_after and not self._silent_down:
                        self._silent_down = True
                        log.warning("%s: %d requests unanswered, link considered down", self.name,
                                    self._unanswered)
                        self._emit(PrintEventKind.LINK_DOWN, f"{self._unanswered} requests unanswered")
                    if self._silent_down:
                        raise LinkDown(f"{self.name}: device not answering on {self.link.url}") from exc
                    if last:
                        raise
                except ProtocolError:
                    await self._resync()
                    if stores:
                        self._doubt("garbled answer to a store")
                    if last:
                        raise
                else:
                    self._unanswered = 0
                    return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _resync(self) -> None:
        """Swallow what is still arriving so a late answer is not taken for the next one. A device that
        never falls quiet (tests/fuzz: a flood) fills the link's MAX_ANSWER instead: its link is dropped,
        so the next request starts on a fresh one (a TCP reconnect; a re-opened port drops its input)."""
        try:
            while True:
                await self.link.read(min(0.05, self.timeout_s), "late bytes")
        except (DeviceTimeout, LinkDown):
            pass
        except ProtocolError as exc:
            log.warning("%s: dropping the link: %s", self.name, exc)
            await self.link.close()
        self._reset_parser()

    def _publish(self, events: list[PrintEvent]) -> None:
        for e in events:
            self._events.put_nowait(e)

    def _emit(self, kind: PrintEventKind, detail: str = "") -> None:
        self._events.put_nowait(PrintEvent(kind=kind, at=time.monotonic(), detail=detail))
