"""Framing as pure functions: bytes of one message <-> bytes on the wire. No I/O, no clocks.

Why pure: every coder protocol wraps its payload differently (STX/ETX, `^0`...CR, `{`...`}`, an ESC
before each delimiter, a length field, a checksum over some byte range). Kept apart from the
transports, each of these is a table of bytes that a parametrized test can pin down exactly, and the
streaming de-framer can be fed any split of any byte stream (hypothesis) without a device.

What a `FrameSpec` covers: start and end delimiters of any length (an ESC-prefixed delimiter is just a
2-byte one), escaping of payload bytes by a prefix byte (optionally XOR 0x20, as SLIP/PPP do) or by
doubling, a 1-2 byte length field after the start, checksums (XOR, sum mod 256, two's complement of the
sum) sent as one binary byte or two ASCII hex digits, placed before or after the end delimiter, over a
configurable range, standalone tokens outside frames (ACK, NAK, DC2) for handshaking protocols,
fixed-size replies outside frames (`tagged`: WSI's `$XX`/`!XX` check sequences) and filler bytes
dropped between frames (`filler`: the CR LF after NGPCL replies).

Checksum range, in this module's terms: always the (unescaped) payload, plus the start delimiter and
length field when `covers_start`, plus the end delimiter when the checksum follows it and `covers_end`.
"""

from drivers.framing.codec import (
    checksum_bytes,
    checksum_value,
    encode,
    escape,
    parse_checksum,
    unescape,
)
from drivers.framing.deframer import Deframer, decode
from drivers.framing.spec import (
    GARBAGE,
    ChecksumEncoding,
    ChecksumKind,
    ChecksumPlace,
    ChecksumSpec,
    EscapeMode,
    Frame,
    FrameError,
    FrameSpec,
    LengthSpec,
    spec_problems,
)

__all__ = [
    "GARBAGE",
    "ChecksumEncoding",
    "ChecksumKind",
    "ChecksumPlace",
    "ChecksumSpec",
    "Deframer",
    "EscapeMode",
    "Frame",
    "FrameError",
    "FrameSpec",
    "LengthSpec",
    "checksum_bytes",
    "checksum_value",
    "decode",
    "encode",
    "escape",
    "parse_checksum",
    "spec_problems",
    "unescape",
]
