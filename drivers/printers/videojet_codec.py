"""Videojet WSI "simple protocol" packets: pure encode/decode, no I/O.

Source: the public facts in research/protocols.md (Videojet 1000-line CIJ, serial or TCP 3100): a packet
is STX, one packet-type character, LF-separated fields, ETX; the printer answers each packet with a
3-character check sequence, `$8D` for ACK and `!51` for NAK as public emulators use.

Uncertain, and therefore settings rather than facts in code:
- the checksum: public code shows a two-hex-digit sum mod 256, but the byte range it covers is not
  confirmed. `WsiChecksum.NONE` (default) sends none; `SUM_HEX` appends two upper-case hex digits of the
  sum of the type character and fields, before ETX. Verify against your printer before enabling it.
- the layout of query replies (`E` error status, `G` counters, `Q` selected message, `H` part number):
  this module reads them as a packet of the same type with LF-separated fields; which field means what
  is chosen in the driver's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from drivers.printers.base import ProtocolError

STX = 0x02
ETX = 0x03
LF = 0x0A
ACK_SEQ = b"$8D"
NAK_SEQ = b"!51"
MAX_PACKET = 4096  # larger than any WSI packet we send; a runaway frame is garbage, not data


class PacketType(StrEnum):
    SELECT_MESSAGE = "M"
    UPDATE_TEXT = "T"
    UPDATE_USER_FIELD = "U"
    CLEAR_FIELD = "D"
    ERROR_STATUS = "E"
    SELECTED_MESSAGE = "Q"
    COUNTERS = "G"
    PRINT_ON_OFF = "O"
    STOP_JET = "K"
    PART_NUMBER = "H"


class WsiChecksum(StrEnum):
    NONE = "none"
    SUM_HEX = "sum_hex"


@dataclass(frozen=True, slots=True)
class Packet:
    kind: PacketType
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Check:
    """The printer's 3-character answer to a command packet."""

    ok: bool


Reply = Packet | Check


def _sum_hex(body: bytes) -> bytes:
    return f"{sum(body) & 0xFF:02X}".encode("ascii")


def encode_packet(packet: Packet, checksum: WsiChecksum = WsiChecksum.NONE) -> bytes:
    """STX type fields(LF-separated) [checksum] ETX. Field text must not contain STX, ETX or LF."""
    for f in packet.fields:
        if any(c in f for c in "\x02\x03\n"):
            raise ValueError(f"WSI field {f!r} contains STX, ETX or LF, which the framing cannot carry")
    try:
        body = packet.kind.value.encode("ascii") + b"\n".join(f.encode("latin-1") for f in packet.fields)
    except UnicodeEncodeError as exc:
        raise ValueError(f"WSI fields must be Latin-1 text: {exc}") from exc
    tail = _sum_hex(body) if checksum is WsiChecksum.SUM_HEX else b""
    return bytes([STX]) + body + tail + bytes([ETX])


def decode_body(body: bytes, checksum: WsiChecksum = WsiChecksum.NONE) -> Packet:
    """The bytes between STX and ETX -> Packet; ProtocolError says what is wrong with them."""
    if checksum is WsiChecksum.SUM_HEX:
        if len(body) < 3:
            raise ProtocolError(f"WSI packet {body!r} too short to carry a checksum")
        body, got = body[:-2], body[-2:]
        want = _sum_hex(body)
        if got.upper() != want:
            raise ProtocolError(f"WSI checksum {got!r} does not match {want!r} for {body!r}")
    if not body:
        raise ProtocolError("empty WSI packet (STX ETX)")
    try:
        kind = PacketType(chr(body[0]))
    except ValueError as exc:
        raise ProtocolError(f"unknown WSI packet type {chr(body[0])!r} in {body!r}") from exc
    rest = body[1:]
    fields = tuple(f.decode("latin-1") for f in rest.split(b"\n")) if rest else ()
    return Packet(kind, fields)


class WsiDeframer:
    """Cuts a byte stream into check sequences and packets; anything else is a ProtocolError.

    Why streaming: on serial and TCP a reply may arrive in pieces or several at once; the driver feeds
    whatever it read and takes the complete replies. After a ProtocolError the buffer is dropped so the
    next exchange starts clean.
    """

    def __init__(self, checksum: WsiChecksum = WsiChecksum.NONE) -> None:
        self.checksum = checksum
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out: list[Reply] = []
        try:
            while self._buf:
                first = self._buf[0]
                if first == STX:
                    end = self._buf.find(ETX)
                    if end < 0:
                        if len(self._buf) > MAX_PACKET:
                            raise ProtocolError(f"WSI packet longer than {MAX_PACKET} bytes without ETX")
                        break
                    body = bytes(self._buf[1:end])
                    del self._buf[: end + 1]
                    out.append(decode_body(body, self.checksum))
                elif first in b"$!":
                    if len(self._buf) < 3:
                        break
                    seq = bytes(self._buf[:3])
                    del self._buf[:3]
                    if seq == ACK_SEQ:
                        out.append(Check(ok=True))
                    elif seq == NAK_SEQ:
                        out.append(Check(ok=False))
                    else:
                        raise ProtocolError(f"WSI check sequence {seq!r} is neither {ACK_SEQ!r} nor {NAK_SEQ!r}")
                else:
                    raise ProtocolError(f"unexpected byte 0x{first:02X} in WSI stream {bytes(self._buf[:16])!r}")
        except ProtocolError:
            self._buf.clear()
            raise
        return out


def user_field_update(field: str, value: str) -> Packet:
    return Packet(PacketType.UPDATE_USER_FIELD, (field, value))


def command(kind: PacketType, *fields: str) -> Packet:
    return Packet(kind, tuple(fields))


def field_at(packet: Packet, index: int, what: str) -> str:
    """A reply field by position, or a ProtocolError naming what was expected there."""
    if index >= len(packet.fields):
        raise ProtocolError(f"WSI {packet.kind.name} reply {packet.fields!r} has no field {index} ({what})")
    return packet.fields[index]


def int_field(packet: Packet, index: int, what: str) -> int:
    raw = field_at(packet, index, what)
    digits = raw.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ProtocolError(f"WSI {packet.kind.name} reply field {index} ({what}) is {raw!r}, not a number")
    return int(digits)
