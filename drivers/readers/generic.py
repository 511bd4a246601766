"""A configurable string reader for the many readers that send "<header>result<terminator>".

Why: Datalogic, SICK, Honeywell, Zebra and most no-name readers speak a plain string protocol whose
trigger command, terminator and no-read string are set on the reader; the line config mirrors those
settings instead of a driver per brand. Escapes in the config (`\\r`, `\\n`, `\\x02`) are decoded.

Source: none by design. Every byte this driver sends or expects comes from the line config, which the
technician copies from the reader's own manual; the defaults (`T` CR LF, CR LF, `NOREAD`) are
placeholders to be replaced, not any vendor's protocol. Error replies are not recognised (a reader
that answers an error string makes it a read string that will not match a code: the item is judged
unread, the safe side). For a reader with a published command set, write a driver from it.
"""

from __future__ import annotations

import codecs

from pydantic import Field, field_validator

from drivers.readers.base import Ack, CodeReader, ReaderProtocolError, ReaderSettings, split_at


def unescaped(value: str) -> bytes:
    return codecs.decode(value, "unicode_escape").encode("latin-1")


class GenericSettings(ReaderSettings):
    trigger_command: str = "T\\r\\n"  # ignored in external trigger mode
    header: str = ""
    terminator: str = Field("\\r\\n", min_length=1)
    no_read: str = "NOREAD"
    encoding: str = Field("latin-1", pattern=r"^(latin-1|utf-8|ascii)$")

    @field_validator("trigger_command", "header", "terminator")
    @classmethod
    def _decodes(cls, v: str) -> str:
        try:
            unescaped(v)
        except (UnicodeDecodeError, UnicodeEncodeError) as exc:
            raise ValueError(f"{v!r}: bad escape or non-latin-1 character ({exc})") from exc
        return v


class GenericReader(CodeReader):
    Settings = GenericSettings

    def __init__(self, settings: GenericSettings, *, name: str = "reader") -> None:
        super().__init__(settings, name=name)
        self.cfg = settings
        self._header = unescaped(settings.header)
        self._terminator = unescaped(settings.terminator)

    def encode_trigger(self) -> bytes:
        return unescaped(self.cfg.trigger_command)

    def next_frame(self, buf: bytearray) -> bytes | None:
        return split_at(buf, self._terminator)

    def interpret(self, frame: bytes) -> str | Ack | None:
        if self._header:
            start = frame.find(self._header)
            if start < 0:
                raise ReaderProtocolError(f"reader {self.name}: frame {frame!r} lacks header {self._header!r}")
            frame = frame[start + len(self._header) :]
        try:
            text = frame.decode(self.cfg.encoding)
        except UnicodeDecodeError as exc:
            raise ReaderProtocolError(f"reader {self.name}: {frame!r} is not {self.cfg.encoding}") from exc
        return None if text == self.cfg.no_read else text
