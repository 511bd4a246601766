"""Hitachi IJ (PH / RX / RX2 / UX) communication-buffer texts: pure encode/decode, no I/O.

Source: Hitachi's public instruction manuals (transmission sequences, code table, "communication
buffer" chapter) as summarised in research/protocols.md:
- ENQ -> ACK, then STX text ETX [BCC] -> ACK / NAK; ENQ may be omitted; DC2 asks the printer to become
  ready again (ACK, or NAK when off-line); at most 1500 bytes per exchange including STX and ETX.
- print contents: DLE, item number (item 1 = 0x31), up to 10 characters; at most 8 items and 80
  characters per data set sent to the communication buffer; one data set is consumed per print.
- "clear buffer" (header 76h) and "restart printing" (header 77h) are each sent on their own; after a
  clear, at least N data sets ("data number at fault") must be in the buffer before restart.

Left out / uncertain (settings, not facts): the manuals draw clear as `STX ESC2 76h ETX` and restart as
`STX ESC 77h ETX`; we read "ESC2" as the two bytes ESC '2' and expose both texts as hex settings. The
BCC byte range is not stated in the public pages; `Bcc.XOR` here XORs the text bytes and ETX (the
usual convention) and is off by default. The 2-byte (kanji) code mode, print format and print
specification texts, and any status query are not implemented: the public pages give no status or
counter reply, so the driver cannot confirm prints by itself.
"""

from __future__ import annotations

from enum import StrEnum

from drivers.printers.base import ProtocolError

ENQ = 0x05
ACK = 0x06
NAK = 0x15
STX = 0x02
ETX = 0x03
DLE = 0x10
DC2 = 0x12
ESC = 0x1B
FIRST_ITEM_CODE = 0x31
ITEM_CHARS = 10
MAX_ITEMS_PER_SET = 8
MAX_CHARS_PER_SET = 80
MAX_EXCHANGE = 1500

CLEAR_BUFFER_DEFAULT = bytes([ESC, ord("2"), 0x76])
RESTART_DEFAULT = bytes([ESC, 0x77])


class Bcc(StrEnum):
    NONE = "none"
    XOR = "xor"


def bcc_xor(data: bytes) -> int:
    value = 0
    for b in data:
        value ^= b
    return value


def frame_text(text: bytes, bcc: Bcc = Bcc.NONE) -> bytes:
    """STX text ETX [BCC]; refuses texts over the 1500-byte exchange limit."""
    if STX in text or ETX in text:
        raise ValueError(f"Hitachi text {text!r} contains STX or ETX")
    framed = bytes([STX]) + text + bytes([ETX])
    if bcc is Bcc.XOR:
        framed += bytes([bcc_xor(text + bytes([ETX]))])
    if len(framed) > MAX_EXCHANGE:
        raise ValueError(f"Hitachi exchange of {len(framed)} bytes exceeds the {MAX_EXCHANGE}-byte limit")
    return framed


def split_items(text: str, first_item: int = 1) -> list[tuple[int, str]]:
    """Spread a code over consecutive print items of 10 characters each (item numbers from 1)."""
    if not text:
        raise ValueError("empty print contents")
    if len(text) > MAX_CHARS_PER_SET:
        raise ValueError(f"code of {len(text)} chars exceeds {MAX_CHARS_PER_SET} chars per data set")
    chunks = [text[i : i + ITEM_CHARS] for i in range(0, len(text), ITEM_CHARS)]
    if first_item < 1 or first_item + len(chunks) - 1 > 0xFF - FIRST_ITEM_CODE + 1:
        raise ValueError(f"item numbers {first_item}..{first_item + len(chunks) - 1} are out of range")
    return [(first_item + i, chunk) for i, chunk in enumerate(chunks)]


def encode_print_contents(items: list[tuple[int, str]]) -> bytes:
    """DLE <item code> <up to 10 chars>, repeated; ASCII only (1-byte mode)."""
    if not items or len(items) > MAX_ITEMS_PER_SET:
        raise ValueError(f"a data set carries 1..{MAX_ITEMS_PER_SET} items, got {len(items)}")
    out = bytearray()
    for number, chars in items:
        if len(chars) > ITEM_CHARS:
            raise ValueError(f"item {number} has {len(chars)} chars; an item holds {ITEM_CHARS}")
        try:
            raw = chars.encode("ascii")
        except UnicodeEncodeError as exc:
            raise ValueError(f"item {number} text {chars!r} is not ASCII (1-byte mode)") from exc
        if any(b < 0x20 for b in raw):
            raise ValueError(f"item {number} text {chars!r} contains control characters")
        out += bytes([DLE, FIRST_ITEM_CODE + number - 1]) + raw
    return bytes(out)


def decode_print_contents(text: bytes) -> list[tuple[int, str]]:
    """Inverse of encode_print_contents (used by the simulator); ProtocolError on anything else."""
    if not text or text[0] != DLE:
        raise ProtocolError(f"Hitachi print contents must start with DLE, got {text[:8]!r}")
    items: list[tuple[int, str]] = []
    for part in text[1:].split(bytes([DLE])):
        if not part:
            raise ProtocolError(f"Hitachi print contents has a DLE without an item number: {text!r}")
        code, chars = part[0], part[1:]
        if code < FIRST_ITEM_CODE:
            raise ProtocolError(f"Hitachi item code 0x{code:02X} is below 0x{FIRST_ITEM_CODE:02X}")
        if len(chars) > ITEM_CHARS or any(b < 0x20 or b > 0x7E for b in chars):
            raise ProtocolError(f"Hitachi item {code - FIRST_ITEM_CODE + 1} text {chars!r} is not 0-10 ASCII")
        items.append((code - FIRST_ITEM_CODE + 1, chars.decode("ascii")))
    if len(items) > MAX_ITEMS_PER_SET or sum(len(c) for _, c in items) > MAX_CHARS_PER_SET:
        raise ProtocolError(f"Hitachi data set exceeds {MAX_ITEMS_PER_SET} items / {MAX_CHARS_PER_SET} chars")
    return items


def join_items(items: list[tuple[int, str]]) -> str:
    return "".join(chars for _, chars in sorted(items))


class TextDeframer:
    """Printer side: collects STX text ETX [BCC] from a byte stream, reporting control bytes between.

    Yields ('ctl', byte) for ENQ/DC2/ACK/NAK outside a text and ('text', bytes) for a complete text;
    a bad BCC or an over-long text raises ProtocolError (the printer answers NAK to those).
    """

    def __init__(self, bcc: Bcc = Bcc.NONE) -> None:
        self.bcc = bcc
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._buf += data
        out: list[tuple[str, bytes]] = []
        while self._buf:
            if self._buf[0] != STX:
                out.append(("ctl", bytes(self._buf[:1])))
                del self._buf[:1]
                continue
            end = self._buf.find(ETX)
            if end < 0:
                if len(self._buf) > MAX_EXCHANGE:
                    self._buf.clear()
                    raise ProtocolError(f"Hitachi text longer than {MAX_EXCHANGE} bytes without ETX")
                break
            need = end + (2 if self.bcc is Bcc.XOR else 1)
            if len(self._buf) < need:
                break
            text = bytes(self._buf[1:end])
            got = self._buf[end + 1] if self.bcc is Bcc.XOR else None
            del self._buf[:need]
            if got is not None and got != bcc_xor(text + bytes([ETX])):
                raise ProtocolError(f"Hitachi BCC 0x{got:02X} does not match text {text!r}")
            out.append(("text", text))
        return out


def parse_answer(byte: int) -> bool:
    """The printer's one-byte answer: True for ACK, False for NAK; anything else is garbage."""
    if byte == ACK:
        return True
    if byte == NAK:
        return False
    raise ProtocolError(f"Hitachi answered 0x{byte:02X}; expected ACK (06) or NAK (15)")
