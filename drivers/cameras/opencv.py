"""A camera through OpenCV's VideoCapture: USB/V4L2 by index, RTSP/HTTP streams and GigE/GenICam
where the installed OpenCV backend reaches them.

Why threads: VideoCapture.read() blocks until the next frame (tens of ms at camera frame rate, seconds
on a dropped stream); it runs in a worker thread so the event loop keeps serving the line. One
VideoCapture is never used from two threads at once: a lock serialises grabs.
"""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
from pydantic import Field, model_validator

from confkit.base import Strict
from drivers.cameras.base import Camera, CameraError, Image, NoFrame


class OpenCVSettings(Strict):
    device: int | None = Field(None, ge=0)  # /dev/videoN index
    url: str | None = None  # rtsp://..., http://..., a video file, or a GStreamer pipeline
    backend: str | None = Field(None, description="cv2.CAP_* name without CAP_, e.g. V4L2, FFMPEG, GSTREAMER")
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    exposure: float | None = None  # backend units (V4L2: 100 us steps); None leaves the camera's own
    grey: bool = True
    read_timeout_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> OpenCVSettings:
        if (self.device is None) == (self.url is None):
            raise ValueError("give exactly one of 'device' (an index) or 'url'")
        if self.backend is not None and not hasattr(cv2, f"CAP_{self.backend.upper()}"):
            raise ValueError(f"unknown OpenCV capture backend {self.backend!r}")
        return self


class OpenCVCamera(Camera):
    Settings = OpenCVSettings

    def __init__(self, settings: OpenCVSettings, name: str = "opencv") -> None:
        super().__init__(name)
        self.settings = settings
        self._cap: cv2.VideoCapture | None = None
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        s = self.settings
        return f"device {s.device}" if s.device is not None else str(s.url)

    def _open_blocking(self) -> cv2.VideoCapture:
        s = self.settings
        api = getattr(cv2, f"CAP_{s.backend.upper()}") if s.backend else cv2.CAP_ANY
        source: int | str = s.device if s.device is not None else str(s.url)
        cap = cv2.VideoCapture(source, api)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"camera {self.name!r}: OpenCV cannot open {self.where}")
        if s.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        if s.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        if s.exposure is not None:
            cap.set(cv2.CAP_PROP_EXPOSURE, s.exposure)
        return cap

    def _read_blocking(self, cap: cv2.VideoCapture) -> Image:
        ok, image = cap.read()
        if not ok or image is None:
            raise NoFrame(f"camera {self.name!r}: no frame from {self.where}")
        if self.settings.grey and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return np.asarray(image, dtype=np.uint8)

    async def _open(self) -> None:
        self._cap = await asyncio.to_thread(self._open_blocking)

    async def _grab(self) -> tuple[Image, float, str]:
        cap = self._cap
        if cap is None:
            raise CameraError(f"camera {self.name!r}: not open")
        async with self._lock:
            try:
                image = await asyncio.wait_for(
                    asyncio.to_thread(self._read_blocking, cap), self.settings.read_timeout_s
                )
            except TimeoutError as exc:
                limit = self.settings.read_timeout_s
                msg = f"camera {self.name!r}: no frame from {self.where} within {limit} s"
                raise CameraError(msg) from exc
        return image, time.monotonic(), self.where

    async def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            await asyncio.to_thread(cap.release)
