"""The camera side of a smart camera's TCP image export (drivers/cameras/banner_export.py), for a plant
that runs in another process than the agent.

Why its own server: the agent must reach the camera across a process boundary as it reaches a real one,
so a SIGKILLed agent loses the images in flight and a restarted one sees the frame numbers jump. As the
cameras do: a client that connects gets the images snapped from then on, never older ones; an image
that finds a client's channel full is discarded for that client ("Hold READY" off), so a stalled agent
never stalls the line; a client may come and go at any time.
"""

from __future__ import annotations

import asyncio
import contextlib

from drivers.cameras.banner_export import encode_image
from drivers.cameras.base import Image


class ImageExportServer:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, channel_images: int = 4,
                 jpeg: bool = False) -> None:
        self.host = host
        self.port = port
        self.channel_images = channel_images  # images a slow client may have queued before new ones drop
        self.jpeg = jpeg
        self.sent = 0  # images written to a client
        self.dropped = 0  # images discarded for a client whose channel was full
        self.connections = 0  # clients ever connected
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, self.host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def publish(self, frame: int, image: Image) -> int:
        """One triggered image, stamped `frame`, to every connected client; returns how many got it."""
        if not self._clients:
            return 0
        data = encode_image(image, frame, jpeg=self.jpeg)
        took = 0
        for writer in list(self._clients):
            if writer.is_closing():
                self._clients.discard(writer)
                continue
            if writer.transport.get_write_buffer_size() > self.channel_images * len(data):
                self.dropped += 1
                continue
            writer.write(data)
            took += 1
        self.sent += took
        return took

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        self._clients.add(writer)
        self.connections += 1
        try:
            while await reader.read(4096):
                pass  # a client only reads; anything it sends is ignored
        except OSError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._clients):
            writer.close()
        self._clients.clear()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, OSError, TimeoutError):
                await asyncio.wait_for(task, 1.0)
