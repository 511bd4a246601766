"""Transports: async byte pipes to a device. They move bytes and nothing else (no framing, no retries).

Why this split: a coder speaks the same protocol over RS-232 and over TCP; the protocol layer
(drivers/printers/framed.py) owns frames, timeouts per request, retries and reconnect policy, and a
transport only opens, writes, reads with a timeout, and says clearly when the link is gone.

- `SerialTransport` opens anything pyserial's `serial_for_url` opens: `/dev/ttyUSB0`, a pty slave
  path, `socket://host:port`, `loop://`. pyserial is blocking, so one daemon thread per port reads and
  hands chunks to the asyncio loop. This works for every URL kind alike (a pty, a socket or the
  in-memory loop), which a non-blocking fd trick would not.
  Each hand-over wakes the loop (call_soon_threadsafe), so the reader hands over everything that has
  arrived, not the first byte alone: a blocking read wakes on the first byte of a reply, and the rest of
  it is usually already waiting (a pty, a USB adapter's packet); read and handed over apart, every reply
  cost two wake-ups (bench/loopwake.py saw it: 2 chunks a reply, 40 wake-ups/s at 2,000 items/min).
  Writes: a local serial port's fd is non-blocking (pyserial opens it O_NONBLOCK), so a write is tried
  on the loop first, where it costs one os.write; only what the tty buffer does not take (flow control, a
  full buffer) goes to a worker thread, which waits for room as pyserial does. A write per poll sent
  through to_thread cost a thread hand-off and a loop wake-up each.
- `TcpTransport` uses asyncio streams for `tcp://host:port`.

`open_transport(url, baud)` picks one by URL. `trace` logs every chunk in and out as hex on the
`lineagent.trace` logger (per device, switched on by the device's `trace: true` setting).

Hostile links (tests/fuzz): a device that never stops sending must cost neither unbounded memory nor a
task that cannot be stopped. The serial reader thread therefore holds at most MAX_BUFFERED bytes the
driver has not taken (then it stops reading, and the tty buffer fills: what a UART without flow control
does anyway), and reads wait with `asyncio.timeout`, never `asyncio.wait_for`: on Python 3.11,
wait_for drops a cancellation that lands while the awaited read completes (CPython gh-86296), and under
a steady stream of bytes that is every time, so a driver's close() could never stop its reader task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from urllib.parse import urlsplit

import serial

trace_log = logging.getLogger("lineagent.trace")
MAX_BUFFERED = 256 * 1024  # bytes read from a serial port and not yet taken by the driver


class TransportError(Exception):
    """Base of transport failures; the printer layer maps these onto its typed errors."""


class LinkClosed(TransportError):
    """The link is not open or went away (EOF, cable pulled, device powered off)."""


class ReadTimeout(TransportError):
    """Nothing arrived within the read timeout."""


class Transport(ABC):
    """An open/close-able byte pipe; `name` appears in every log line and error."""

    def __init__(self, url: str, *, name: str = "", trace: bool = False) -> None:
        self.url = url
        self.name = name or url
        self.trace = trace

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @abstractmethod
    async def open(self, within_s: float) -> None:
        """Open the link; LinkClosed (with the reason) when the device is not there."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def read(self, within_s: float) -> bytes:
        """At least one byte, or ReadTimeout after `within_s`, or LinkClosed when the link is gone."""

    def _trace(self, direction: str, data: bytes) -> None:
        if self.trace and data:
            trace_log.info("%s %s %d: %s", self.name, direction, len(data), data.hex(" "))


class SerialTransport(Transport):
    def __init__(self, url: str, *, baud: int = 115200, name: str = "", trace: bool = False) -> None:
        super().__init__(url, name=name, trace=trace)
        self.baud = baud
        self._port: serial.SerialBase | None = None
        self._chunks: asyncio.Queue[bytes | TransportError] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._room = threading.Condition()
        self._buffered = 0  # bytes in _chunks (under _room)
        self._writing = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._thread is not None and self._thread.is_alive()

    async def open(self, within_s: float) -> None:
        await self.close()
        try:
            port = await asyncio.wait_for(asyncio.to_thread(self._open_blocking), within_s)
        except TimeoutError as exc:
            raise LinkClosed(f"{self.name}: opening {self.url} took longer than {within_s} s") from exc
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkClosed(f"{self.name}: cannot open {self.url}: {exc}") from exc
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | TransportError] = asyncio.Queue()
        self._port, self._chunks = port, chunks
        self._writing = asyncio.Lock()  # made on the loop that uses it
        self._stop = threading.Event()
        with self._room:
            self._buffered = 0
        self._thread = threading.Thread(
            target=self._reader, args=(port, loop, chunks, self._stop), name=f"serial-{self.name}", daemon=True
        )
        self._thread.start()

    def _open_blocking(self) -> serial.SerialBase:
        port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0.05, write_timeout=5.0)
        port.reset_input_buffer()
        return port

    def _reader(
        self,
        port: serial.SerialBase,
        loop: asyncio.AbstractEventLoop,
        chunks: asyncio.Queue[bytes | TransportError],
        stop: threading.Event,
    ) -> None:
        """Thread body: blocking reads with a short timeout so `stop` is seen promptly; no read while
        MAX_BUFFERED bytes wait for the driver (a flooding device cannot fill the memory)."""
        while not stop.is_set():
            with self._room:
                if self._buffered >= MAX_BUFFERED:
                    self._room.wait(0.05)
                    continue
            try:
                data = port.read(max(1, port.in_waiting))
                if data:
                    data += _waiting(port)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: pyserial's socket handler after the socket was closed.
                if not stop.is_set():
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(chunks.put_nowait, LinkClosed(f"serial link lost: {exc}"))
                return
            if data:
                with self._room:
                    self._buffered += len(data)
                try:
                    loop.call_soon_threadsafe(chunks.put_nowait, data)
                except RuntimeError:  # the loop is closed: nobody is listening any more
                    return

    async def close(self) -> None:
        port, thread = self._port, self._thread
        self._port, self._thread = None, None
        self._stop.set()
        if thread is not None:
            await asyncio.to_thread(thread.join, 1.0)
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                await asyncio.to_thread(port.close)

    async def write(self, data: bytes) -> None:
        port = self._port
        if port is None or not self.is_open:
            raise LinkClosed(f"{self.name}: write on a closed link")
        self._trace(">>", data)
        async with self._writing:  # in order: a write left to a thread finishes before the next starts
            try:
                rest = _write_now(port, data)
                if rest:
                    await asyncio.to_thread(port.write, rest)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                raise LinkClosed(f"{self.name}: write failed: {exc}") from exc

    async def read(self, within_s: float) -> bytes:
        chunks = self._chunks
        if chunks is None or self._port is None:
            raise LinkClosed(f"{self.name}: read on a closed link")
        try:
            async with asyncio.timeout(within_s):
                item = await chunks.get()
        except TimeoutError as exc:
            raise ReadTimeout(f"{self.name}: nothing received within {within_s} s") from exc
        if isinstance(item, TransportError):
            self._port = None
            raise item
        with self._room:
            self._buffered -= len(item)
            self._room.notify()
        self._trace("<<", item)
        return item


def _waiting(port: serial.SerialBase) -> bytes:
    """What has arrived behind the byte a blocking read woke on, without waiting for more."""
    more = b""
    while len(more) < MAX_BUFFERED and (n := port.in_waiting):
        got = port.read(min(n, MAX_BUFFERED))
        if not got:
            break
        more += got
    return more


def _write_now(port: serial.SerialBase, data: bytes) -> bytes:
    """Write what a non-blocking fd takes at once; return the rest (all of it for ports without one).

    Only pyserial's posix Serial has a file descriptor, opened O_NONBLOCK: os.write never waits on it.
    socket:// and loop:// ports keep pyserial's own (blocking) write."""
    fileno = getattr(port, "fileno", None)
    if fileno is None or not port.is_open:
        return data
    try:
        fd = fileno()
    except (serial.SerialException, OSError, ValueError, AttributeError):
        return data
    if os.get_blocking(fd):
        return data
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            break
    return bytes(view)


class TcpTransport(Transport):
    def __init__(self, host: str, port: int, *, name: str = "", trace: bool = False) -> None:
        super().__init__(f"tcp://{host}:{port}", name=name, trace=trace)
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def open(self, within_s: float) -> None:
        await self.close()
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), within_s
            )
        except TimeoutError as exc:
            raise LinkClosed(f"{self.name}: no connection to {self.host}:{self.port} within {within_s} s") from exc
        except OSError as exc:
            raise LinkClosed(f"{self.name}: cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        writer = self._writer
        self._reader, self._writer = None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def write(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise LinkClosed(f"{self.name}: write on a closed link")
        self._trace(">>", data)
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise LinkClosed(f"{self.name}: write failed: {exc.strerror or exc}") from exc

    async def read(self, within_s: float) -> bytes:
        if self._reader is None:
            raise LinkClosed(f"{self.name}: read on a closed link")
        try:
            async with asyncio.timeout(within_s):
                data = await self._reader.read(4096)
        except TimeoutError as exc:
            raise ReadTimeout(f"{self.name}: nothing received within {within_s} s") from exc
        except OSError as exc:
            self._reader = None
            raise LinkClosed(f"{self.name}: read failed: {exc.strerror or exc}") from exc
        if not data:
            self._reader = None
            raise LinkClosed(f"{self.name}: the device closed the connection")
        self._trace("<<", data)
        return data


def open_transport(url: str, *, baud: int = 115200, name: str = "", trace: bool = False) -> Transport:
    """A transport for `url`: tcp://host:port -> asyncio TCP; anything else -> pyserial serial_for_url."""
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        if not parts.hostname or parts.port is None:
            raise ValueError(f"tcp URL needs host and port, like tcp://10.0.0.5:3000 (got {url!r})")
        return TcpTransport(parts.hostname, parts.port, name=name, trace=trace)
    return SerialTransport(url, baud=baud, name=name, trace=trace)


@dataclass
class Backoff:
    """Jittered exponential backoff for reconnects ("full jitter"): many agents restarting at once
    after a site power cut must not hammer a coder's single TCP slot in lock-step."""

    first_s: float = 0.05
    max_s: float = 5.0
    factor: float = 2.0
    attempt: int = 0

    def next_delay(self, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_s, self.first_s * self.factor ** min(self.attempt, 64))  # no float overflow
        self.attempt += 1
        return (rng or random).uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
