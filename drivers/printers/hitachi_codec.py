"""Hitachi IJ printer serial texts (RX / RX2 / UX and PH / PX / PXR): pure encode/decode, no I/O.

Primary sources:
- Hitachi "Technical Manual, Ink Jet Printer Model RX", rev D (RX_Technical_Manual_revD.pdf), chapter 5
  "Communication": 5.2.2 transmission specifications, 5.3.1 common transmission sequences (ENQ -> ACK,
  STX text ETX [BCC] -> ACK / NAK, ENQ may be omitted, DC2 retransmission, at most 3000 bytes per
  text), 5.3.2 print contents (DLE + item number from 31H, item codes 31H..94H for items 1..100),
  5.3.3 print data recall (ESC2 20H 31H + 4 digits; example `02H 1FH 20H 31H 30H 30H 31H 32H 03H`),
  5.3.8 on/off-line (ESC2 73H/74H, no STX/ETX), 5.3.9 remote operation (ESC2 72H + 30H..34H, 34H =
  fault clear), 5.3.10 time inquiry (ESC2 75H -> STX ESC2 7FH + 14 digits ETX), 5.4.1 code table
  (ESC2 is the single byte 1FH, ESC 1BH is the "existing machine" header), 5.4.2 header table,
  5.9.3 communication buffer (clear buffer STX ESC2 76H ETX, restart printing STX ESC2 77H ETX; at most
  8 items / 80 characters per transmission).
- INNOVATIVE-PROBLEM-SOLVERS-LLC/HitachiEtherNetIP, Hitachi_Protocol_DLL/HitachiProtocol/
  HitachiProtocol.cs and HitachiProtocolDefs.cs (a C# client, 2020): the status query `ESC #`
  (1BH 23H, no STX/ETX, "PX, PXR, RX -- SOP-04") answered by `STX '1' <connection> <reception>
  <operation> <alarm> ETX` (IsStatus, HPStatus.cs translation tables); the PX/PXR buffer texts
  `STX ESC 2DH ETX` (clear) and `STX ESC 5AH ETX` (restart); ESC2 for RX, RX2, UX and TwinNozzle,
  ESC for PH, PX, PXR, PXRH (PrinterType setter).

Left out: the 2-byte character modes (SI/SO, 5.3.2-4), print format / specification / calendar /
count / user pattern texts, the "existing machine" print data recall (the manual gives ESC 55H,
the C# client ESC 56H: not settled, so no call-up on ESC models), the undocumented retrieve texts
(ESC2 50H ..), whose reply layouts neither source describes. The manual says a BCC may follow ETX
(5.3.1 (5)) but not which bytes it covers: `Bcc.XOR` (text and ETX) is a guess, off by default.
The RX manual lists "ESC 77H" as the existing-machine restart while the C# client sends ESC 5AH to
PX/PXR: the legacy restart header is therefore a driver setting (default the C# client's).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from drivers.printers.base import Fault, PrinterState, ProtocolError

STX, ETX, ENQ, ACK = 0x02, 0x03, 0x05, 0x06
SO, SI, DLE, DC2, DC3, NAK = 0x0E, 0x0F, 0x10, 0x12, 0x13, 0x15
ESC, ESC2 = 0x1B, 0x1F
FIRST_ITEM_CODE = 0x31  # item 1 (5.3.2-2); item 100 is 94H
MAX_ITEM = 100
MAX_TEXT = 3000  # bytes per transmission including STX and ETX (5.3.1 (8))
MAX_ITEMS_PER_SET = 8  # print items per buffered transmission (5.9.3-1 (2))
MAX_CHARS_PER_SET = 80
BUFFER_ITEMS = 100  # communication buffer capacity (5.9.2 (2))
BUFFER_CHARS = 1000
STATUS_QUERY = bytes([ESC, 0x23])  # C# BuildFetchString, FetchOps.Status
STATUS_LEN = 7  # STX '1' connection reception operation alarm ETX (C# IsStatus)


class Model(StrEnum):
    """Hitachi's model families, as the C# client's HitachiPrinterType."""

    PH = "PH"
    PX = "PX"
    PXR = "PXR"
    PXRH = "PXRH"
    RX = "RX"
    RX2 = "RX2"
    UX = "UX"
    TWIN = "TwinNozzle"

    @property
    def esc2(self) -> bool:
        """RX-class printers use the ESC2 (1FH) headers; older models the ESC (1BH) ones."""
        return self in (Model.RX, Model.RX2, Model.UX, Model.TWIN)


class Bcc(StrEnum):
    NONE = "none"
    XOR = "xor"  # XOR over text + ETX: an assumption, the manual does not give the range


def bcc_xor(data: bytes) -> int:
    value = 0
    for b in data:
        value ^= b
    return value


def frame(text: bytes, bcc: Bcc = Bcc.NONE) -> bytes:
    """STX text ETX [BCC]. ValueError when the text cannot be framed (an STX/ETX inside, too long)."""
    if STX in text or ETX in text:
        raise ValueError(f"Hitachi text {text!r} contains STX or ETX")
    framed = bytes([STX]) + text + bytes([ETX])
    if len(framed) > MAX_TEXT:
        raise ValueError(f"Hitachi text of {len(framed)} bytes exceeds the {MAX_TEXT}-byte limit (5.3.1 (8))")
    if bcc is Bcc.XOR:
        framed += bytes([bcc_xor(text + bytes([ETX]))])
    return framed


@dataclass(frozen=True, slots=True)
class Commands:
    """The texts one model family understands (5.4.2 header table; C# BuildSOP16Command)."""

    clear_buffer: bytes
    restart_printing: bytes
    remote_prefix: bytes  # + 30H start, 31H stop, 32H ready (deflection on), 33H standby, 34H fault clear
    time_query: bytes
    esc2: bool

    @classmethod
    def for_model(cls, model: Model, *, legacy_restart: int = 0x5A) -> Commands:
        if model.esc2:
            return cls(bytes([ESC2, 0x76]), bytes([ESC2, 0x77]), bytes([ESC2, 0x72]), bytes([ESC2, 0x75]), True)
        return cls(bytes([ESC, 0x2D]), bytes([ESC, legacy_restart]), bytes([ESC, 0x71]), bytes([ESC, 0x7B]), False)

    def remote(self, kind: Remote) -> bytes:
        return self.remote_prefix + bytes([int(kind)])


class Remote(IntEnum):
    """5.3.9-1 remote operation types."""

    START = 0x30
    STOP = 0x31
    READY = 0x32  # deflection voltage on
    STANDBY = 0x33  # deflection voltage off
    FAULT_CLEAR = 0x34


def recall(message: int) -> bytes:
    """Print data recall (5.3.3-1): ESC2 20H 31H + the message number 0001..2000 in 4 digits."""
    if not 1 <= message <= 2000:
        raise ValueError(f"message number {message} is outside 1..2000")
    return bytes([ESC2, 0x20, 0x31]) + f"{message:04d}".encode("ascii")


def item_code(item: int) -> int:
    if not 1 <= item <= MAX_ITEM:
        raise ValueError(f"print item {item} is outside 1..{MAX_ITEM}")
    return FIRST_ITEM_CODE + item - 1


def split_items(text: str, first_item: int, item_chars: int) -> list[tuple[int, str]]:
    """Spread a code over consecutive print items of `item_chars` characters from `first_item`."""
    if not text:
        raise ValueError("empty print contents")
    chunks = [text[i : i + item_chars] for i in range(0, len(text), item_chars)]
    item_code(first_item + len(chunks) - 1)
    return [(first_item + i, chunk) for i, chunk in enumerate(chunks)]


def print_contents(items: list[tuple[int, str]]) -> bytes:
    """DLE <item code> <characters>, repeated (5.3.2-1); 1-byte mode, ASCII characters only.
    An item with no characters erases that item's string (5.3.2-1 (2))."""
    if not items or len(items) > MAX_ITEMS_PER_SET:
        raise ValueError(f"a buffered transmission carries 1..{MAX_ITEMS_PER_SET} items, got {len(items)}")
    if sum(len(chars) for _, chars in items) > MAX_CHARS_PER_SET:
        raise ValueError(f"a buffered transmission carries at most {MAX_CHARS_PER_SET} characters")
    out = bytearray()
    for number, chars in items:
        if not chars.isascii() or not all(0x20 <= ord(c) <= 0x7E for c in chars):
            raise ValueError(f"item {number} text {chars!r} is not printable ASCII (1-byte mode)")
        out += bytes([DLE, item_code(number)]) + chars.encode("ascii")
    return bytes(out)


def parse_print_contents(text: bytes) -> list[tuple[int, bytes]]:
    """Inverse of print_contents (the simulator's side); ProtocolError on anything else."""
    if not text or text[0] != DLE:
        raise ProtocolError(f"Hitachi print contents must start with DLE, got {text[:8]!r}")
    items: list[tuple[int, bytes]] = []
    for part in text[1:].split(bytes([DLE])):
        if not part or not FIRST_ITEM_CODE <= part[0] < FIRST_ITEM_CODE + MAX_ITEM:
            raise ProtocolError(f"Hitachi print contents has a DLE without a valid item number: {text[:16]!r}")
        if any(not 0x20 <= b <= 0x7E for b in part[1:]):
            raise ProtocolError(f"Hitachi item text {part[1:]!r} holds control bytes")
        items.append((part[0] - FIRST_ITEM_CODE + 1, bytes(part[1:])))
    return items


def parse_answer(byte: int) -> bool:
    """The printer's one-byte answer: True for ACK, False for NAK; anything else is garbage."""
    if byte == ACK:
        return True
    if byte == NAK:
        return False
    raise ProtocolError(f"Hitachi answered 0x{byte:02X}; expected ACK (06) or NAK (15)")


# --- status (C# HPStatus.cs translation tables) ----------------------------------------------------
OPERATION_NAMES: dict[int, str] = {
    0x30: "Paused", 0x31: "Running - Not Ready", 0x32: "Ready", 0x33: "Deflection Voltage Fault",
    0x34: "Main Ink Tank Too Full", 0x35: "Blank Print Items", 0x36: "Ink Drop Charge Too Low",
    0x37: "Ink Drop Charge Too High", 0x38: "Print Head Cover Open", 0x39: "Target Sensor Fault",
    0x3A: "System Operation Error C", 0x3B: "Target Spacing Too Close", 0x3C: "Improper Sensor Position",
    0x3D: "System Operation Error M", 0x3E: "Charge Voltage Fault", 0x3F: "Barcode Short On Numbers",
    0x42: "Deflection Voltage Leakage", 0x43: "Print Overlap Fault", 0x44: "Ink Low Fault",
    0x45: "Makeup Ink Low Fault", 0x46: "Print Data Changeover In Progress M", 0x49: "Stopping",
    0x4B: "No Ink Drop Charge", 0x5C: "Maint. Running", 0x60: "External Communication Error",
    0x61: "External Signal Error", 0x66: "Communication Buffer Fault", 0x67: "Shutdown Fault",
    0x69: "Data changeover timing fault", 0x6B: "Print start timing fault",
}
ALARM_NAMES: dict[int, str] = {
    0x30: "No Alarm", 0x31: "Ink Low Warning", 0x32: "Makeup ink Low Warning", 0x33: "Ink Shelf Life Exceeded",
    0x35: "Ink Pressure High", 0x37: "External Communication Error nnn", 0x3B: "External Signal Error nnn",
    0x3C: "Ink Pressure Low",
}
NOT_PRINTING = frozenset({0x30, 0x31, 0x49, 0x5C})  # paused, standby, stopping, maintenance
OPERATION_FAULTS: dict[int, Fault] = {
    0x33: Fault.HEAD_FAULT, 0x36: Fault.HEAD_FAULT, 0x37: Fault.HEAD_FAULT, 0x3E: Fault.HEAD_FAULT,
    0x42: Fault.HEAD_FAULT, 0x4B: Fault.HEAD_FAULT, 0x38: Fault.COVER_OPEN, 0x44: Fault.INK_EMPTY,
    0x45: Fault.INK_EMPTY, 0x66: Fault.BUFFER_EMPTY,
}


@dataclass(frozen=True, slots=True)
class Status:
    online: bool
    reception: bool  # "reception possible"
    operation: int
    alarm: int

    def encode(self) -> bytes:
        return bytes([STX, 0x31, 0x30 + self.online, 0x30 + self.reception, self.operation, self.alarm, ETX])

    @property
    def state(self) -> PrinterState:
        if self.operation == 0x32:
            return PrinterState.PRINTING
        return PrinterState.IDLE if self.operation in NOT_PRINTING else PrinterState.FAULT

    @property
    def faults(self) -> frozenset[Fault]:
        out: set[Fault] = set()
        if self.state is PrinterState.FAULT:
            out.add(OPERATION_FAULTS.get(self.operation, Fault.OTHER))
        if self.alarm in (0x31, 0x32):
            out.add(Fault.INK_LOW)
        return frozenset(out)

    @property
    def detail(self) -> str:
        op = OPERATION_NAMES.get(self.operation, f"operation 0x{self.operation:02X}")
        alarm = ALARM_NAMES.get(self.alarm, f"alarm 0x{self.alarm:02X}")
        return f"{'online' if self.online else 'OFF-LINE'}; {op}; {alarm}"


def parse_status(reply: bytes) -> Status:
    """`STX '1' c r o a ETX` (C# IsStatus/BuildStatus); ProtocolError for anything else."""
    if len(reply) != STATUS_LEN or reply[0] != STX or reply[1] != 0x31 or reply[6] != ETX:
        raise ProtocolError(f"Hitachi status reply {reply!r} is not STX '1' c r o a ETX")
    c, r, o, a = reply[2:6]
    if c not in (0x30, 0x31) or r not in (0x30, 0x31) or not (0x30 <= o <= 0x7F and 0x30 <= a <= 0x7F):
        raise ProtocolError(f"Hitachi status reply {reply!r} has fields out of range")
    return Status(c == 0x31, r == 0x31, o, a)


def parse_time(reply: bytes, esc2: bool = True) -> str:
    """5.3.10-1 (2): STX ESC2 7FH + yyyymmddhhmmss ETX (existing machine: STX ESC 7CH ...)."""
    head = bytes([STX, ESC2, 0x7F]) if esc2 else bytes([STX, ESC, 0x7C])
    digits = reply[3:-1]
    if not reply.startswith(head) or reply[-1:] != bytes([ETX]) or len(digits) != 14 or not digits.isdigit():
        raise ProtocolError(f"Hitachi time reply {reply!r} is not STX {head[1:].hex()} + 14 digits ETX")
    d = digits.decode("ascii")
    return f"{d[0:4]}-{d[4:6]}-{d[6:8]} {d[8:10]}:{d[10:12]}:{d[12:14]}"
