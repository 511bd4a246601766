"""Pure encoding of frames: checksums, escaping, and one payload to its wire bytes (and back checks)."""

from __future__ import annotations

from drivers.framing.spec import (
    ChecksumEncoding,
    ChecksumKind,
    ChecksumPlace,
    ChecksumSpec,
    EscapeMode,
    Frame,
    FrameError,
    FrameSpec,
)

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
        out.append(unescape_pair(spec, wire[i + 1], wire))
        i += 2
    return bytes(out)


def unescape_pair(spec: FrameSpec, nxt: int, context: bytes) -> int:
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


def verify_frame(spec: FrameSpec, header: bytes, body: bytes, after: bytes, raw: bytes) -> Frame | FrameError:
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
