"""A smart camera's image export over TCP: every triggered image, stamped with the camera's frame number.

Why this device: a verify station must know WHICH item an image shows. A smart camera triggered by the
line's photo-eye counts its own triggers and stamps each image with that count, so an image that is
late, or lost while the agent restarted, can never be taken for the next item's. Banner's iVu Plus and
VE series export every inspection image on a TCP port (VE default 32200), each as a 64-byte header
followed by the image, all numbers little-endian (Banner iVu Plus BCR User's Manual rev. B, 2012,
6.1.6 "Image Export"; Banner VE Series Smart Camera Instruction Manual, 12.1.3/12.1.4 "Image Export"):

    offset  size  field
     0      16    header prefix, text, NUL-padded: "IVU PLUS IMAGE" (iVu, version 1) or "VE IMAGE" (VE)
    16       4    header version (UInt32)
    20       4    image size in bytes (UInt32)
    24       4    image frame number: the most recently snapped frame (UInt32)
    28       2    width (UInt16)
    30       2    height (UInt16)
    32       2    image format (UInt16): 0 Windows BMP, 1 JPEG
    34      30    reserved

The camera is the server; a client connects and then only reads. An image that finds the client's
channel full is discarded by the camera (the "Hold READY" setting off), and images snapped while no
client is connected are never sent: after a reconnect the frame numbers jump, which is how the agent
knows which items it did not see. The frame number becomes Frame.index.

Faults reach the station as typed errors: no image within `frame_timeout_s` is NoFrame (the line may
simply be stopped); a closed connection, a header that is not one of the two above, an absurd size or
an image that does not decode (OpenCV's own refusal of an image claiming, say, 2^31 pixels a row
included) is CameraError (state FAILED, reopen to retry: the stream cannot be resynchronised
mid-image).
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import time
from urllib.parse import urlsplit

import cv2
import numpy as np
from pydantic import Field, field_validator

from confkit.base import Strict
from drivers.cameras.base import Camera, CameraError, Image, NoFrame

HEADER = struct.Struct("<16sIIIHHH30s")  # 64 bytes
PREFIXES = {b"IVU PLUS IMAGE": 1, b"VE IMAGE": 2}  # prefix -> the header version its manual gives
FORMAT_BMP = 0
FORMAT_JPEG = 1
DEFAULT_PORT = 32200


@dataclasses.dataclass(frozen=True, slots=True)
class ExportHeader:
    prefix: bytes
    version: int
    size: int
    frame: int
    width: int
    height: int
    image_format: int

    def pack(self) -> bytes:
        return HEADER.pack(self.prefix, self.version, self.size, self.frame, self.width, self.height,
                           self.image_format, b"")

    @classmethod
    def unpack(cls, raw: bytes, *, max_size: int, where: str) -> ExportHeader:
        prefix, version, size, frame, width, height, fmt, _reserved = HEADER.unpack(raw)
        name = prefix.rstrip(b"\0")
        if name not in PREFIXES:
            raise CameraError(f"{where}: not an image export header (prefix {prefix[:16]!r})")
        if fmt not in (FORMAT_BMP, FORMAT_JPEG):
            raise CameraError(f"{where}: frame {frame}: unknown image format {fmt} (0 BMP, 1 JPEG)")
        if not 0 < size <= max_size:
            raise CameraError(f"{where}: frame {frame}: image size {size} bytes is outside 1..{max_size}")
        return cls(name, version, size, frame, width, height, fmt)


def encode_image(image: Image, frame: int, *, jpeg: bool = False, prefix: bytes = b"IVU PLUS IMAGE") -> bytes:
    """Header + image, as the camera puts them on the wire (used by drivers/sim/banner_export.py)."""
    ok, data = cv2.imencode(".jpg" if jpeg else ".bmp", image)
    if not ok:
        raise CameraError(f"frame {frame}: the image could not be encoded")
    body = data.tobytes()
    height, width = image.shape[:2]
    head = ExportHeader(prefix, PREFIXES[prefix], len(body), frame % 2**32, width, height,
                        FORMAT_JPEG if jpeg else FORMAT_BMP)
    return head.pack() + body


class BannerExportSettings(Strict):
    url: str = Field(description="tcp://HOST[:PORT] of the camera's image export (port default 32200)")
    connect_timeout_s: float = Field(5.0, gt=0)
    frame_timeout_s: float = Field(1.0, gt=0, description="how long a grab waits for the next image")
    max_image_mb: float = Field(16.0, gt=0)
    grey: bool = True

    @field_validator("url")
    @classmethod
    def _tcp(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "tcp" or not parts.hostname:
            raise ValueError(f"expected tcp://HOST[:PORT], got {url!r}")
        return url

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None  # the validator saw to it
        return parts.hostname, parts.port or DEFAULT_PORT


class BannerImageExport(Camera):
    Settings = BannerExportSettings

    def __init__(self, settings: BannerExportSettings, name: str = "camera") -> None:
        super().__init__(name)
        self.settings = settings
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.received = 0  # images taken off the wire since open

    @property
    def where(self) -> str:
        return f"camera {self.name!r} ({self.settings.url})"

    async def _open(self) -> None:
        host, port = self.settings.address
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                self._reader, self._writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            raise CameraError(f"{self.where}: cannot connect: {exc or 'timed out'}") from None
        self.received = 0

    async def _grab(self) -> tuple[Image, float, str, int | None]:
        reader = self._reader
        if reader is None:
            raise CameraError(f"{self.where}: not connected")
        s = self.settings
        try:
            # Waiting for a header consumes nothing until all 64 bytes are there, so a timeout here
            # leaves the stream in step; once the header is taken, the image must follow.
            async with asyncio.timeout(s.frame_timeout_s):
                raw = await reader.readexactly(HEADER.size)
        except TimeoutError:
            raise NoFrame(f"{self.where}: no image in {s.frame_timeout_s:g} s") from None
        except (asyncio.IncompleteReadError, OSError) as exc:
            raise CameraError(f"{self.where}: connection lost: {exc}") from None
        head = ExportHeader.unpack(raw, max_size=int(s.max_image_mb * 2**20), where=self.where)
        try:
            async with asyncio.timeout(max(s.frame_timeout_s, s.connect_timeout_s)):
                body = await reader.readexactly(head.size)
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            raise CameraError(f"{self.where}: frame {head.frame}: image cut short: {exc or 'timed out'}") from None
        at = time.monotonic()
        try:
            image = cv2.imdecode(np.frombuffer(body, dtype=np.uint8),
                                 cv2.IMREAD_GRAYSCALE if s.grey else cv2.IMREAD_COLOR)
        except cv2.error as exc:  # an image whose own header claims more than OpenCV's limits (tests/fuzz)
            raise CameraError(f"{self.where}: frame {head.frame}: the image does not decode: "
                              f"{str(exc).strip().splitlines()[-1][:200]}") from None
        if image is None:
            raise CameraError(f"{self.where}: frame {head.frame}: the image does not decode")
        self.received += 1
        return np.asarray(image, dtype=np.uint8), at, f"{s.url}#{head.frame}", head.frame

    async def _close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                pass
