"""A camera fed by the simulated line: one frame per conveyor position, rendered outside the agent.

Why not drivers.sim.camera.SimCamera directly: that camera renders at grab time, inside the agent's
process, so a benchmark would charge the simulator's rendering to the agent. Here the simulated line
renders each frame (with drivers.sim.camera.render, seeded defects) in its own thread and hands it
over; the agent only grabs, as it would from a triggered industrial camera. Like an industrial smart
camera it stamps each image with its trigger count (`Frame.index`): the camera is triggered once per item
reaching it, the first being item 1, so the count is the conveyor seq of the item it shows. Frames are
kept across open/close (a triggered camera's buffer is not the agent's): the index says whose they are,
and the station drops those of items it no longer waits for. It tells the station of each frame as it
arrives (`on_frame`), as a smart camera's trigger would, and a grab that waits for its frame is woken by
it, not by a 2 ms poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

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
        # Woken from the simulator's thread (call_soon_threadsafe), as a device's interrupt would: a grab
        # waiting for its frame, and whoever asked to hear of every frame (the verify station).
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._listener: tuple[asyncio.AbstractEventLoop, Callable[[], object]] | None = None

    def show(self, seq: int, image: Image) -> None:
        """Called from the simulator's thread when item `seq` is under the camera."""
        with self._lock:
            self._frames.append((seq, image, time.monotonic()))
            waiter, self._waiter = self._waiter, None
            listener = self._listener
        with contextlib.suppress(RuntimeError):  # the agent's loop is closed: nobody is waiting
            if waiter is not None:
                waiter[0].call_soon_threadsafe(_wake, waiter[1])
            if listener is not None:
                listener[0].call_soon_threadsafe(listener[1])

    def on_frame(self, callback: Callable[[], object] | None) -> bool:
        with self._lock:
            self._listener = None if callback is None else (asyncio.get_running_loop(), callback)
        return True

    def frames_waiting(self) -> int | None:
        with self._lock:
            return len(self._frames)

    async def _open(self) -> None:
        return None

    async def _grab(self) -> tuple[Image, float, str, int | None]:
        deadline = time.monotonic() + self.wait_s
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._frames:
                    seq, image, at = self._frames.popleft()
                    return image, at, f"sim:item {seq}", seq
                fut: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, fut)
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise NoFrame(f"camera {self.name!r}: no frame from the simulated line in {self.wait_s} s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await fut
            finally:
                with self._lock:
                    if self._waiter is not None and self._waiter[1] is fut:
                        self._waiter = None

    async def _close(self) -> None:
        return None


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
