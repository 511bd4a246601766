"""A camera fed by the simulated line: one frame per conveyor position, rendered outside the agent.

Why not drivers.sim.camera.SimCamera directly: that camera renders at grab time, inside the agent's
process, so a benchmark would charge the simulator's rendering to the agent. Here the simulated line
renders each frame (with drivers.sim.camera.render, seeded defects) in its own thread and hands it
over; the agent only grabs, as it would from a triggered industrial camera.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from drivers.cameras.base import Camera, Image, NoFrame
from drivers.sim.camera import SimCameraSettings


class PositionCamera(Camera):
    Settings = SimCameraSettings

    def __init__(self, settings: SimCameraSettings | None = None, name: str = "sim",
                 wait_s: float = 1.0) -> None:
        super().__init__(name)
        self.settings = settings or SimCameraSettings()
        self.wait_s = wait_s  # how long a grab waits for the line to deliver a frame
        self._frames: deque[tuple[int, Image, float]] = deque()
        self._lock = threading.Lock()

    def show(self, seq: int, image: Image) -> None:
        """Called from the simulator's thread when item `seq` is under the camera."""
        with self._lock:
            self._frames.append((seq, image, time.monotonic()))

    async def _open(self) -> None:
        with self._lock:
            self._frames.clear()  # frames from before we looked belong to items nobody tracks

    async def _grab(self) -> tuple[Image, float, str]:
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._lock:
                if self._frames:
                    seq, image, at = self._frames.popleft()
                    return image, at, f"sim:item {seq}"
            if time.monotonic() >= deadline:
                raise NoFrame(f"camera {self.name!r}: no frame from the simulated line in {self.wait_s} s")
            await asyncio.sleep(0.002)

    async def _close(self) -> None:
        with self._lock:
            self._frames.clear()
