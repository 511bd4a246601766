"""A ZPL label printer simulator that renders what it receives, so tests read the label back.

Why render instead of comparing ZPL text: a label is right when a scanner reads the parent code off
it, not when its bytes look familiar. The simulator parses each ^XA...^XZ format, draws every ^BQ
(QR), ^BX (DataMatrix) and ^BC (Code 128) with zxing-cpp's own encoder at the ^FO position and every
text field with OpenCV, and keeps the image; tests decode it with zxing-cpp. It answers ~HS with the
Zebra host status, so paper-out, pause and head-open can be injected, and `smudge_next` spoils the
next labels' barcodes to drive the void-and-reprint path. It serves TCP (port 9100 style) and a pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt
import zxingcpp

Gray = npt.NDArray[np.uint8]
_CMD = re.compile(r"([\^~])([A-Z@][A-Z0-9@]?)")
_HEX = re.compile(r"_([0-9A-Fa-f]{2})")
_BARCODES = {"BQ": zxingcpp.BarcodeFormat.QRCode, "BX": zxingcpp.BarcodeFormat.DataMatrix,
             "BC": zxingcpp.BarcodeFormat.Code128}


@dataclass
class Field:
    x: int
    y: int
    data: str
    kind: str  # "text" or a barcode command (BQ, BX, BC)
    size: int  # text height in dots, or module size
    height: int = 0  # linear barcode bar height


@dataclass
class Label:
    width: int = 812
    length: int = 600
    copies: int = 1
    fields: list[Field] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # commands we do not draw, kept for the tests


def parse(zpl: str) -> list[Label]:
    """Every ^XA...^XZ format in `zpl`; field data runs from ^FD to ^FS and may be ^FH hex-escaped."""
    labels: list[Label] = []
    for body in re.findall(r"\^XA(.*?)\^XZ", zpl, flags=re.S):
        labels.append(_parse_one(body))
    return labels


def _parse_one(body: str) -> Label:
    label = Label()
    x = y = 0
    font, module, bar_w, bar_h = 30, 3, 2, 100
    pending: tuple[str, int, int] | None = None  # barcode command waiting for its ^FD
    hexed = False
    pos = 0
    while (m := _CMD.search(body, pos)) is not None:
        cmd = m.group(2)
        if cmd == "FD":
            end = body.find("^FS", m.end())
            end = len(body) if end < 0 else end
            data = body[m.end():end]
            pos = end + 3
            if hexed:
                data = _HEX.sub(lambda h: chr(int(h.group(1), 16)), data)
            if pending is None:
                label.fields.append(Field(x, y, data, "text", font))
            else:
                kind, size, height = pending
                if kind == "BQ" and len(data) > 2 and data[2] == ",":
                    data = data[3:]  # "QA,<data>": error correction and input mode come first
                label.fields.append(Field(x, y, data, kind, size, height))
            pending, hexed = None, False
            continue
        nxt = _CMD.search(body, m.end())
        args = body[m.end(): nxt.start() if nxt else len(body)].strip().split(",")
        pos = m.end()
        num = [int(a) if a.strip().isdigit() else None for a in args]
        if cmd in ("FO", "FT"):
            x, y = num[0] or 0, (num[1] if len(num) > 1 else 0) or 0
        elif cmd == "FH":
            hexed = True
        elif cmd in ("CF", "A0", "A"):
            heights = [n for n in num if n]
            font = heights[0] if heights else font
        elif cmd == "BY":
            bar_w = num[0] or bar_w
            bar_h = (num[2] if len(num) > 2 else None) or bar_h
        elif cmd == "BQ":
            module = (num[2] if len(num) > 2 else None) or 3
            pending = ("BQ", module, 0)
        elif cmd == "BX":
            pending = ("BX", (num[1] if len(num) > 1 else None) or 6, 0)
        elif cmd == "BC":
            pending = ("BC", bar_w, (num[1] if len(num) > 1 else None) or bar_h)
        elif cmd == "PW":
            label.width = num[0] or label.width
        elif cmd == "LL":
            label.length = num[0] or label.length
        elif cmd == "PQ":
            label.copies = num[0] or 1
        elif cmd != "FS":
            label.unknown.append(cmd)
    return label


def render(label: Label, *, smudge: bool = False) -> Gray:
    """The printed label as a greyscale image (white paper, black print)."""
    img = np.full((label.length, label.width), 255, dtype=np.uint8)
    for f in label.fields:
        if f.kind == "text":
            scale = f.size / 30.0
            cv2.putText(img, f.data, (f.x, f.y + f.size), cv2.FONT_HERSHEY_SIMPLEX, scale, 0, max(1, f.size // 15))
            continue
        symbol = np.asarray(zxingcpp.create_barcode(f.data, _BARCODES[f.kind]).to_image(scale=f.size))
        if f.kind == "BC":
            symbol = cv2.resize(symbol, (symbol.shape[1], f.height), interpolation=cv2.INTER_NEAREST)
        if smudge:  # a smeared label: ink over the middle of the symbol
            h, w = symbol.shape
            symbol = symbol.copy()
            symbol[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 0
        h, w = min(symbol.shape[0], label.length - f.y), min(symbol.shape[1], label.width - f.x)
        if h > 0 and w > 0:
            img[f.y: f.y + h, f.x: f.x + w] = symbol[:h, :w]
    return img


@dataclass
class ZplSimulator:
    """The printer: formats in, rendered labels out; faults injected by setting the flags."""

    paper_out: bool = False
    paused: bool = False
    head_open: bool = False
    smudge_next: int = 0
    labels: list[Gray] = field(default_factory=list)
    formats: list[Label] = field(default_factory=list)
    waiting: list[Label] = field(default_factory=list)  # formats held while the printer cannot print
    _buffer: str = ""
    _server: asyncio.Server | None = None
    _pty: tuple[int, int] | None = None
    printed: asyncio.Event = field(default_factory=asyncio.Event)

    # ---- protocol -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Consume bytes; returns the reply to send back (only ~HS asks for one)."""
        self._buffer += data.decode("utf-8", "replace")
        reply = b""
        while True:
            hs = self._buffer.find("~HS")
            start = self._buffer.find("^XA")
            if hs >= 0 and (start < 0 or hs < start):
                reply += self.host_status()
                self._buffer = self._buffer[hs + 3:]
                continue
            end = self._buffer.find("^XZ", max(start, 0))
            if start < 0 or end < 0:
                break
            for label in parse(self._buffer[start: end + 3]):
                self.formats.append(label)
                self.waiting.append(label)
            self._buffer = self._buffer[end + 3:]
        self._print_waiting()
        return reply

    def _print_waiting(self) -> None:
        while self.waiting and not (self.paper_out or self.paused or self.head_open):
            label = self.waiting.pop(0)
            for _ in range(label.copies):
                self.labels.append(render(label, smudge=self.smudge_next > 0))
                self.smudge_next = max(0, self.smudge_next - 1)
            self.printed.set()

    def resume(self) -> None:
        """The operator cleared the fault: held formats print now."""
        self.paper_out = self.paused = self.head_open = False
        self._print_waiting()

    def host_status(self) -> bytes:
        one = f"030,{int(self.paper_out)},{int(self.paused)},0812,{len(self.waiting):03d},0,0,0,000,0,0,0"
        two = f"000,0,{int(self.head_open)},0,0,2,4,0,00000000,1,000"
        return b"\x02" + one.encode() + b"\x03\r\n\x02" + two.encode() + b"\x03\r\n\x021234,0\x03\r\n"

    # ---- serving ------------------------------------------------------------------------------

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._client, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(4096):
                reply = self.feed(chunk)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except ConnectionError:
            pass  # the driver hung up; a real printer just waits for the next connection
        finally:
            writer.close()

    def serve_pty(self) -> str:
        """Open a pty; the driver opens the returned path as its serial port."""
        master, slave = os.openpty()
        os.set_blocking(master, False)
        self._pty = (master, slave)
        asyncio.get_running_loop().add_reader(master, self._pty_readable)
        return os.ttyname(slave)

    def _pty_readable(self) -> None:
        assert self._pty is not None
        try:
            data = os.read(self._pty[0], 4096)
        except BlockingIOError:
            return
        reply = self.feed(data)
        if reply:
            os.write(self._pty[0], reply)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._pty is not None:
            asyncio.get_running_loop().remove_reader(self._pty[0])
            for fd in self._pty:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pty = None
