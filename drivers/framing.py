"""Framing as pure functions: bytes of one message <-> bytes on the wire. No I/O, no clocks.

Why pure: every coder protocol wraps its payload differently (STX/ETX, `^0`...CR, `{`...`}`, an ESC
before each delimiter, a length field, a checksum over some byte range). Kept apart from the
transports, each of these is a table of bytes that a parametrized test can pin down exactly, and the
streaming de-framer can be fed any split of any byte stream (hypothesis) without a device.

What a `FrameSpec` covers (research/protocols.md, "What a generic, configurable framed protocol must
cover"): start and end delimiters of any length (an ESC-prefixed delimiter is just a 2-byte one),
escaping of payload bytes by a prefix byte (optionally XOR 0x20, as SLIP/PPP do) or by doubling, a 1-2
byte length field after the start, checksums (XOR, sum mod 256, two's complement of the sum) sent as one
binary byte or two ASCII hex digits, placed before or after the end delimiter, over a configurable range,
and standalone tokens outside frames (ACK, NAK, DC2) for handshaking protocols.

Checksum range, in this module's terms: always the (unescaped) payload, plus the start delimiter and
length field when `covers_start`, plus the end delimiter when the checksum follows it and `covers_end`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from drivers.printers.base import ProtocolError


class ChecksumKind(StrEnum):
    NONE = "none"
    XOR = "xor"  # XOR of every covered byte (Hitachi's BCC)
    SUM8 = "sum8"  # sum mod 256 (Panasonic, Videojet WSI)
    TWOS_COMPLEMENT = "twos_complement"  # (-sum) mod 256: covered bytes + checksum sum to 0


class ChecksumEncoding(StrEnum):
    BINARY = "binary"  # one byte
    HEX = "hex"  # two upper-case ASCII hex digits (lower case accepted on decode)


class ChecksumPlace(StrEnum):
    BEFORE_END = "before_end"
    AFTER_END = "after_end"


class EscapeMode(StrEnum):
    NONE = "none"
    PREFIX = "prefix"  # b -> ESC b
    PREFIX_XOR = "prefix_xor"  # b -> ESC (b ^ 0x20)
    DOUBLE = "double"  # ESC -> ESC ESC; delimiters start with ESC, so ESC + other byte is a delimiter


@dataclass(frozen=True, slots=True)
class ChecksumSpec:
    kind: ChecksumKind = ChecksumKind.NONE
    encoding: ChecksumEncoding = ChecksumEncoding.BINARY
    place: ChecksumPlace = ChecksumPlace.BEFORE_END
    covers_start: bool = False
    covers_end: bool = False

    @property
    def size(self) -> int:
        if self.kind is ChecksumKind.NONE:
            return 0
        return 1 if self.encoding is ChecksumEncoding.BINARY else 2


@dataclass(frozen=True, slots=True)
class LengthSpec:
    size: int = 1  # 1 or 2 bytes
    byteorder: Literal["big", "little"] = "big"
    includes_checksum: bool = False  # the length counts payload + checksum, not payload alone

    def __post_init__(self) -> None:
        if self.size not in (1, 2):
            raise ValueError(f"length field size must be 1 or 2 bytes, not {self.size}")
        if self.byteorder not in ("big", "little"):
            raise ValueError(f"length byteorder must be 'big' or 'little', not {self.byteorder!r}")


@dataclass(frozen=True, slots=True)
class FrameSpec:
    start: bytes = b""
    end: bytes = b""
    escape: bytes = b""  # one byte; required unless escape_mode is NONE
    escape_mode: EscapeMode = EscapeMode.NONE
    escaped: bytes = b""  # payload bytes to escape; default: first bytes of start/end and the escape byte
    length: LengthSpec | None = None
    checksum: ChecksumSpec = field(default_factory=ChecksumSpec)
    tokens: tuple[bytes, ...] = ()  # standalone handshake tokens recognised outside frames
    max_payload: int = 4096

    def __post_init__(self) -> None:
        problems = spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def escape_set(self) -> bytes:
        if self.escape_mode is EscapeMode.NONE:
            return b""
        if self.escaped:
            return bytes(sorted(set(self.escaped) | set(self.escape)))
        picked = set(self.escape) | set(self.start[:1]) | set(self.end[:1])
        if self.escape_mode is EscapeMode.DOUBLE:
            picked = set(self.escape)
        return bytes(sorted(picked))


def spec_problems(spec: FrameSpec) -> list[str]:
    """Why a spec cannot frame unambiguously (empty when it can); shown to whoever wrote the spec."""
    out: list[str] = []
    if not spec.end and spec.length is None:
        out.append("a frame needs an end delimiter or a length field to know where it stops")
    if spec.escape_mode is not EscapeMode.NONE:
        if len(spec.escape) != 1:
            out.append(f"escape_mode {spec.escape_mode} needs exactly one escape byte")
        if spec.length is not None:
            out.append("escaping and a length field together are not supported (the length counts raw bytes)")
    if spec.escape_mode is EscapeMode.DOUBLE and spec.escape:
        for name, delim in (("start", spec.start), ("end", spec.end)):
            if delim and (len(delim) < 2 or delim[:1] != spec.escape):
                out.append(f"escape_mode double needs the {name} delimiter to be the escape byte + one more byte")
    cs = spec.checksum
    if (
        cs.kind is not ChecksumKind.NONE
        and cs.place is ChecksumPlace.BEFORE_END
        and cs.encoding is ChecksumEncoding.BINARY
        and spec.length is None
        and spec.escape_mode is EscapeMode.NONE
    ):
        out.append("a binary checksum before a delimiter needs escaping (it may equal the end byte)")
    for token in spec.tokens:
        if not token:
            out.append("an empty token")
        elif spec.start and (token.startswith(spec.start) or spec.start.startswith(token)):
            out.append(f"token {token!r} overlaps the start delimiter")
    if spec.max_payload < 1:
        out.append("max_payload must be at least 1")
    return out


GARBAGE = "garbage before frame start"  # FrameError.reason for bytes outside any frame


class FrameError(ProtocolError):
    """Bytes on the wire that are not a well-formed frame; `raw` holds them for the trace."""

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        self.reason = reason
        self.raw = raw
        shown = raw[:32].hex(" ")
        more = "..." if len(raw) > 32 else ""
        super().__init__(f"{reason} [{len(raw)} bytes: {shown}{more}]" if raw else reason)


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes  # unescaped, without delimiters/length/checksum; for a token, the token itself
    raw: bytes  # exactly what came off the wire
    token: bool = False


# --- checksums -----------------------------------------------------------------------------------


def checksum_value(kind: ChecksumKind, data: bytes) -> int:
    if kind is ChecksumKind.XOR:
        value = 0
        for b in data:
            value ^= b
        return value
    if kind is ChecksumKind.SUM8:
        return sum(data) & 0xFF
    if kind is ChecksumKind.TWOS_COMPLEMENT:
        return (-sum(data)) & 0xFF
    return 0


def checksum_bytes(spec: ChecksumSpec, data: bytes) -> bytes:
    if spec.kind is ChecksumKind.NONE:
        return b""
    value = checksum_value(spec.kind, data)
    return bytes([value]) if spec.encoding is ChecksumEncoding.BINARY else f"{value:02X}".encode("ascii")


def parse_checksum(spec: ChecksumSpec, raw: bytes) -> int:
    if spec.encoding is ChecksumEncoding.BINARY:
        return raw[0]
    text = raw.decode("ascii", errors="replace")
    if len(text) != 2 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise FrameError("checksum is not two hex digits", raw)
    return int(text, 16)


# --- escaping ------------------------------------------------------------------------------------


def escape(spec: FrameSpec, data: bytes) -> bytes:
    if spec.escape_mode is EscapeMode.NONE:
        return data
    special = spec.escape_set
    esc = spec.escape[0]
    out = bytearray()
    for b in data:
        if b not in special:
            out.append(b)
        elif spec.escape_mode is EscapeMode.PREFIX:
            out += bytes((esc, b))
        elif spec.escape_mode is EscapeMode.PREFIX_XOR:
            out += bytes((esc, b ^ 0x20))
        else:  # DOUBLE: only the escape byte itself is special
            out += bytes((esc, esc))
    return bytes(out)


def unescape(spec: FrameSpec, wire: bytes) -> bytes:
    """Reverse of `escape` for a complete body; a dangling or unknown escape is a FrameError."""
    if spec.escape_mode is EscapeMode.NONE:
        return wire
    esc = spec.escape[0]
    out = bytearray()
    i = 0
    while i < len(wire):
        b = wire[i]
        if b != esc:
            out.append(b)
            i += 1
            continue
        if i + 1 >= len(wire):
            raise FrameError("escape byte at the end of the frame body", wire)
        out.append(_unescaped(spec, wire[i + 1], wire))
        i += 2
    return bytes(out)


def _unescaped(spec: FrameSpec, nxt: int, context: bytes) -> int:
    if spec.escape_mode is EscapeMode.PREFIX:
        literal = nxt
    elif spec.escape_mode is EscapeMode.PREFIX_XOR:
        literal = nxt ^ 0x20
    else:
        literal = nxt if nxt == spec.escape[0] else -1
    if literal not in spec.escape_set:
        raise FrameError(f"invalid escape sequence {bytes((spec.escape[0], nxt))!r}", context)
    return literal


# --- encode --------------------------------------------------------------------------------------


def encode(spec: FrameSpec, payload: bytes) -> bytes:
    """The wire bytes of one frame carrying `payload`."""
    if len(payload) > spec.max_payload:
        raise ValueError(f"payload of {len(payload)} bytes exceeds max_payload {spec.max_payload}")
    cs = spec.checksum
    header = b""
    if spec.length is not None:
        n = len(payload) + (cs.size if spec.length.includes_checksum else 0)
        if n >= 1 << (8 * spec.length.size):
            raise ValueError(f"payload of {len(payload)} bytes does not fit a {spec.length.size}-byte length")
        header = n.to_bytes(spec.length.size, spec.length.byteorder)
    covered = (spec.start + header if cs.covers_start else b"") + payload
    if cs.place is ChecksumPlace.AFTER_END:
        covered += spec.end if cs.covers_end else b""
        body, tail = escape(spec, payload), spec.end + checksum_bytes(cs, covered)
    else:
        body, tail = escape(spec, payload + checksum_bytes(cs, covered)), spec.end
    if _breaks_framing(spec, body):
        raise ValueError(f"payload {payload[:40]!r} holds a delimiter this framing neither escapes nor allows")
    return spec.start + header + body + tail


def _breaks_framing(spec: FrameSpec, body: bytes) -> bool:
    """Would the de-framer see a delimiter inside this (escaped) body? Escape pairs are skipped."""
    if spec.length is not None:
        return False
    esc = spec.escape[0] if spec.escape_mode is not EscapeMode.NONE else -1
    i = 0
    while i < len(body):
        if body[i] == esc:
            i += 2
            continue
        if body.startswith(spec.end, i) or (spec.start and body.startswith(spec.start, i)):
            return True
        i += 1
    return False


def decode(spec: FrameSpec, wire: bytes) -> bytes:
    """The payload of exactly one complete frame (a convenience over the streaming Deframer)."""
    deframer = Deframer(spec)
    items = deframer.feed(wire)
    if deframer.pending:
        items.append(FrameError("incomplete frame", deframer.pending))
    for item in items:
        if isinstance(item, FrameError):
            raise item
    frames = [i for i in items if isinstance(i, Frame)]
    if len(frames) != 1:
        raise FrameError(f"expected one frame, found {len(frames)}", wire)
    return frames[0].payload


def _verify(spec: FrameSpec, header: bytes, body: bytes, after: bytes, raw: bytes) -> Frame | FrameError:
    """Split the checksum off, check it, return the frame (body: unescaped payload [+ checksum])."""
    cs = spec.checksum
    if cs.kind is ChecksumKind.NONE:
        return Frame(body, raw)
    if cs.place is ChecksumPlace.AFTER_END:
        payload, got_raw = body, after
        covered = (spec.start + header if cs.covers_start else b"") + payload + (spec.end if cs.covers_end else b"")
    else:
        if len(body) < cs.size:
            return FrameError("frame too short to hold its checksum", raw)
        payload, got_raw = body[: len(body) - cs.size], body[len(body) - cs.size :]
        covered = (spec.start + header if cs.covers_start else b"") + payload
    try:
        got = parse_checksum(cs, got_raw)
    except FrameError as exc:
        return FrameError(exc.reason, raw)
    want = checksum_value(cs.kind, covered)
    if got != want:
        return FrameError(f"checksum mismatch: frame says {got:02X}, bytes give {want:02X}", raw)
    return Frame(payload, raw)


class Deframer:
    """Streaming de-framer: feed it chunks split anywhere; it returns frames and errors in wire order.

    Why it reports errors instead of raising: a garbled frame must not swallow the good frames behind
    it in the same chunk. Garbage before a start delimiter, an unterminated frame (a new start inside
    it), a bad escape, an over-long body or a checksum mismatch each come out as one FrameError, and
    scanning resumes at the next start delimiter.
    """

    def __init__(self, spec: FrameSpec) -> None:
        self.spec = spec
        self._buf = bytearray()
        self._special = spec.escape_set

    @property
    def pending(self) -> bytes:
        """Bytes held back waiting for more (a partial frame or delimiter)."""
        return bytes(self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self._buf += data
        out: list[Frame | FrameError] = []
        while self._buf:
            consumed, item = self._next()
            if consumed == 0:
                break
            del self._buf[:consumed]
            if item is not None:
                out.append(item)
        return out

    # Each step returns (bytes consumed, item or None); (0, None) means "wait for more bytes".
    def _next(self) -> tuple[int, Frame | FrameError | None]:
        buf = bytes(self._buf)
        spec = self.spec
        for token in spec.tokens:
            if buf.startswith(token):
                return len(token), Frame(token, token, token=True)
        if spec.start and not buf.startswith(spec.start):
            return self._skip_garbage(buf)
        if any(t.startswith(buf) for t in spec.tokens) or (spec.start and spec.start.startswith(buf)):
            return 0, None  # could still become a token or a start delimiter
        if spec.length is not None:
            return self._length_frame(buf)
        return self._delimited_frame(buf)

    def _skip_garbage(self, buf: bytes) -> tuple[int, FrameError | None]:
        starts = [self.spec.start, *self.spec.tokens]
        for i in range(len(buf)):
            rest = buf[i:]
            if any(rest.startswith(s) or s.startswith(rest) for s in starts):
                if i == 0:
                    return 0, None
                return i, FrameError(GARBAGE, buf[:i])
        return len(buf), FrameError(GARBAGE, buf)

    def _length_frame(self, buf: bytes) -> tuple[int, Frame | FrameError | None]:
        spec = self.spec
        assert spec.length is not None
        cs = spec.checksum
        head = len(spec.start) + spec.length.size
        if len(buf) < head:
            return 0, None
        header = buf[len(spec.start) : head]
        n = int.from_bytes(header, spec.length.byteorder)
        body_len = n if spec.length.includes_checksum or cs.place is ChecksumPlace.AFTER_END else n + cs.size
        if spec.length.includes_checksum and cs.place is ChecksumPlace.AFTER_END:
            body_len = n - cs.size
        if body_len < 0 or body_len > spec.max_payload + cs.size:
            return len(spec.start) or 1, FrameError(f"length field says {n} bytes, out of range", buf[:head])
        after = cs.size if cs.place is ChecksumPlace.AFTER_END else 0
        total = head + body_len + len(spec.end) + after
        if len(buf) < total:
            return 0, None
        body = buf[head : head + body_len]
        end = buf[head + body_len : head + body_len + len(spec.end)]
        raw = buf[:total]
        if end != spec.end:
            return len(spec.start) or 1, FrameError("end delimiter missing where the length field says", raw)
        return total, _verify(spec, header, body, buf[total - after : total], raw)

    def _delimited_frame(self, buf: bytes) -> tuple[int, Frame | FrameError | None]:
        spec = self.spec
        esc = spec.escape[0] if spec.escape_mode is not EscapeMode.NONE else -1
        i = len(spec.start)
        body = bytearray()
        limit = spec.max_payload + spec.checksum.size
        while i < len(buf):
            b = buf[i]
            if b == esc and spec.escape_mode is not EscapeMode.DOUBLE:
                if i + 1 >= len(buf):
                    return 0, None
                try:
                    body.append(_unescaped(spec, buf[i + 1], buf[: i + 2]))
                except FrameError as exc:
                    return i + 2, exc
                i += 2
            elif b == esc and i + 1 < len(buf) and buf[i + 1] == esc:
                body.append(esc)
                i += 2
            elif buf.startswith(spec.end, i):
                return self._closed(buf, i, bytes(body))
            elif spec.start and buf.startswith(spec.start, i):
                return i, FrameError("frame not terminated before the next start", buf[:i])
            elif spec.end.startswith(buf[i:]) or (spec.start and spec.start.startswith(buf[i:])):
                return 0, None  # a partial delimiter at the end of what we have
            elif b == esc:  # DOUBLE mode: the escape byte starts neither a delimiter nor a pair
                return i + 1, FrameError("escape byte not followed by itself or a delimiter", buf[: i + 2])
            else:
                body.append(b)
                i += 1
            if len(body) > limit:
                return i, FrameError(f"frame longer than {spec.max_payload} bytes without an end", buf[:i])
        return 0, None

    def _closed(self, buf: bytes, at: int, body: bytes) -> tuple[int, Frame | FrameError | None]:
        spec = self.spec
        after = spec.checksum.size if spec.checksum.place is ChecksumPlace.AFTER_END else 0
        total = at + len(spec.end) + after
        if len(buf) < total:
            return 0, None
        raw = buf[:total]
        return total, _verify(spec, b"", body, buf[total - after : total], raw)
