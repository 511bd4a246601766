"""A camera fed by the simulated line: one frame per conveyor position, rendered outside the agent.

Why not drivers.sim.camera.SimCamera directly: that camera renders at grab time, inside the agent's
process, so a benchmark would charge the simulator's rendering to the agent. Here the simulated line
renders each frame (with drivers.sim.camera.render, seeded defects) in its own thread and hands it
over; the agent only grabs, as it would from a triggered industrial camera. Like an industrial smart
camera it stamps each image with its trigger count (`Frame.index`): the camera is triggered once per item
reaching it, the first being item 1, so the count is the conveyor seq of the item it shows. Frames are
kept across open/close (a triggered camera's buffer is not the agent's): the index says whose they are,
and the station drops those of items it no longer waits for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from drivers.cameras.base import Camera, Image, NoFrame
from drivers.sim.camera import SimCameraSettings

BUFFER = 256  # frames the camera keeps when nobody grabs (the oldest go first)


class PositionCamera(Camera):
    Settings = SimCameraSettings

    def __init__(self, settings: SimCameraSettings | None = None, name: str = "sim",
                 wait_s: float = 1.0) -> None:
        super().__init__(name)
        self.settings = settings or SimCameraSettings()
        self.wait_s = wait_s  # how long a grab waits for the line to deliver a frame
        self._frames: deque[tuple[int, Image, float]] = deque(maxlen=BUFFER)
        self._lock = threading.Lock()

    def show(self, seq: int, image: Image) -> None:
        """Called from the simulator's thread when item `seq` is under the camera."""
        with self._lock:
            self._frames.append((seq, image, time.monotonic()))

    async def _open(self) -> None:
        return None

    async def _grab(self) -> tuple[Image, float, str, int | None]:
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._lock:
                if self._frames:
                    seq, image, at = self._frames.popleft()
                    return image, at, f"sim:item {seq}", seq
            if time.monotonic() >= deadline:
                raise NoFrame(f"camera {self.name!r}: no frame from the simulated line in {self.wait_s} s")
            await asyncio.sleep(0.002)

    async def _close(self) -> None:
        return None
