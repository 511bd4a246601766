"""The fixed code reader interface: trigger, wait for one result string, or say clearly why not.

Why a template method (after python-can's bus): the base owns the link, the read timeout, the
buffer that turns a byte stream into frames, and the typed errors; a protocol module implements only
how a trigger is encoded, where a frame ends in the stream, and what a frame means (a result, a
no-read, an acknowledgement to skip, or an error). Readers return strings; a camera is another path.

Two trigger modes: `command` (the agent sends the trigger when the tracker says the item is in front
of the reader) and `external` (a photo-eye wired to the reader triggers it; results arrive unasked and
`next_result()` waits for them). Links are `drivers.transport`: tcp://host:port or any pyserial URL.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from drivers.transport import LinkClosed, ReadTimeout, Transport, open_transport

ALLOWED_CONTROLS = frozenset("\x1d\x1e\x04")
MAX_FRAME = 64 * 1024  # longer than any 2D code's data; more bytes without a terminator is noise


class TriggerMode(StrEnum):
    COMMAND = "command"  # the agent sends the reader's trigger command
    EXTERNAL = "external"  # the reader is triggered by its own sensor and sends results unasked


class ReaderSettings(BaseModel):
    """Unknown keys refused, as in confkit.base."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)  # tcp://host:port, /dev/ttyUSB0, socket://host:port
    baud: int = 115200
    trigger: TriggerMode = TriggerMode.COMMAND
    timeout_s: float = Field(0.5, gt=0, le=30)  # trigger -> result; a silent reader is an error
    open_timeout_s: float = Field(2.0, gt=0, le=60)
    trace: bool = False


class ReaderError(Exception):
    """Base of reader errors; the message names the reader and what went wrong."""


class ReaderLinkError(ReaderError):
    """The link to the reader is closed or cannot be opened."""


class ReaderTimeout(ReaderError):
    """No result within timeout_s (the reader is silent: not even a no-read string)."""


class ReaderProtocolError(ReaderError):
    """The reader answered something this protocol does not allow (garbage, an error status)."""


class ReaderStatusError(ReaderProtocolError):
    """The reader refused the command with its protocol's error code (DMCC `[105]`, Keyence `ER,LON,20`).

    A subclass of ReaderProtocolError so callers that only judge "no usable answer" need not change;
    `code` is the vendor's number, for the operator and the technicians' table."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Ack:
    """A frame that acknowledges a command and carries no result (Keyence `OK,LON`, DMCC `[0]`)."""


ACK = Ack()


@dataclass(frozen=True, slots=True)
class ReadResult:
    text: str | None  # None: the reader reported a no-read
    raw: bytes  # the frame as received, for the trace and for operators
    elapsed_ms: float


class CodeReader(ABC):
    Settings: ClassVar[type[ReaderSettings]]

    def __init__(self, settings: ReaderSettings, *, name: str = "reader") -> None:
        self.settings = settings
        self.name = name
        self._link: Transport | None = None
        self._buf = bytearray()

    # ---- protocol hooks -------------------------------------------------------------------------

    @abstractmethod
    def encode_trigger(self) -> bytes:
        """The bytes that trigger one read."""

    @abstractmethod
    def next_frame(self, buf: bytearray) -> bytes | None:
        """Remove and return one complete frame from the front of `buf`, or None if it is incomplete."""

    @abstractmethod
    def interpret(self, frame: bytes) -> str | Ack | None:
        """A result text, None for the no-read string, ACK to skip; ReaderProtocolError otherwise."""

    # ---- life cycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        s = self.settings
        try:
            link = open_transport(s.url, baud=s.baud, name=self.name, trace=s.trace)
            await link.open(s.open_timeout_s)
        except (LinkClosed, ValueError) as exc:
            raise ReaderLinkError(f"reader {self.name}: {exc}") from exc
        self._link = link
        self._buf.clear()

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None

    async def __aenter__(self) -> CodeReader:
        await self.open()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # ---- reading --------------------------------------------------------------------------------

    async def read(self) -> ReadResult:
        """Trigger one read (command mode) and return its result."""
        if self.settings.trigger is not TriggerMode.COMMAND:
            raise ReaderError(f"reader {self.name} is externally triggered; use next_result()")
        link = self._need_link()
        self._buf.clear()  # a stale result from an earlier, timed-out trigger must not answer this one
        try:
            await link.write(self.encode_trigger())
        except LinkClosed as exc:
            raise ReaderLinkError(f"reader {self.name}: {exc}") from exc
        return await self.next_result()

    async def next_result(self) -> ReadResult:
        """The next result frame within timeout_s, skipping acknowledgements."""
        link = self._need_link()
        t0 = time.monotonic()
        deadline = t0 + self.settings.timeout_s
        while True:
            frame = self.next_frame(self._buf)
            if frame is not None:
                meaning = self.interpret(frame)
                if isinstance(meaning, Ack):
                    continue
                if meaning is not None:
                    self._check_text(meaning, frame)
                return ReadResult(meaning, frame, (time.monotonic() - t0) * 1000)
            if len(self._buf) > MAX_FRAME:
                size = len(self._buf)
                self._buf.clear()
                raise ReaderProtocolError(f"reader {self.name}: {size} bytes without a frame end (line noise or"
                                          " a wrong terminator setting)")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReaderTimeout(self._silent())
            try:
                self._buf += await link.read(left)
            except ReadTimeout as exc:
                raise ReaderTimeout(self._silent()) from exc
            except LinkClosed as exc:
                raise ReaderLinkError(f"reader {self.name}: {exc}") from exc

    def _check_text(self, text: str, frame: bytes) -> None:
        """Codes on packs are printable ASCII (GS1 and URL codes) plus the GS/RS/EOT separators of
        GS1 and ISO 15434; anything else is line noise or a wrong baud rate, not a code to judge."""
        bad = [ch for ch in text if not (" " <= ch <= "~" or ch in ALLOWED_CONTROLS)]
        if bad or not text:
            raise ReaderProtocolError(f"reader {self.name}: garbage result {frame!r} (not a printable code)")

    def _silent(self) -> str:
        pending = f"; partial frame {bytes(self._buf)!r}" if self._buf else ""
        return f"reader {self.name}: no result within {self.settings.timeout_s} s{pending}"

    def _need_link(self) -> Transport:
        if self._link is None or not self._link.is_open:
            raise ReaderLinkError(f"reader {self.name} is not open")
        return self._link


def split_at(buf: bytearray, terminator: bytes) -> bytes | None:
    """The frame before the first `terminator` (removed with it), or None if none is complete."""
    end = buf.find(terminator)
    if end < 0:
        return None
    frame = bytes(buf[:end])
    del buf[: end + len(terminator)]
    return frame


async def read_with_deadline(reader: CodeReader) -> ReadResult:
    """`read()` with the timeout turned into a no-read: for stations that must judge every item."""
    try:
        return await reader.read()
    except ReaderTimeout:
        return ReadResult(None, b"", reader.settings.timeout_s * 1000)


__all__ = ["ACK", "Ack", "CodeReader", "ReadResult", "ReaderError", "ReaderLinkError",
           "ReaderProtocolError", "ReaderSettings", "ReaderStatusError", "ReaderTimeout", "TriggerMode",
           "read_with_deadline", "split_at"]
