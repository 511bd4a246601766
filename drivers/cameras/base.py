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
from collections.abc import Callable
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
    # The device's own trigger count for this image, when it stamps one (industrial smart cameras give
    # each image a trigger/image ID): the N-th trigger since the device's count was zero is N, one more
    # per trigger, counting triggers whose image was lost too. A driver whose device counts in 16 or 32
    # bits passes the raw count; the verify station unwraps it near the item it expects. None: the
    # device gives no count, and frames are tied to items by arrival order (see agent/line/verifying.py).
    index: int | None = None


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
            got = await self._grab()
        except NoFrame:
            raise
        except CameraError:
            self.state = CameraState.FAILED
            raise
        index = got[3] if len(got) == 4 else None
        frame = Frame(image=got[0], seq=self._seq, at=got[1], source=got[2], index=index)
        self._seq += 1
        return frame

    def on_frame(self, callback: Callable[[], object] | None) -> bool:
        """Have `callback` called on the event loop each time a frame arrives for grab() (None: no more).

        Why: a triggered camera knows when an item passed it. A verify station told so reads the PLC
        counter at once, instead of finding the item at the camera on its next poll; the frame is then
        judged as soon as it exists and the poll can follow the line's pitch. False: this device cannot
        tell (a free-running or replayed source), and the station polls on its own.
        """
        return False

    def frames_waiting(self) -> int | None:
        """Frames in hand that grab() would return at once; None when the device cannot tell."""
        return None

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
    async def _grab(self) -> tuple[Image, float, str] | tuple[Image, float, str, int | None]:
        """One frame, the monotonic time it was in hand, where it came from and, from a device that
        stamps one, its trigger count (`Frame.index`)."""

    @abstractmethod
    async def _close(self) -> None: ...
