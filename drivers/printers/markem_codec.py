"""Markem-Imaje NGPCL (SmartDate / NextGen) messages: pure encode/decode, no I/O.

Source: the public facts in research/protocols.md: messages are brace-framed and pipe-separated,
`{~JS0|job|0|}` selects a job, `{~JU0||0|Field|Val|}` updates a field, `{~DR}` asks for status and the
printer answers `{~DS0|...}`, and `{~NK1|}` is a NAK.

A message here is `{~` + a code (letters then an optional digit: `JS0`, `JU0`, `DR`, `DS0`, `NK1`)
+ optionally `|` and pipe-terminated fields + `}`. Left out, because it is not public: any positive
acknowledgement (the driver uses `{~DR}` as a barrier after commands instead: an `NK` before the
`DS` means the command was refused), the meaning of the `DS0` fields (chosen by position in the
driver's settings), and the older Imaje binary serial protocol (id, length, data, checksum).
Field values must not contain `|`, `{` or `}`; no escape for them is published, so they are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.printers.base import ProtocolError

OPEN = b"{~"
CLOSE = b"}"
MAX_MESSAGE = 4096
FORBIDDEN = set("|{}\r\n")


@dataclass(frozen=True, slots=True)
class Message:
    code: str  # e.g. "JS0", "DR", "DS0", "NK1"
    fields: tuple[str, ...] | None = None  # None: no pipe section at all ({~DR})

    @property
    def is_nak(self) -> bool:
        return self.code.startswith("NK")


def select_job(name: str) -> Message:
    return Message("JS0", (name, "0"))


def update_field(field: str, value: str) -> Message:
    return Message("JU0", ("", "0", field, value))


STATUS_REQUEST = Message("DR")


def encode(message: Message) -> bytes:
    if not (message.code.isascii() and message.code.isalnum() and 1 <= len(message.code) <= 4):
        raise ValueError(f"NGPCL code {message.code!r} must be 1-4 ASCII letters/digits")
    if message.fields is None:
        return OPEN + message.code.encode("ascii") + CLOSE
    for f in message.fields:
        bad = FORBIDDEN.intersection(f)
        if bad:
            raise ValueError(f"NGPCL field {f!r} contains {''.join(sorted(bad))!r}, which cannot be framed")
    try:
        body = "".join(f"{f}|" for f in message.fields).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"NGPCL fields must be Latin-1 text: {exc}") from exc
    return OPEN + message.code.encode("ascii") + b"|" + body + CLOSE


def decode(inner: bytes) -> Message:
    """The bytes between `{~` and `}` -> Message; ProtocolError says what does not parse."""
    text = inner.decode("latin-1")
    code, sep, rest = text.partition("|")
    if not (code.isascii() and code.isalnum() and 1 <= len(code) <= 4):
        raise ProtocolError(f"NGPCL message {inner!r} has no valid code")
    if not sep:
        return Message(code, None)
    if rest and not rest.endswith("|"):
        raise ProtocolError(f"NGPCL message {inner!r}: fields must each end with '|'")
    fields = tuple(rest[:-1].split("|")) if rest else ()
    return Message(code, fields)


class Deframer:
    """Cuts a byte stream into messages; bytes outside `{~ ... }` are garbage (ProtocolError)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        try:
            while self._buf:
                if len(self._buf) < 2:
                    if self._buf[:1] != OPEN[:1]:
                        raise ProtocolError(f"NGPCL stream does not start with '{{~': {bytes(self._buf)!r}")
                    break
                if self._buf[:2] != OPEN:
                    raise ProtocolError(f"NGPCL stream does not start with '{{~': {bytes(self._buf[:16])!r}")
                end = self._buf.find(CLOSE)
                nested = self._buf.find(b"{", 1)
                if 0 <= nested < end or (end < 0 and nested >= 0):
                    raise ProtocolError(f"NGPCL message opened inside another: {bytes(self._buf[:32])!r}")
                if end < 0:
                    if len(self._buf) > MAX_MESSAGE:
                        raise ProtocolError(f"NGPCL message longer than {MAX_MESSAGE} bytes without '}}'")
                    break
                inner = bytes(self._buf[2:end])
                del self._buf[: end + 1]
                out.append(decode(inner))
        except ProtocolError:
            self._buf.clear()
            raise
        return out
