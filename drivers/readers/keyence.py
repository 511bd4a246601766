"""Keyence SR series (SR-750, SR-1000, SR-2000, SR-X) command protocol, serial or TCP (command port 9004).

Primary sources, followed here and in drivers/sim/readers.py:
- KEYENCE, "SR-750 Series User's Manual" (E SR-750 UM), chapter 8 "Command Communication":
  8-1 "Details of Command Communication": the host sends a command, the reader sends its response,
  and read result data follows the response of an operation command (example: `LON` -> `OK,LON` ->
  read data); two header/terminator formats, none/CR and STX/ETX, "use either of them", responses
  use the header and terminator of the command; a LF may follow the command and is not echoed; an
  ESC before a command clears the reader's receive buffer; characters more than 10 s apart are
  dropped. 8-2 "Operation Commands": Timing ON `LON` -> `OK,LON` or `ER,LON,ee`; Timing OFF `LOFF`
  -> `OK,LOFF` or `ER,LOFF,ee`; with "Specify response character" = SR-600 compatible no `OK,LON`
  is sent; a second `LON` during a read is an error; the command strings are settable (up to 8
  characters; the driver uses the factory `LON`).
- KEYENCE, "N-410 User's Manual", 5-3 "Sending Data in Multi-head Mode": data from BL/SR/RF heads is
  the read data, `ERROR` (read error), `OVER` (buffer overflow) or `ERRmm`; "Error code setting:
  ERROR" is the default and should not be changed on the BL/SR/RF devices.
- Public client run on an SR-1000 (secondary): brianteachman/mqtt_serial_scanner_nodes, sr1000.py
  (commit 61d07d3, 2024-03-20): TCP port 9004, `LON\\r`/`LOFF\\r`, and the SR-1000 error-code table
  for `ER,<command>,<code>` transcribed from the SR-1000 User's Manual (00-05, 10-14, 20-23, 99).

What the driver does: it sends `ESC LON CR` (or `ESC STX LON ETX`), reads frames in either framing
(the reader answers in the command's framing but sends data in its data setting), skips `OK,LON`
and `OK,LOFF` (and works without them), turns `ER,<cmd>,<ee>` into ReaderStatusError naming the code, the reading-error
string (`ERROR`) into a no-read, `OVER` into ReaderProtocolError, anything else into the read string.
A LF before a frame is dropped, so a reader whose data terminator is set to CR LF still works.

Left out: `LOFF` (the driver triggers one-shot reads; level-trigger mode is the reader's job),
parameter banks (`LON,bb`), tuning/preset/configuration commands (`WP`/`RP`), appended data (time,
bank, reading count), multi-code separators and the data port of the SR-X; a read string that
itself starts with `OK,` or `ER,` is taken for a response (a verification station then rejects the
item: the safe side).
"""

from __future__ import annotations

from enum import StrEnum

from drivers.readers.base import ACK, Ack, CodeReader, ReaderProtocolError, ReaderSettings, ReaderStatusError

ESC, STX, ETX, CR, LF = b"\x1b", b"\x02", b"\x03", b"\r", b"\n"
ACKS = frozenset({"OK,LON", "OK,LOFF"})
OVERFLOW = "OVER"  # N-410 5-3: the head's send buffer overflowed; results were lost
ERRORS = {
    0: "undefined command received",
    1: "mismatched command format (invalid number of parameters)",
    2: "the parameter 1 value exceeds the set value",
    3: "the parameter 2 value exceeds the set value",
    4: "parameter 2 is not set in HEX (hexadecimal) code",
    5: "parameter 2 set in HEX (hexadecimal) code but exceeds the set value",
    10: "there are 2 or more ! marks in the preset data, preset data is incorrect",
    11: "area specification data is incorrect",
    12: "specified file does not exist",
    13: "mm for the %Tmm-LON,bb command exceeds the setting range",
    14: "communication cannot be checked with the %Tmm-KEYENCE command",
    20: "this command is not executable in the current status (execution error)",
    21: "the buffer has overflowed, so commands cannot be executed",
    22: "an error occurred while loading or saving parameters, so commands cannot be executed",
    23: "commands sent from RS-232C cannot be received because AutoID Network Navigator is connected",
    99: "the reader may be faulty; contact KEYENCE",
}


class Framing(StrEnum):
    CR = "cr"  # header none, terminator CR (factory default)
    STX_ETX = "stx_etx"


def encode_command(command: str, framing: Framing = Framing.CR, *, clear: bool = True) -> bytes:
    """One command in the chosen framing, after an ESC that clears the reader's receive buffer."""
    body = command.encode("ascii")
    framed = STX + body + ETX if framing is Framing.STX_ETX else body + CR
    return (ESC if clear else b"") + framed


def take_frame(buf: bytearray) -> bytes | None:
    """One frame's body from the front of `buf` (header/terminator removed), None if incomplete.

    Both framings are recognised frame by frame, whatever the driver sends: the reader answers a
    command in the command's framing but sends read data in its data header/terminator setting, and
    the two need not agree. Bytes before an STX are dropped; an ETX with no STX before it raises
    ValueError (noise). A LF before a frame (a CR LF data terminator) is dropped."""
    while buf[:1] == LF:
        del buf[:1]
    if buf[:1] == STX:
        end = buf.find(ETX)
        if end < 0:
            return None
        frame = bytes(buf[:end])
        del buf[: end + 1]
        return frame[frame.rfind(STX) + 1 :]
    ends = [i for i in (buf.find(CR), buf.find(ETX)) if i >= 0]
    if not ends:
        return None
    end = min(ends)
    frame, by_etx = bytes(buf[:end]), buf[end:end + 1] == ETX
    del buf[: end + 1]
    start = frame.rfind(STX)
    if start >= 0:
        return frame[start + 1 :]  # noise before an STX frame
    if by_etx:
        raise ValueError(f"frame without STX: {frame!r}")
    return frame


def parse_error(text: str) -> tuple[str, int] | None:
    """(`command`, code) of an `ER,<command>,<ee>` response, None for anything else."""
    if not text.startswith("ER,"):
        return None
    parts = text.split(",")
    if len(parts) != 3 or not parts[2].isdigit() or len(parts[2]) != 2:
        raise ValueError(f"malformed error response {text!r}")
    return parts[1], int(parts[2])


class KeyenceSettings(ReaderSettings):
    framing: Framing = Framing.CR
    no_read: str = "ERROR"  # the reader's reading-error string (factory setting)
    clear_with_esc: bool = True


class KeyenceSR(CodeReader):
    Settings = KeyenceSettings

    def __init__(self, settings: KeyenceSettings, *, name: str = "keyence") -> None:
        super().__init__(settings, name=name)
        self.cfg = settings

    def encode_trigger(self) -> bytes:
        return encode_command("LON", self.cfg.framing, clear=self.cfg.clear_with_esc)

    def next_frame(self, buf: bytearray) -> bytes | None:
        try:
            return take_frame(buf)
        except ValueError as exc:
            raise ReaderProtocolError(f"reader {self.name}: {exc}") from exc

    def interpret(self, frame: bytes) -> str | Ack | None:
        text = frame.decode("latin-1")
        if text in ACKS:
            return ACK
        try:
            error = parse_error(text)
        except ValueError as exc:
            raise ReaderProtocolError(f"reader {self.name}: {exc}") from exc
        if error is not None:
            command, code = error
            why = ERRORS.get(code, "code not in the manual's table")
            raise ReaderStatusError(f"reader {self.name}: {command} refused with {text!r}: {why}", code)
        if text == OVERFLOW:
            raise ReaderProtocolError(f"reader {self.name}: the reader reports a buffer overflow ({text!r});"
                                      " results were lost")
        return None if text == self.cfg.no_read else text


__all__ = ["ERRORS", "Framing", "KeyenceSR", "KeyenceSettings", "encode_command", "parse_error", "take_frame"]
