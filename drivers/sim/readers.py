"""Simulators of the fixed code readers, written from the vendors' references, on a pty or TCP.

Why: the reader drivers must be proven against the bytes a real DataMan or Keyence SR sends,
including no-reads, error replies, garbage, silence and power loss, over the same kinds of link a
line uses. Each protocol is a pure object (`feed(bytes) -> bytes`, no I/O) so its answers are
table-testable; `ReaderSimServer` puts one on a pty (os.openpty) or a TCP port on 127.0.0.1.

Sources (the same documents the drivers cite; the simulators do not import the drivers):
- DmccSim: Cognex "DataMan Communications and Programming Guide" 5.7.0.37 (2017-04-18) and its
  DMST 23.1 on-line edition, "DMCC Overview" > "Command Syntax" and "Reader Response"; Cognex
  "DataMan Control Commands Documentation" 3.5, "DMCC Overview" > "Examples". Silent mode (the
  default) answers nothing but the read string; Extended mode answers `||<options>[status]` echoing
  the command's header options (`||>` -> `||[0]`, `||0:123>` -> `||0:123[0]`). Checksum 1 is checked
  as "the last byte before the footer is the XOR of the bytes before it" (the guide's sentence; it
  has no worked example, so this is our reading) and a mismatch answers 103.
- KeyenceSim: KEYENCE "SR-750 Series User's Manual" 8-1 and 8-2, "N-410 User's Manual" 5-3, and the
  SR-1000 error table as transcribed in brianteachman/mqtt_serial_scanner_nodes sr1000.py. Commands
  framed none/CR or STX/ETX are both accepted and answered in their own framing; a LF after the
  terminator is ignored; ESC clears the receive buffer; characters more than `char_timeout_s` (10 s)
  apart are dropped; read data uses the reader's data header/terminator setting.

Each trigger takes the next entry of `results`: a string to report, or an `Outcome` fault. An empty
queue answers with the no-read string, as a reader with nothing in front of it does.
Left out: every command other than the trigger family, and for DMCC GET/SET of COM.DMCC-RESPONSE and
SYMBOL.DATAMATRIX (the guide's own examples); other parameters answer 102.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import time
import tty
from abc import ABC, abstractmethod
from collections import deque
from enum import StrEnum
from typing import ClassVar


class Outcome(StrEnum):
    NO_READ = "no_read"  # the reader's no-read string
    GARBAGE = "garbage"  # bytes the protocol does not allow
    SILENCE = "silence"  # no answer at all (reader hung, cable half broken)
    ERROR = "error"  # the protocol's error reply to the trigger
    POWER_LOSS = "power_loss"  # the reader dies mid-read: TCP connections drop, a pty goes deaf


Result = str | Outcome
CRLF = b"\r\n"


class SimProtocol(ABC):
    def __init__(self) -> None:
        self.results: deque[Result] = deque()
        self.triggers = 0
        self.powered = True
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        """Bytes from the host in, the reader's answer out (possibly empty)."""
        if not self.powered:
            return b""
        self._buf += data
        out = bytearray()
        while self.powered and (answer := self.step(self._buf)) is not None:
            out += answer
        return bytes(out) if self.powered else b""

    def next_result(self) -> Result:
        self.triggers += 1
        result = self.results.popleft() if self.results else Outcome.NO_READ
        if result is Outcome.POWER_LOSS:
            self.power_off()
        return result

    def power_off(self) -> None:
        """Everything volatile is lost; the settings (saved on the reader) are kept."""
        self.powered = False
        self._buf.clear()

    def power_on(self) -> None:
        self.powered = True

    @abstractmethod
    def step(self, buf: bytearray) -> bytes | None:
        """Take one command from the front of `buf` and answer it; None when none is complete."""

    @abstractmethod
    def result_frame(self, result: Result) -> bytes:
        """The frame a read produces (also sent unasked when the reader is externally triggered)."""


def _xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


class DmccSim(SimProtocol):
    """A DataMan: `||checksum:command-id>COMMAND args` CR LF in, Silent or Extended replies out."""

    _HEADER = re.compile(rb"^\|\|(\d*(?::\d*)?)>(.*)$", re.DOTALL)
    SILENT, EXTENDED = 0, 1
    PARAMETERS: ClassVar[dict[str, tuple[str, ...]]] = {
        "COM.DMCC-RESPONSE": ("0", "1"), "SYMBOL.DATAMATRIX": ("ON", "OFF")}

    def __init__(self, no_read: str = "NOREAD", *, response: int = SILENT) -> None:
        super().__init__()
        self.no_read = no_read
        self.response = response  # COM.DMCC-RESPONSE: 0 Silent (factory default), 1 Extended
        self.settings = {"SYMBOL.DATAMATRIX": "ON"}

    def step(self, buf: bytearray) -> bytes | None:
        end = buf.find(CRLF)
        if end < 0:
            return None
        line = bytes(buf[:end])
        del buf[: end + 2]
        m = self._HEADER.match(line)
        if m is None:
            return b""  # not a DMCC command block: ignored
        options, body = m.group(1), m.group(2)
        if options.split(b":")[0] == b"1":
            if not body or _xor(line[:-1]) != line[-1]:
                return self._reply(options, 103)
            body = body[:-1]
        return self._command(options, body.decode("latin-1").strip())

    def _command(self, options: bytes, text: str) -> bytes:
        words = text.upper().split()
        if words == ["TRIGGER", "ON"]:
            return self._trigger(options)
        if words == ["TRIGGER", "OFF"]:
            return self._reply(options, 0)
        if not words or words[0] not in ("GET", "SET"):
            return self._reply(options, 101)
        if len(words) < 2 or words[1] not in self.PARAMETERS:
            return self._reply(options, 102)
        name = words[1]
        if words[0] == "GET":
            return self._reply(options, 0, self._get(name).encode()) if len(words) == 2 else self._reply(options, 102)
        if len(words) != 3 or words[2] not in self.PARAMETERS[name]:
            return self._reply(options, 102)
        before = self._reply(options, 0)  # answered in the mode the command arrived in
        self._set(name, words[2])
        return before

    def _get(self, name: str) -> str:
        return str(self.response) if name == "COM.DMCC-RESPONSE" else self.settings[name]

    def _set(self, name: str, value: str) -> None:
        if name == "COM.DMCC-RESPONSE":
            self.response = int(value)
        else:
            self.settings[name] = value

    def _trigger(self, options: bytes) -> bytes:
        result = self.next_result()
        if result in (Outcome.SILENCE, Outcome.POWER_LOSS):
            return b""
        if result is Outcome.ERROR:
            return self._reply(options, 105)
        return self._reply(options, 0) + self.result_frame(result)

    def _reply(self, options: bytes, status: int, payload: bytes = b"") -> bytes:
        if self.response == self.SILENT:
            return payload  # "no response"; command responses without header or footer
        block = b"||" + options + b"[%d]" % status + payload
        if options.split(b":")[0] == b"1":
            block += bytes([_xor(block)])
        return block + CRLF

    def result_frame(self, result: Result) -> bytes:
        if result is Outcome.GARBAGE:
            return b"||\xff\xfe?" + CRLF
        text = self.no_read if result is Outcome.NO_READ else str(result)
        return text.encode("latin-1") + CRLF


class KeyenceSim(SimProtocol):
    """An SR reader: `[ESC][STX]command(ETX|CR)[LF]` in; `OK,LON` then data, or `ER,cmd,ee` out."""

    ESC, STX, ETX, CR, LF = 0x1B, 0x02, 0x03, 0x0D, 0x0A

    def __init__(self, *, stx_etx: bool = False, no_read: str = "ERROR", ack: bool = True,
                 char_timeout_s: float = 10.0) -> None:
        super().__init__()
        self.stx_etx = stx_etx  # the DATA header/terminator setting; commands choose their own
        self.no_read = no_read
        self.ack = ack  # False: "Specify response character" = SR-600 compatible, no OK,LON
        self.char_timeout_s = char_timeout_s
        self.commands: list[bytes] = []  # every command body received, for tests
        self._last_rx = time.monotonic()

    def feed(self, data: bytes) -> bytes:
        now = time.monotonic()
        if now - self._last_rx > self.char_timeout_s:
            self._buf.clear()  # 8-1: characters more than 10 s apart are deleted
        self._last_rx = now
        return super().feed(data)

    def step(self, buf: bytearray) -> bytes | None:
        while True:
            while buf[:1] == bytes([self.LF]):
                del buf[:1]  # the optional LF after a command's terminator
            ends = [i for i in (buf.find(self.CR), buf.find(self.ETX)) if i >= 0]
            end = min(ends) if ends else -1
            esc = buf.find(self.ESC)
            if esc < 0 or 0 <= end < esc:
                break
            del buf[: esc + 1]  # ESC clears what was received before it
        if end < 0:
            return None
        raw, stx = bytes(buf[:end]), buf[end] == self.ETX
        del buf[: end + 1]
        if stx:
            start = raw.rfind(self.STX)
            if start < 0:
                return b""  # an ETX without STX is not a command
            raw = raw[start + 1 :]
        if not raw:
            return b""
        self.commands.append(raw)
        return self._command(raw, stx)

    def _command(self, raw: bytes, stx: bool) -> bytes:
        name, *params = raw.split(b",")
        if name == b"LON":
            if len(params) > 1:
                return self._wrap(b"ER,LON,01", stx)
            if params and not (params[0].isdigit() and len(params[0]) == 2 and 1 <= int(params[0]) <= 16):
                return self._wrap(b"ER,LON,02", stx)
            return self._trigger(stx)
        if name == b"LOFF":
            return self._wrap(b"ER,LOFF,01", stx) if params else self._wrap(b"OK,LOFF", stx)
        return self._wrap(b"ER," + name + b",00", stx)

    def _trigger(self, stx: bool) -> bytes:
        result = self.next_result()
        if result in (Outcome.SILENCE, Outcome.POWER_LOSS):
            return b""
        if result is Outcome.ERROR:
            return self._wrap(b"ER,LON,20", stx)
        return (self._wrap(b"OK,LON", stx) if self.ack else b"") + self.result_frame(result)

    @staticmethod
    def _wrap(body: bytes, stx: bool) -> bytes:
        return b"\x02" + body + b"\x03" if stx else body + b"\r"

    def result_frame(self, result: Result) -> bytes:
        if result is Outcome.GARBAGE:
            return b"\x03\x00\xff\x03" if self.stx_etx else b"\x00\xff\xfeL\x00N\r"
        text = self.no_read if result is Outcome.NO_READ else str(result)
        return self._wrap(text.encode("latin-1"), self.stx_etx)


def _unescaped(value: str) -> bytes:
    return codecs.decode(value, "unicode_escape").encode("latin-1")


class GenericSim(SimProtocol):
    """A plain string reader configured like the generic driver: trigger in, header+text+terminator out."""

    def __init__(self, *, trigger: str = "T\\r\\n", header: str = "", terminator: str = "\\r\\n",
                 no_read: str = "NOREAD") -> None:
        super().__init__()
        self.trigger = _unescaped(trigger)
        self.header = _unescaped(header)
        self.terminator = _unescaped(terminator)
        self.no_read = no_read

    def step(self, buf: bytearray) -> bytes | None:
        at = buf.find(self.trigger)
        if at < 0:
            return None
        del buf[: at + len(self.trigger)]
        result = self.next_result()
        if result in (Outcome.SILENCE, Outcome.ERROR, Outcome.POWER_LOSS):
            return b""
        return self.result_frame(result)

    def result_frame(self, result: Result) -> bytes:
        if result is Outcome.GARBAGE:
            return b"\x00\xff\xfe" + self.terminator
        text = self.no_read if result is Outcome.NO_READ else str(result)
        return self.header + text.encode("latin-1") + self.terminator


class ReaderSimServer:
    """One simulated reader on a pty (`url` is the slave path) or on a TCP port on 127.0.0.1.

    Power loss (an Outcome.POWER_LOSS trigger, or `power_off()`): TCP connections are dropped and new
    ones closed at once; a pty (the cable stays plugged in) goes deaf and silent. `power_on()` ends it."""

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

    async def emit_raw(self, data: bytes) -> None:
        """Arbitrary bytes on the wire (line noise, a wrong baud rate, a hostile peer)."""
        self._send(data)

    def power_off(self) -> None:
        self.protocol.power_off()
        self._drop_connections()

    def power_on(self) -> None:
        self.protocol.power_on()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._drop_connections()
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

    def _drop_connections(self) -> None:
        for w in list(self._writers):
            w.close()

    def _send(self, data: bytes) -> None:
        if not data or not self.protocol.powered:
            return
        if self._master is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._master, data)
        for w in self._writers:
            w.write(data)

    def _answer(self, data: bytes) -> bytes:
        answer = self.protocol.feed(data)
        if not self.protocol.powered:
            self._drop_connections()
        return answer

    def _on_pty(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except OSError:  # EAGAIN, or EIO when the other side closed; the next open brings it back
            return
        self._send(self._answer(data))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.protocol.powered:
            writer.close()
            return
        self._writers.append(writer)
        try:
            while data := await reader.read(4096):
                answer = self._answer(data)
                if writer.is_closing():
                    break
                writer.write(answer)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.remove(writer)
            writer.close()
