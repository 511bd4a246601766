"""Byte links to a label printer: raw TCP (port 9100) or a serial line (RS-232, USB-serial, a pty).

Why not the coders' transport: a label printer link is write-mostly with one small status reply
(~HS), so two tiny classes with one interface are clearer than bending a framed request/response
transport to it. Serial I/O runs in a worker thread (pyserial blocks) so the event loop never stalls.

A reply is capped at MAX_REPLY bytes and every failure of the port (pyserial's SerialException, an
OSError, termios.error from a port whose other end went away) is a LinkError: a printer that streams
without end or a cable pulled mid-reply must not fill the memory or escape as another type (tests/fuzz).
"""

from __future__ import annotations

import asyncio
import contextlib
import termios
from typing import Protocol
from urllib.parse import urlparse

import serial

MAX_REPLY = 8192  # a ~HS reply is three strings of about 40 characters
PORT_ERRORS = (serial.SerialException, OSError, termios.error)


class LinkError(ConnectionError):
    """The label printer cannot be reached or stopped answering; the message names the link."""


class Link(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def read_until(self, terminator: bytes, count: int, wait_s: float) -> bytes: ...
    async def close(self) -> None: ...


class TcpLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str) -> None:
        self._reader, self._writer, self.where = reader, writer, where

    @classmethod
    async def open(cls, host: str, port: int, wait_s: float) -> TcpLink:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait_s)
        except (OSError, TimeoutError) as exc:
            raise LinkError(f"label printer tcp://{host}:{port} unreachable: {exc or 'timeout'}") from exc
        return cls(reader, writer, f"tcp://{host}:{port}")

    async def write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise LinkError(f"label printer {self.where}: write failed: {exc}") from exc

    async def read_until(self, terminator: bytes, count: int, wait_s: float) -> bytes:
        """Read until `terminator` has been seen `count` times (the ~HS reply is three framed strings)."""
        buf = bytearray()
        try:
            async with asyncio.timeout(wait_s):
                while buf.count(terminator) < count:
                    chunk = await self._reader.read(256)
                    if not chunk:
                        raise LinkError(f"label printer {self.where} closed the connection")
                    buf += chunk
                    _capped(buf, self.where)
        except TimeoutError as exc:
            raise LinkError(f"label printer {self.where}: no status reply within {wait_s} s") from exc
        except LinkError:
            raise
        except OSError as exc:
            raise LinkError(f"label printer {self.where}: read failed: {exc}") from exc
        return bytes(buf)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):  # already gone: closing is all we wanted
            await self._writer.wait_closed()


class SerialLink:
    def __init__(self, port: serial.Serial, where: str) -> None:
        self._port, self.where = port, where

    @classmethod
    async def open(cls, path: str, baudrate: int, wait_s: float) -> SerialLink:
        try:
            port = await asyncio.to_thread(serial.serial_for_url, path, baudrate=baudrate, timeout=0.05,
                                           write_timeout=wait_s)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"label printer serial {path}: cannot open: {exc}") from exc
        return cls(port, f"serial {path}")

    async def write(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._write, data)
        except PORT_ERRORS as exc:
            raise LinkError(f"label printer {self.where}: write failed: {exc}") from exc

    def _write(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()

    async def read_until(self, terminator: bytes, count: int, wait_s: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        buf = bytearray()
        while buf.count(terminator) < count:
            if loop.time() > deadline:
                raise LinkError(f"label printer {self.where}: no status reply within {wait_s} s")
            try:
                buf += await asyncio.to_thread(self._port.read, 256)
            except PORT_ERRORS as exc:
                raise LinkError(f"label printer {self.where}: read failed: {exc}") from exc
            _capped(buf, self.where)
        return bytes(buf)

    async def close(self) -> None:
        with contextlib.suppress(*PORT_ERRORS):  # already gone: closing is all we wanted
            await asyncio.to_thread(self._port.close)


def _capped(buf: bytearray, where: str) -> None:
    if len(buf) > MAX_REPLY:
        raise LinkError(f"label printer {where}: {len(buf)} bytes and no complete status reply")


async def open_link(url: str, *, baudrate: int, wait_s: float) -> Link:
    """`tcp://host:9100` or `serial:///dev/ttyUSB0` (any pyserial URL after `serial://`)."""
    parsed = urlparse(url)
    if parsed.scheme == "tcp":
        if not parsed.hostname:
            raise LinkError(f"label printer url {url!r} has no host")
        return await TcpLink.open(parsed.hostname, parsed.port or 9100, wait_s)
    if parsed.scheme == "serial":
        return await SerialLink.open(url[len("serial://"):], baudrate, wait_s)
    raise LinkError(f"label printer url {url!r}: use tcp://host:9100 or serial:///dev/ttyX")
