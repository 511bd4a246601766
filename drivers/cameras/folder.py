"""A folder of images as a camera: replays a real line's images, in name order, optionally looping.

Why: verification must be tuned and regression-tested on the images a line actually produced
(glare, smeared ink, a dirty lens) without the line running. Files are read and decoded by OpenCV in
a worker thread, greyscale by default because codes are judged on luminance.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import cv2
import numpy as np
from pydantic import Field

from confkit.base import Strict
from drivers.cameras.base import Camera, CameraError, CameraState, Image, NoFrame

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"})


class FolderSettings(Strict):
    path: Path
    pattern: str = Field("*", description="glob within the folder; only image suffixes are taken")
    loop: bool = False  # start again after the last image instead of reporting exhaustion
    grey: bool = True


def list_images(folder: Path, pattern: str = "*") -> list[Path]:
    """The image files of a folder in name order (the order a line's image archive was written in)."""
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path, grey: bool = True) -> Image:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if image is None:
        raise CameraError(f"{path}: not a readable image")
    return np.asarray(image, dtype=np.uint8)


class FolderCamera(Camera):
    Settings = FolderSettings

    def __init__(self, settings: FolderSettings, name: str = "folder") -> None:
        super().__init__(name)
        self.settings = settings
        self._files: list[Path] = []
        self._next = 0

    async def _open(self) -> None:
        folder = self.settings.path
        if not folder.is_dir():
            raise CameraError(f"camera {self.name!r}: {folder} is not a folder")
        self._files = list_images(folder, self.settings.pattern)
        if not self._files:
            pattern = self.settings.pattern
            raise CameraError(f"camera {self.name!r}: no images matching {pattern!r} in {folder}")
        self._next = 0

    async def _grab(self) -> tuple[Image, float, str]:
        if self._next >= len(self._files):
            if not self.settings.loop:
                self.state = CameraState.EXHAUSTED
                n, folder = len(self._files), self.settings.path
                raise NoFrame(f"camera {self.name!r}: all {n} images of {folder} replayed")
            self._next = 0
        path = self._files[self._next]
        self._next += 1
        image = await asyncio.to_thread(read_image, path, self.settings.grey)
        return image, time.monotonic(), path.name

    async def _close(self) -> None:
        self._files = []
