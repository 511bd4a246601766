"""Cognex DataMan over DMCC (DataMan Control Commands), serial/USB or Telnet TCP (port 23 by default).

Primary sources, followed here and in drivers/sim/readers.py:
- Cognex, "DataMan Communications and Programming Guide", version 5.7.0.37 (2017-04-18), and its
  on-line edition for DataMan Setup Tool 23.1 (docs.cognex.com/dmst_2310, Comms_Prog_Manual), chapter
  "DataMan Application Development", section "DMCC Overview": TCP port 23 by default; "Command
  Syntax" (`command-header command [arguments] footer`, header `||checksum:command-id>` with checksum
  0 = none (default) or 1 = "last byte before footer is XOR of bytes", header examples `||>`,
  `||0:123>`, `||1>`; commands case insensitive, one command per header-footer block; footer CR LF;
  string arguments in quotes with `\\"`, `\\\\`, `\\|`, `\\t`, `\\r`, `\\n` escaped); "Reader Response"
  (COM.DMCC-RESPONSE 0 = Silent, the default: no response, invalid commands ignored; 1 = Extended:
  `||checksum:command-id[status]` then data then footer, the checksum format and command-id of the
  command echoed; status 0 no error, 1 reader initiated read-string, 100 unidentified error, 101
  command invalid, 102 parameter invalid, 103 checksum incorrect, 104 parameter rejected/altered due
  to reader state, 105 reader unavailable).
- Cognex, "DataMan Control Commands Documentation" 3.5 (DM100/DM200), "DMCC Overview > Examples":
  `||>TRIGGER ON\\r\\n` answers "decoded data or no-read response"; extended replies without header
  options read `||[0]\\r\\n` and `||[0]ON\\r\\n`.

What the driver does with them: it sends `||0:<id>>TRIGGER ON\\r\\n` (or `||>TRIGGER ON\\r\\n` with
command_ids off) and works with either response mode. In Silent mode (the reader's default) the only
answer is the read string or the no-read string on its own line. In Extended mode the `[0]` reply is
skipped, `[1]` carries a read string, 100-105 become ReaderStatusError, 2-99 (events, images,
statistics the reader may push) are skipped. A command id in the reply must be the one sent.
Lines end at CR, LF or CR LF (the read string's trailer is an output-format setting on the reader).
Read strings are NOT unescaped: the guide escapes command arguments, not results, so a backslash in
a code is kept as it was printed; GS (0x1D) in GS1 data arrives as the raw byte.

Left out (sources silent or not needed): checksum mode 1 (the guide gives no worked example of which
bytes the XOR covers; the driver sends 0 and refuses checksummed replies), base64/XML result formats
(DATA.RESULT-TYPE other than the read string), images, settings commands (the technician sets the
reader up; docs/technicians.md). The no-read string has no documented default: set it on the reader
and in `no_read`; with none set, a no-read is silence and becomes a timeout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import count

from pydantic import Field

from drivers.readers.base import ACK, Ack, CodeReader, ReaderProtocolError, ReaderSettings, ReaderStatusError

FOOTER = b"\r\n"
STATUS = {
    0: "no error", 1: "reader initiated read-string",
    100: "unidentified error", 101: "command invalid", 102: "parameter invalid",
    103: "checksum incorrect", 104: "parameter rejected/altered due to reader state",
    105: "reader unavailable",
}
READ_STRING = 1
FIRST_ERROR = 100
_REPLY = re.compile(rb"^\|\|([0-9:]*)\[(\d{1,4})\](.*)$", re.DOTALL)
_ARG_ESCAPES = {'"': '\\"', "\\": "\\\\", "|": "\\|", "\t": "\\t", "\r": "\\r", "\n": "\\n"}
MAX_ID = 9999  # the guide says "an integer"; a small range keeps replies short and ids easy to read


@dataclass(frozen=True, slots=True)
class Reply:
    """One Extended-mode reply line: `||checksum:command-id[status]payload`."""

    checksum: int | None  # None: the reply had no header options (`||[0]`)
    command_id: int | None
    status: int
    payload: bytes


def encode_command(command: str, command_id: int | None = None) -> bytes:
    """`||>COMMAND\\r\\n`, or `||0:<id>>COMMAND\\r\\n` (checksum 0 = none) when an id is given."""
    if any(ch in command for ch in "\r\n"):
        raise ValueError(f"DMCC command {command!r} contains a line break; escape string arguments")
    header = b"||>" if command_id is None else b"||0:%d>" % command_id
    return header + command.encode("ascii") + FOOTER


def escape_argument(text: str) -> str:
    """A quoted DMCC string argument with the six characters the guide says must be escaped."""
    return '"' + "".join(_ARG_ESCAPES.get(ch, ch) for ch in text) + '"'


def take_line(buf: bytearray) -> bytes | None:
    """One line from the front of `buf`, None if incomplete. Replies end in the CR LF footer; read
    strings end in whatever trailer the reader's output formatting sets, so CR, LF and CR LF all end
    a line and empty lines are skipped."""
    while bytes(buf[:1]) in (b"\r", b"\n"):
        del buf[:1]
    ends = [i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0]
    if not ends:
        return None
    end = min(ends)
    line = bytes(buf[:end])
    del buf[: end + 1]
    return line


def parse_reply(line: bytes) -> Reply | None:
    """The Extended reply in `line` (footer removed), None if it is a plain line (a read string).

    Header options are colon-separated numbers; the second is the command id. Headers with more
    fields than checksum:id are accepted and their id left unchecked (field reports of newer firmware
    show `||:::2[0]`)."""
    if not line.startswith(b"||"):
        return None
    m = _REPLY.match(line)
    if m is None:
        raise ValueError(f"malformed DMCC reply {line!r}")
    fields = m.group(1).split(b":") if m.group(1) else []
    checksum = int(fields[0]) if fields and fields[0] else None
    command_id = int(fields[1]) if len(fields) == 2 and fields[1] else None
    return Reply(checksum, command_id, int(m.group(2)), m.group(3))


class DataManSettings(ReaderSettings):
    no_read: str = "NOREAD"  # the reader's configured no-read string (no documented default)
    command_ids: bool = True  # send ||0:id> so an Extended reply can be matched to its trigger
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
            return encode_command("TRIGGER ON")
        self._expect_id = (next(self._ids) - 1) % MAX_ID + 1
        return encode_command("TRIGGER ON", self._expect_id)

    def next_frame(self, buf: bytearray) -> bytes | None:
        return take_line(buf)

    def interpret(self, frame: bytes) -> str | Ack | None:
        try:
            reply = parse_reply(frame)
        except ValueError as exc:
            raise ReaderProtocolError(f"reader {self.name}: {exc}") from exc
        if reply is not None:
            payload = self._check_reply(reply)
            if payload is None:
                return ACK
            frame = payload
        try:
            text = frame.decode(self.cfg.encoding)
        except UnicodeDecodeError as exc:
            raise ReaderProtocolError(f"reader {self.name}: result {frame!r} is not {self.cfg.encoding}") from exc
        return None if text == self.cfg.no_read else text

    def _check_reply(self, reply: Reply) -> bytes | None:
        """The read string an Extended reply carries, or None for one to skip."""
        if reply.checksum not in (None, 0):
            raise ReaderProtocolError(f"reader {self.name}: checksummed reply {reply!r}; the driver sends checksum 0")
        if reply.status >= FIRST_ERROR:
            why = STATUS.get(reply.status, "error not in the guide's table")
            raise ReaderStatusError(f"reader {self.name}: command {reply.command_id} failed with status"
                                    f" {reply.status}: {why}", reply.status)
        if reply.command_id is not None and self._expect_id is not None and reply.command_id != self._expect_id:
            raise ReaderProtocolError(
                f"reader {self.name}: reply for command {reply.command_id}, expected {self._expect_id}")
        if reply.status in (0, READ_STRING) and reply.payload:
            return reply.payload
        return None  # [0] acknowledges the trigger; 2-99 are pushed events/images/statistics


__all__ = ["FOOTER", "STATUS", "DataMan", "DataManSettings", "Reply", "encode_command", "escape_argument",
           "parse_reply", "take_line"]
