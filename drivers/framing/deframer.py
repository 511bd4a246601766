"""The streaming de-framer: arbitrary chunks in, frames and typed errors out, in wire order."""

from __future__ import annotations

from drivers.framing.codec import unescape_pair, verify_frame
from drivers.framing.spec import GARBAGE, ChecksumPlace, EscapeMode, Frame, FrameError, FrameSpec


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
        for prefix, size in spec.tagged:
            if buf.startswith(prefix):
                return (size, Frame(buf[:size], buf[:size], token=True)) if len(buf) >= size else (0, None)
        if buf[0] in spec.filler:
            return 1, None
        if spec.start and not buf.startswith(spec.start):
            return self._skip_garbage(buf)
        if any(t.startswith(buf) for t in spec.tokens) or any(p.startswith(buf) for p, _ in spec.tagged) or (
            spec.start and spec.start.startswith(buf)
        ):
            return 0, None  # could still become a token or a start delimiter
        if spec.length is not None:
            return self._length_frame(buf)
        return self._delimited_frame(buf)

    def _skip_garbage(self, buf: bytes) -> tuple[int, FrameError | None]:
        """Up to the next byte that may begin a frame, token or filler. Linear in len(buf): a device
        streaming noise must not cost time quadratic in the chunk size (no copy of the rest per byte)."""
        starts = [s for s in (self.spec.start, *self.spec.tokens, *(p for p, _ in self.spec.tagged)) if s]
        firsts = {s[0] for s in starts} | set(self.spec.filler)
        n = len(buf)
        for i in range(n):
            if buf[i] not in firsts:
                continue
            if buf[i] in self.spec.filler or any(
                buf.startswith(s, i) or (n - i < len(s) and s.startswith(buf[i:])) for s in starts
            ):
                if i == 0:
                    return 0, None
                return i, FrameError(GARBAGE, buf[:i])
        return n, FrameError(GARBAGE, buf)

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
        return total, verify_frame(spec, header, body, buf[total - after : total], raw)

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
                    body.append(unescape_pair(spec, buf[i + 1], buf[: i + 2]))
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
        return total, verify_frame(spec, b"", body, buf[total - after : total], raw)
