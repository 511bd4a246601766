"""The one image-source interface every camera driver implements.

Why one small async interface: a verify station must not care whether its frames come from a USB or
GigE camera, a folder replaying a real line's images, or the simulator rendering what was printed.
It opens the source, grabs frames (each with a sequence number and the monotonic time it arrived, so
the tracker can tie it to a position on the conveyor), and closes it. Blocking reads (OpenCV, disk)
run in a worker thread so one slow camera never stalls the event loop.

Frames are greyscale uint8 (H x W) or BGR uint8 (H x W x 3), as OpenCV gives them; the decoder takes
either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

Image = npt.NDArray[np.uint8]


class CameraState(StrEnum):
    CLOSED = "closed"  # never opened, or closed
    OPEN = "open"  # frames can be grabbed
    EXHAUSTED = "exhausted"  # a finite source (a folder without loop) has no more frames
    FAILED = "failed"  # the source broke (device gone, stream dropped); reopen to retry


@dataclass(frozen=True, slots=True)
class Frame:
    image: Image
    seq: int  # per camera, from 0, increasing by one per grabbed frame
    at: float  # time.monotonic() when the frame was in hand
    source: str = ""  # where it came from: a file name, a device URL, "sim:<text>"


class CameraError(Exception):
    """Base of every error a camera driver raises; the message names the camera and what failed."""


class CameraClosed(CameraError):
    """grab() on a camera that is not open."""


class NoFrame(CameraError):
    """The source gave no frame (device read failed, stream ended, folder exhausted)."""


class Camera(ABC):
    """An image source. Subclasses implement _open/_grab/_close; this class keeps state and numbering."""

    Settings: ClassVar[type[BaseModel]]

    def __init__(self, name: str = "camera") -> None:
        self.name = name
        self.state = CameraState.CLOSED
        self._seq = 0

    async def open(self) -> None:
        await self._open()
        self.state = CameraState.OPEN
        self._seq = 0

    async def grab(self) -> Frame:
        if self.state is not CameraState.OPEN:
            raise CameraClosed(f"camera {self.name!r} is {self.state}, not open")
        try:
            image, at, source = await self._grab()
        except NoFrame:
            raise
        except CameraError:
            self.state = CameraState.FAILED
            raise
        frame = Frame(image=image, seq=self._seq, at=at, source=source)
        self._seq += 1
        return frame

    async def close(self) -> None:
        if self.state is not CameraState.CLOSED:
            await self._close()
        self.state = CameraState.CLOSED

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _grab(self) -> tuple[Image, float, str]:
        """One frame, the monotonic time it was in hand, and where it came from."""

    @abstractmethod
    async def _close(self) -> None: ...
