"""Simulators of the fixed code readers, speaking their wire protocols over a pty or TCP.

Why: the reader drivers must be proven against the bytes a real DataMan, Keyence SR or generic reader
sends, including no-reads, garbage, error statuses and silence, over the same kinds of link a line
uses (a tty, a TCP socket). Each protocol is a pure object (`feed(bytes) -> bytes`, no I/O) so its
replies are table-testable; `ReaderSimServer` puts one on a pty (os.openpty) or a TCP port.

Each trigger takes the next entry of `results`: a string to report, or an `Outcome` fault. An empty
queue answers with the no-read string, as a reader with nothing in front of it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tty
from abc import ABC, abstractmethod
from collections import deque
from enum import StrEnum

from drivers.readers.dataman import escape
from drivers.readers.generic import unescaped


class Outcome(StrEnum):
    NO_READ = "no_read"  # the reader's no-read string
    GARBAGE = "garbage"  # bytes the protocol does not allow
    SILENCE = "silence"  # no answer at all (reader hung, cable half broken)
    ERROR = "error"  # the protocol's error status for the trigger


Result = str | Outcome


class SimProtocol(ABC):
    def __init__(self) -> None:
        self.results: deque[Result] = deque()
        self.triggers = 0
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        """Bytes from the host in, the reader's answer out (possibly empty)."""
        self._buf += data
        out = bytearray()
        while (cmd := self.take_command(self._buf)) is not None:
            out += self.answer(cmd)
        return bytes(out)

    def next_result(self) -> Result:
        self.triggers += 1
        return self.results.popleft() if self.results else Outcome.NO_READ

    @abstractmethod
    def take_command(self, buf: bytearray) -> bytes | None: ...

    @abstractmethod
    def answer(self, cmd: bytes) -> bytes: ...

    @abstractmethod
    def result_frame(self, result: Result) -> bytes:
        """The frame a read produces (also sent unasked when the reader is externally triggered)."""


def _take(buf: bytearray, terminator: bytes) -> bytes | None:
    end = buf.find(terminator)
    if end < 0:
        return None
    cmd = bytes(buf[:end])
    del buf[: end + len(terminator)]
    return cmd


class DmccSim(SimProtocol):
    _CMD = re.compile(rb"^\|\|(?:(\d+):(\d+))?>(.*)$", re.DOTALL)

    def __init__(self, no_read: str = "NOREAD") -> None:
        super().__init__()
        self.no_read = no_read

    def take_command(self, buf: bytearray) -> bytes | None:
        return _take(buf, b"\r\n")

    def answer(self, cmd: bytes) -> bytes:
        m = self._CMD.match(cmd)
        if m is None:
            return b""  # DMCC ignores lines without the || header
        cmd_id, body = m.group(2), m.group(3).strip().upper()
        if body != b"TRIGGER ON":
            return b"||0:%s[101]\r\n" % cmd_id if cmd_id else b""
        result = self.next_result()
        if result is Outcome.SILENCE:
            return b""
        if result is Outcome.ERROR:
            return b"||0:%s[105]\r\n" % (cmd_id or b"0")
        head = b"||0:%s[0]\r\n" % cmd_id if cmd_id else b""
        return head + self.result_frame(result)

    def result_frame(self, result: Result) -> bytes:
        if result is Outcome.GARBAGE:
            return b"||\xff\xfe?\r\n"
        text = self.no_read if result is Outcome.NO_READ else str(result)
        return escape(text).encode("latin-1") + b"\r\n"


class KeyenceSim(SimProtocol):
    def __init__(self, *, stx_etx: bool = False, no_read: str = "ERROR") -> None:
        super().__init__()
        self.stx_etx = stx_etx
        self.no_read = no_read

    def _wrap(self, body: bytes) -> bytes:
        return b"\x02" + body + b"\x03" if self.stx_etx else body + b"\r"

    def take_command(self, buf: bytearray) -> bytes | None:
        cmd = _take(buf, b"\x03" if self.stx_etx else b"\r")
        if cmd is None:
            return None
        cmd = cmd[cmd.rfind(b"\x1b") + 1 :]  # ESC clears what came before it
        return cmd.lstrip(b"\x02")

    def answer(self, cmd: bytes) -> bytes:
        if cmd != b"LON":
            return self._wrap(b"ER," + cmd[:4] + b",00")
        result = self.next_result()
        if result is Outcome.SILENCE:
            return b""
        if result is Outcome.ERROR:
            return self._wrap(b"ER,LON,01")
        return self._wrap(b"OK,LON") + self.result_frame(result)

    def result_frame(self, result: Result) -> bytes:
        if result is Outcome.GARBAGE:
            return b"\x03\x00\xff\x03" if self.stx_etx else b"OK,L\x00N\xff\rOK,LON\r"
        text = self.no_read if result is Outcome.NO_READ else str(result)
        return self._wrap(text.encode("latin-1"))


class GenericSim(SimProtocol):
    def __init__(self, *, trigger: str = "T\\r\\n", header: str = "", terminator: str = "\\r\\n",
                 no_read: str = "NOREAD") -> None:
        super().__init__()
        self.trigger = unescaped(trigger)
        self.header = unescaped(header)
        self.terminator = unescaped(terminator)
        self.no_read = no_read

    def take_command(self, buf: bytearray) -> bytes | None:
        at = buf.find(self.trigger)
        if at < 0:
            return None
        del buf[: at + len(self.trigger)]
        return self.trigger

    def answer(self, cmd: bytes) -> bytes:
        result = self.next_result()
        if result in (Outcome.SILENCE, Outcome.ERROR):
            return b""
        return self.result_frame(result)

    def result_frame(self, result: Result) -> bytes:
        if result is Outcome.GARBAGE:
            return b"\x00\xff\xfe" + self.terminator
        text = self.no_read if result is Outcome.NO_READ else str(result)
        return self.header + text.encode("latin-1") + self.terminator


class ReaderSimServer:
    """One simulated reader on a pty (`url` is the slave path) or on a TCP port on 127.0.0.1."""

    def __init__(self, protocol: SimProtocol) -> None:
        self.protocol = protocol
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._master: int | None = None
        self._slave: int | None = None

    async def start_tcp(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"tcp://127.0.0.1:{port}"
        return self.url

    def start_pty(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        asyncio.get_running_loop().add_reader(master, self._on_pty)
        self.url = os.ttyname(slave)
        return self.url

    async def emit(self, result: Result) -> None:
        """An externally triggered read: the result frame goes out unasked."""
        self._send(self.protocol.result_frame(result))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in self._writers:
                w.close()
            await self._server.wait_closed()
            self._server = None
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None

    async def __aenter__(self) -> ReaderSimServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _send(self, data: bytes) -> None:
        if not data:
            return
        if self._master is not None:
            os.write(self._master, data)
        for w in self._writers:
            w.write(data)

    def _on_pty(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:  # EIO: the other side closed; the next open brings it back
            return
        self._send(self.protocol.feed(data))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while data := await reader.read(4096):
                writer.write(self.protocol.feed(data))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.remove(writer)
            writer.close()
