"""Shared plumbing of the byte-stream coder drivers (Videojet WSI, Hitachi, Markem NGPCL).

Why: each of those protocols differs only in its bytes and its exchange rules; opening and re-opening
the link, serializing exchanges, publishing events and the counter-derived FIFO bookkeeping are the
same, and a fix to them must reach all three. A subclass implements `_probe()` (called after every
(re)connect) and the Printer commands with `self._exchange()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from pydantic import Field

from agent.config.base import Strict
from drivers.printers.base import DeviceTimeout, LinkDown, Printer, PrintEvent, PrintEventKind, ProtocolError
from drivers.printers.coder_link import CoderLink
from drivers.printers.counted_fifo import CountedFifo

T = TypeVar("T")


class StreamSettings(Strict):
    url: str = Field(description="tcp://host:port, or a serial_for_url URL (/dev/ttyUSB0, a pty path)")
    baud: int = Field(115200, gt=0)
    timeout_s: float = Field(1.0, gt=0, le=60, description="per answer")
    trace: bool = Field(False, description="log every frame in and out as hex")


class StreamCoder(Printer):
    def __init__(self, settings: StreamSettings, *, name: str, capacity: int) -> None:
        self.name = name
        self.timeout_s = settings.timeout_s
        self.link = CoderLink(settings.url, name=name, baud=settings.baud, trace=settings.trace)
        self.fifo = CountedFifo(name, capacity)
        self._lock = asyncio.Lock()
        self._events: asyncio.Queue[PrintEvent] = asyncio.Queue()
        self._was_linked = False

    async def connect(self) -> None:
        async with self._lock:
            await self._open_locked()

    async def close(self) -> None:
        async with self._lock:
            await self.link.close()

    async def events(self) -> AsyncIterator[PrintEvent]:
        while True:
            yield await self._events.get()

    async def _open_locked(self) -> None:
        await self.link.open()
        try:
            await self._probe()
        except BaseException:
            await self.link.close()
            raise
        if self._was_linked:
            self._relinked()
        self._was_linked = True
        self._emit(PrintEventKind.LINK_UP)

    async def _probe(self) -> None:
        """Check that the far end speaks our protocol and read the baseline counters."""

    def _relinked(self) -> None:
        """Whatever the coder held may be gone (power loss, reboot): unconfirmed records are in doubt."""
        self._doubt("link re-established")

    def _reset_parser(self) -> None:
        """Drop a half-parsed answer (subclasses with a de-framer reset it here)."""

    async def _resync(self) -> None:
        """Swallow what is still arriving so a late answer is not taken for the next one."""
        try:
            while True:
                await self.link.read(min(0.05, self.timeout_s), "late bytes")
        except DeviceTimeout:
            pass
        self._reset_parser()

    async def _exchange(self, op: Callable[[], Awaitable[T]], *, stores: bool = False) -> T:
        """Run one request/reply under the lock, reopening a dropped link first.

        Silence may be a power loss (a serial device goes quiet, it does not hang up), and garbage in
        answer to a store (`stores=True`) leaves open whether the record was stored; either way the
        driver's record of the coder's queue can no longer be trusted, so it is declared lost.
        """
        async with self._lock:
            if not self.link.is_open:
                if self._was_linked:
                    self._emit(PrintEventKind.LINK_DOWN, "reconnecting")
                await self._open_locked()
            try:
                return await op()
            except LinkDown:
                self._emit(PrintEventKind.LINK_DOWN, "link lost")
                raise
            except DeviceTimeout:
                await self._resync()
                self._doubt("no answer (power loss?)")
                raise
            except ProtocolError:
                await self._resync()
                if stores:
                    self._doubt("garbled answer to a store")
                raise

    def _doubt(self, why: str) -> None:
        self._publish(self.fifo.lose(why))

    def _publish(self, events: list[PrintEvent]) -> None:
        for e in events:
            self._events.put_nowait(e)

    def _emit(self, kind: PrintEventKind, detail: str = "") -> None:
        self._events.put_nowait(PrintEvent(kind=kind, at=time.monotonic(), detail=detail))
