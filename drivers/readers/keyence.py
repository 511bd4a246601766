"""Keyence SR series (SR-1000, SR-2000, SR-700) command protocol, serial or TCP (port 9004 in samples).

Source: Keyence's public SR command references as summarised in /work/shared/research/protocols.md.
`LON` triggers a read; the reader acknowledges `OK,LON`, then sends the data, or its no-read string
(default `ERROR`); `ER,LON,nn` reports a command error. Header/terminator are configurable on the
reader: none/CR (default) or STX/ETX. A leading ESC clears the reader's receive buffer, so a trigger
after line noise is still understood.

Left out: `LOFF` (level-trigger end), tuning/bank commands, multi-code result separators.
"""

from __future__ import annotations

from enum import StrEnum

from drivers.readers.base import ACK, Ack, CodeReader, ReaderProtocolError, ReaderSettings, split_at

ESC, STX, ETX, CR = b"\x1b", b"\x02", b"\x03", b"\r"


class Framing(StrEnum):
    CR = "cr"  # no header, CR terminator (factory default)
    STX_ETX = "stx_etx"


class KeyenceSettings(ReaderSettings):
    framing: Framing = Framing.CR
    no_read: str = "ERROR"
    clear_with_esc: bool = True


class KeyenceSR(CodeReader):
    Settings = KeyenceSettings

    def __init__(self, settings: KeyenceSettings, *, name: str = "keyence") -> None:
        super().__init__(settings, name=name)
        self.cfg = settings

    def _wrap(self, body: bytes) -> bytes:
        return STX + body + ETX if self.cfg.framing is Framing.STX_ETX else body + CR

    def encode_trigger(self) -> bytes:
        return (ESC if self.cfg.clear_with_esc else b"") + self._wrap(b"LON")

    def next_frame(self, buf: bytearray) -> bytes | None:
        if self.cfg.framing is Framing.CR:
            return split_at(buf, CR)
        frame = split_at(buf, ETX)
        if frame is None:
            return None
        start = frame.rfind(STX)
        if start < 0:
            raise ReaderProtocolError(f"reader {self.name}: frame without STX: {frame!r}")
        return frame[start + 1 :]

    def interpret(self, frame: bytes) -> str | Ack | None:
        text = frame.decode("latin-1")
        if text == "OK,LON":
            return ACK
        if text.startswith("ER,"):
            raise ReaderProtocolError(f"reader {self.name}: command error {text!r}")
        return None if text == self.cfg.no_read else text
