"""Videojet 1000 Line WSI packets: pure encode/decode and link arithmetic, no I/O.

Source: "Videojet 1000 Line Series WSI Communications Protocol", P/N 462115-01, Revision AD (July 2013):
- section 3: a host packet is [STX][TYPE][DATA][ETX]; TYPE one character 'A'-'Z'; DATA characters
  0x20-0x7F plus LF (0x0A), the field separator. The host sends no checksum. The machine answers a
  three-character check sequence: `$XX` executed, `!XX` unknown command or failed, XX the modulo-256 sum
  of every byte between STX and ETX of the host's packet, two characters '0'-'9'/'A'-'F', high nibble
  first. Section 3.16's examples: STX `RA` ETX -> `$93`, STX `RB` ETX -> `$94`.
- 3.10 `H` -> [STX][PART NUMBER][ETX], e.g. "1.0.385W" and 8 spaces (4.5: always 16 characters).
- 3.11 `E` -> [STX][EEEEEE][A][ETX]: six hex characters of error bits ("byte" 1-6, bits 0-3 each, the
  table `ERROR_BITS` below) and one alarm character (bit 0 green, 1 amber, 2 red, 3 "alarm activated -
  not used").
- 3.13 `Q` -> [STX][MESSAGE NAME][ETX]. 3.15 `G` `A`|`B` -> [STX] digits [ETX] (the text says ten
  digits, its examples show eight: any number of digits is accepted).
- 3.1 `M` 1-30 characters; 3.5 `D` user field name 1-30; 3.6 `U` name LF data, data 1-50 characters.
- 5 (appendix): the 1710 and 1610DH do not support G, O, Q, R, Z nor the `!` reply (their `$` is the
  only "command response"). The appendix shows the 1510 and 1610 columns; the 1210/1220/1520 are taken
  to follow the 1510 and the 1620 the 1610 (section 4.7.1 groups 1210/1220/1510/1520).

Not in the manual, so handled where it is decided (drivers/printers/videojet.py, `QueryCheck`):
whether a query's data packet comes with a check sequence as well. Section 3 says every packet is
answered by one; the examples of 3.15 show the data packet alone. The reader here returns whatever
arrives, in order. Left out: the T/P/L/B data layouts (3.3-3.4, 3.7-3.8): the driver sends none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag, StrEnum

from drivers.printers.base import BadRecord, Capabilities, Fault, PrinterState, ProtocolError
from drivers.printers.fifo import CoderKind

STX = 0x02
ETX = 0x03
LF = 0x0A
MAX_REPLY = 64  # longer than any reply of section 3 (16 for H); a runaway packet is garbage
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
CHECK_LEN = 3


class Cmd(StrEnum):
    """Packet types, section 2."""

    SET_MODULE_WIDTHS = "B"
    DELETE_MESSAGE_TEXT = "C"
    CLEAR_USER_FIELD = "D"
    ERROR_STATUS = "E"
    GET_COUNTER = "G"
    PART_NUMBER = "H"
    STOP_JET = "K"
    UPDATE_LOGO = "L"
    SELECT_MESSAGE = "M"
    PRINT_ON_OFF = "O"
    MESSAGE_PARAMETERS = "P"
    SELECTED_MESSAGE = "Q"
    RESET_COUNTER = "R"
    UPDATE_MESSAGE_TEXT = "T"
    UPDATE_USER_FIELD = "U"
    SET_DATE_TIME = "Z"


class Counter(StrEnum):
    PRINT = "A"  # 3.15: print counter
    PRODUCT = "B"  # 3.15: product counter


class QueryCheck(StrEnum):
    """How a query's data packet comes (section 3 vs the examples of 3.15; see the module docstring)."""

    AUTO = "auto"  # found out at connect from the answer to `H`
    NONE = "none"  # the data packet alone (3.15's examples)
    BEFORE = "before"  # `$XX` then the data packet
    AFTER = "after"  # the data packet then `$XX`


class VideojetModel(StrEnum):
    V1210 = "1210"
    V1220 = "1220"
    V1510 = "1510"
    V1520 = "1520"
    V1610 = "1610"
    V1620 = "1620"
    V1710 = "1710"
    V1610DH = "1610DH"


# Appendix: "Currently not supported" on the 1710 and 1610DH.
LIMITED_MODELS = frozenset({VideojetModel.V1710, VideojetModel.V1610DH})
NOT_ON_LIMITED = frozenset({Cmd.GET_COUNTER, Cmd.PRINT_ON_OFF, Cmd.SELECTED_MESSAGE, Cmd.RESET_COUNTER,
                            Cmd.SET_DATE_TIME})


@dataclass(frozen=True, slots=True)
class ModelRules:
    commands: frozenset[Cmd]
    error_reply: bool  # answers `!XX` to an unknown or failed command (else `$XX` means "received")

    def has(self, cmd: Cmd) -> bool:
        return cmd in self.commands


def model_rules(model: VideojetModel) -> ModelRules:
    if model in LIMITED_MODELS:
        return ModelRules(frozenset(Cmd) - NOT_ON_LIMITED, error_reply=False)
    return ModelRules(frozenset(Cmd), error_reply=True)


# -- host packets ------------------------------------------------------------------------------------


def checksum(body: bytes) -> int:
    """Section 3: modulo-256 sum of every byte between STX and ETX."""
    return sum(body) & 0xFF


def check_sequence(body: bytes, ok: bool = True) -> bytes:
    return (b"$" if ok else b"!") + f"{checksum(body):02X}".encode("ascii")


def _data_bytes(text: str, what: str) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise BadRecord(f"WSI {what} {text!r} is not ASCII (section 3: characters 20h-7Fh)") from None
    bad = [b for b in raw if not 0x20 <= b <= 0x7F]
    if bad:
        raise BadRecord(f"WSI {what} {text!r} holds control byte 0x{bad[0]:02X} (section 3: 20h-7Fh only)")
    return raw


def body(cmd: Cmd, *fields: str) -> bytes:
    """TYPE + fields joined by LF: what the check sequence sums. Fields must not hold LF themselves."""
    return cmd.value.encode("ascii") + bytes([LF]).join(_data_bytes(f, f"{cmd.name} field") for f in fields)


def frame(packet_body: bytes) -> bytes:
    return bytes([STX]) + packet_body + bytes([ETX])


def packet(cmd: Cmd, *fields: str) -> bytes:
    return frame(body(cmd, *fields))


def check_name(name: str, what: str) -> str:
    """Sections 3.1, 3.5, 3.6: message and user field names are 1-30 characters."""
    if not 1 <= len(name) <= 30:
        raise BadRecord(f"WSI {what} {name!r} must be 1-30 characters (sections 3.1/3.5)")
    _data_bytes(name, what)
    return name


def check_user_data(text: str) -> str:
    """Section 3.6: USER FIELD DATA is 1-50 characters (a text field is sent verbatim)."""
    if not 1 <= len(text) <= 50:
        raise BadRecord(f"WSI user field data {text!r} must be 1-50 characters (section 3.6)")
    _data_bytes(text, "user field data")
    return text


# -- replies -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckSeq:
    ok: bool  # `$` executed; `!` unknown command or failed
    value: int  # the XX: must equal checksum() of the packet it answers

    def matches(self, packet_body: bytes) -> bool:
        return self.value == checksum(packet_body)

    def __str__(self) -> str:
        return f"{'$' if self.ok else '!'}{self.value:02X}"


@dataclass(frozen=True, slots=True)
class DataPacket:
    data: str  # between STX and ETX: printable ASCII only


Reply = CheckSeq | DataPacket
_HEX = b"0123456789ABCDEFabcdef"


class ReplyReader:
    """Cuts the machine's byte stream into check sequences and data packets, in wire order.

    Why streaming: serial and TCP deliver a reply in pieces or several together. Anything that is
    neither is a ProtocolError naming the bytes; the buffer is dropped so the next exchange starts clean.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out: list[Reply] = []
        try:
            while self._buf and (item := self._next()) is not None:
                out.append(item)
        except ProtocolError:
            self._buf.clear()
            raise
        return out

    def _next(self) -> Reply | None:
        buf = self._buf
        first = buf[0]
        if first == STX:
            end = buf.find(ETX)
            if end < 0:
                if len(buf) > MAX_REPLY + 1:
                    raise ProtocolError(f"WSI reply longer than {MAX_REPLY} bytes without ETX: {bytes(buf[:24])!r}")
                self._printable(buf[1:])
                return None
            inner = bytes(buf[1:end])
            self._printable(inner)
            del buf[: end + 1]
            return DataPacket(inner.decode("ascii"))
        if first in b"$!":
            if len(buf) < CHECK_LEN:
                if any(b not in _HEX for b in buf[1:]):
                    raise ProtocolError(f"WSI check sequence {bytes(buf)!r} is not '$'/'!' + two hex digits")
                return None
            seq = bytes(buf[:CHECK_LEN])
            if seq[1] not in _HEX or seq[2] not in _HEX:
                raise ProtocolError(f"WSI check sequence {seq!r} is not '$'/'!' + two hex digits")
            del buf[:CHECK_LEN]
            return CheckSeq(first == ord("$"), int(seq[1:], 16))
        raise ProtocolError(f"unexpected byte 0x{first:02X} in WSI reply stream {bytes(buf[:16])!r}")

    @staticmethod
    def _printable(inner: bytes | bytearray) -> None:
        for b in inner:
            if not 0x20 <= b <= 0x7F:
                raise ProtocolError(f"WSI reply packet holds control byte 0x{b:02X}: {bytes(inner[:24])!r}")


def part_number(reply: DataPacket) -> str:
    """3.10 / 4.5: 16 characters, padded with spaces (any printable text is taken)."""
    return reply.data.rstrip(" ")


def counter_value(reply: DataPacket) -> int:
    """3.15: the counter as decimal digits (ten by the text, eight in its examples)."""
    digits = reply.data
    if not digits or not all("0" <= c <= "9" for c in digits):
        raise ProtocolError(f"WSI counter reply {digits!r} is not decimal digits (section 3.15)")
    return int(digits)


class Alarm(IntFlag):
    """3.11, the A character."""

    NONE = 0
    GREEN = 1
    AMBER = 2
    RED = 4
    ACTIVATED = 8  # "NOT USED"


@dataclass(frozen=True, slots=True)
class ErrorBit:
    byte: int  # 1-6: the position of the hex character in EEEEEE
    bit: int  # 0-3
    text: str
    fault: Fault


def _bits(byte: int, *rows: tuple[str, Fault]) -> tuple[ErrorBit, ...]:
    return tuple(ErrorBit(byte, bit, text, fault) for bit, (text, fault) in enumerate(rows))


H, INK, OTHER = Fault.HEAD_FAULT, Fault.INK_EMPTY, Fault.OTHER
ERROR_BITS: tuple[ErrorBit, ...] = (
    *_bits(1, ("charge error", H), ("EHT trip", H), ("gutter fault", H), ("ink core empty", INK)),
    *_bits(2, ("pump fault", OTHER), ("cabinet too hot", OTHER), ("ink core service overdue", OTHER),
           ("unable to control viscosity", OTHER)),
    *_bits(3, ("bad nozzle", H), ("mod driver chip over temperature", H), ("no phase response from firmware", H),
           ("phasing threshold at minimum", H)),
    *_bits(4, ("phasing threshold at maximum", H), ("auto mod failed to obtain good phasing", H),
           ("initial phasing trim failed", H), ("modulation readback failed", H)),
    *_bits(5, ("rasters memory overflow", OTHER), ("valve error", OTHER), ("core not filling", INK),
           ("insufficient ink to fill core", INK)),
    *_bits(6, ("date/time not set", OTHER), ("new ink core has a different ink reference", OTHER),
           ("EHT calibration required", OTHER), ("byte 6 bit 3 (N/A in Rev AD)", OTHER)),
)


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    nibbles: tuple[int, ...]  # EEEEEE, one value 0-15 per "byte" 1-6
    alarm: Alarm

    @property
    def errors(self) -> tuple[ErrorBit, ...]:
        return tuple(e for e in ERROR_BITS if self.nibbles[e.byte - 1] >> e.bit & 1)

    def encode(self) -> str:
        return "".join(f"{n:X}" for n in self.nibbles) + f"{int(self.alarm):X}"

    @property
    def state(self) -> PrinterState:
        """3.11 gives the traffic light, not what lights it: red is read as a fault, green as printing."""
        if self.alarm & Alarm.RED:
            return PrinterState.FAULT
        return PrinterState.PRINTING if self.alarm & Alarm.GREEN else PrinterState.IDLE

    @property
    def faults(self) -> frozenset[Fault]:
        return frozenset(b.fault for b in self.errors)

    @property
    def detail(self) -> str:
        return "; ".join(b.text for b in self.errors) or f"traffic light {(self.alarm.name or 'none').lower()}"


def error_status(reply: DataPacket) -> ErrorStatus:
    """3.11: exactly six hex characters of error bits and one alarm character."""
    text = reply.data
    if len(text) != 7 or not all(c in "0123456789ABCDEFabcdef" for c in text):
        raise ProtocolError(f"WSI error status {text!r} is not 6 hex error characters + 1 alarm (section 3.11)")
    return ErrorStatus(tuple(int(c, 16) for c in text[:6]), Alarm(int(text[6], 16)))


# -- link arithmetic ---------------------------------------------------------------------------------

COUNTER_DIGITS = 10  # 3.15's text; a reply of fewer digits only makes an exchange shorter


def exchange_s(sent: int, received: int, baud: int | None, turnaround_s: float) -> float:
    """One lock-step exchange: the packet out, the coder's turnaround, the answer back."""
    wire = 0.0 if baud is None else (sent + received) * BITS_PER_BYTE / baud
    return wire + turnaround_s


def max_items_per_min(*, baud: int | None, turnaround_s: float, field_name_len: int, code_len: int,
                      void_after_print: bool = True, query_check_len: int = 0) -> float:
    """The highest line rate at which a single-slot WSI feed never lets a product meet a stale field.

    Per item the driver must (drivers/printers/videojet.py): see the print (status() polls G + E; the
    poll in flight when the print happened may have read the counter just before it, so the print is
    seen at worst two polls later), void the field if `void_after_print`, then push: G (counter before
    the update), U (the new code), G (proof that no product passed while the field was replaced).
    `baud=None` is a network link: only the turnaround counts. `query_check_len` is 3 where the coder
    adds a check sequence to each query's data packet.
    """
    u = exchange_s(4 + field_name_len + code_len, CHECK_LEN, baud, turnaround_s)  # STX U name LF data ETX
    g = exchange_s(4, 2 + COUNTER_DIGITS + query_check_len, baud, turnaround_s)  # STX G A ETX
    e = exchange_s(3, 2 + 7 + query_check_len, baud, turnaround_s)  # STX E ETX
    d = exchange_s(3 + field_name_len, CHECK_LEN, baud, turnaround_s) if void_after_print else 0.0
    cycle = 2 * (g + e) + d + g + u + g
    if cycle <= 0:
        raise ValueError("an item takes no time on this link: give a baud rate or a turnaround")
    return 60.0 / cycle


def slot_capabilities(model: VideojetModel, counter: Counter, *, baud: int | None, turnaround_s: float,
                      field_name_len: int, code_len: int, void_after_print: bool = True,
                      query_check_len: int = 0) -> Capabilities:
    """What a WSI coder of `model` offers a feed (appendix 5): one slot; proof of a print only with G."""
    counters = model_rules(model).has(Cmd.GET_COUNTER)
    rate = max_items_per_min(baud=baud, turnaround_s=turnaround_s, field_name_len=field_name_len,
                             code_len=code_len, void_after_print=void_after_print,
                             query_check_len=query_check_len) if counters else 0.0
    proof = (f"counter G {counter.value} advanced" if counters else
             f"none: the {model.value} has no counter request (WSI Rev AD appendix)")
    return Capabilities(
        fifo_capacity=1, indexed=False, print_complete_events=False, counters=counters, kind=CoderKind.SINGLE_SLOT,
        status=True, double_print_guard=False, proves_flush=counters, max_items_per_min=rate,
        extra={"protocol": "videojet-wsi", "model": model.value, "confirmation": proof},
    )
