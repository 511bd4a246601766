"""Cognex DataMan over DMCC (DataMan Control Commands), serial or Telnet TCP (port 23).

Source: the public DMCC reference as summarised in /work/shared/research/protocols.md. A command is
`||[checksum:cmd-id]>COMMAND args\\r\\n`; `||>TRIGGER ON` fires one read and the reader sends the
result string, or its no-read string, terminated by CR LF. With a command id the reader first sends
an extended reply `||checksum:cmd-id[status]` (0 OK; 100 unidentified error, 101 invalid command,
102 invalid parameter, 103 wrong checksum, 104 parameter rejected, 105 reader unavailable).
Result strings are backslash-escaped (`\\\\`, `\\r`, `\\n`, `\\t`, `\\xHH`), which matters for the GS
separator inside GS1 element strings.

Left out: checksummed commands (checksum 0 = none is always sent), the binary XML result format,
image upload, and settings commands other than the trigger.
"""

from __future__ import annotations

import re
from itertools import count

from pydantic import Field

from drivers.readers.base import ACK, Ack, CodeReader, ReaderProtocolError, ReaderSettings, split_at

STATUS = {
    100: "unidentified error", 101: "command invalid", 102: "parameter invalid",
    103: "checksum incorrect", 104: "parameter rejected or altered by the reader's state",
    105: "reader unavailable (offline)",
}
_EXTENDED = re.compile(rb"^\|\|(\d+):(\d+)\[(\d+)\](.*)$", re.DOTALL)
_ESCAPE = re.compile(r"\\(\\|r|n|t|x[0-9A-Fa-f]{2})")
_PLAIN = {"\\": "\\", "r": "\r", "n": "\n", "t": "\t"}


def unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: _PLAIN.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), text)


def escape(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\r\n\t":
            out.append({"\r": "\\r", "\n": "\\n", "\t": "\\t"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


class DataManSettings(ReaderSettings):
    no_read: str = "NOREAD"  # the reader's configured no-read string
    command_ids: bool = True  # send ||0:id> and check the extended [status] reply
    encoding: str = Field("latin-1", pattern=r"^(latin-1|utf-8|ascii)$")


class DataMan(CodeReader):
    Settings = DataManSettings

    def __init__(self, settings: DataManSettings, *, name: str = "dataman") -> None:
        super().__init__(settings, name=name)
        self.cfg = settings
        self._ids = count(1)
        self._expect_id: int | None = None

    def encode_trigger(self) -> bytes:
        if not self.cfg.command_ids:
            self._expect_id = None
            return b"||>TRIGGER ON\r\n"
        self._expect_id = next(self._ids) % 10000
        return f"||0:{self._expect_id}>TRIGGER ON\r\n".encode("ascii")

    def next_frame(self, buf: bytearray) -> bytes | None:
        return split_at(buf, b"\r\n")

    def interpret(self, frame: bytes) -> str | Ack | None:
        m = _EXTENDED.match(frame)
        if m is not None:
            cmd_id, status, rest = int(m.group(2)), int(m.group(3)), m.group(4)
            if status != 0:
                why = STATUS.get(status, "unknown status")
                raise ReaderProtocolError(f"reader {self.name}: command {cmd_id} failed with status {status}: {why}")
            if self._expect_id is not None and cmd_id != self._expect_id:
                raise ReaderProtocolError(
                    f"reader {self.name}: reply for command {cmd_id}, expected {self._expect_id}")
            if not rest:
                return ACK
            frame = rest
        if frame.startswith(b"||"):
            raise ReaderProtocolError(f"reader {self.name}: malformed DMCC reply {frame!r}")
        try:
            text = unescape(frame.decode(self.cfg.encoding))
        except UnicodeDecodeError as exc:
            raise ReaderProtocolError(f"reader {self.name}: result {frame!r} is not {self.cfg.encoding}") from exc
        return None if text == self.cfg.no_read else text
