"""Frame descriptions: what a protocol's frames look like, and the typed errors of de-framing.

Why apart from the codec: a FrameSpec is configuration (the generic driver builds one from a protocol
file), checked once for ambiguity by `spec_problems`; encode/decode only read it.
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
    # Fixed-size replies outside frames, each (prefix, total size): WSI's `$XX`/`!XX` check sequences.
    tagged: tuple[tuple[bytes, int], ...] = ()
    filler: bytes = b""  # bytes dropped silently between frames (CR LF after NGPCL replies)

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
    for prefix, size in spec.tagged:
        if not prefix or size <= len(prefix):
            out.append(f"tagged reply {prefix!r} needs a prefix and a size longer than it")
        elif spec.start and (prefix.startswith(spec.start) or spec.start.startswith(prefix)):
            out.append(f"tagged reply {prefix!r} overlaps the start delimiter")
    for b in spec.filler:
        if spec.start[:1] == bytes([b]) or any(t[:1] == bytes([b]) for t in spec.tokens):
            out.append(f"filler byte {bytes([b])!r} starts a frame or a token")
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
