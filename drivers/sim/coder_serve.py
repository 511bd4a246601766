"""Serve a simulated coder's protocol on a pty and/or TCP, at a paced baud rate, with a conveyor.

Why pacing: a 115,200-baud line carries about 11,520 bytes/s; a pty or loopback socket carries
millions. Bytes in both directions are held back for their line time (10 bits per byte) so link
limits in benchmarks are real. Why a conveyor here: products reach the head at the line's rate
whatever the host does, which is what makes a FIFO run dry or overflow.

Power loss: TCP connections are dropped and the port refuses connections until `power_on()`; on a
pty the printer simply stops answering. Either way the model loses its queue and keeps its counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from typing import Protocol

from drivers.sim.coder_model import CoderModel

BITS_PER_BYTE = 10  # start + 8 data + stop


class SimProtocol(Protocol):
    model: CoderModel

    def receive(self, data: bytes) -> bytes: ...

    def reset_link(self) -> None: ...


class Pacer:
    """One direction of a serial line: when the last byte queued on it will have been sent."""

    def __init__(self, baud: int | None) -> None:
        self.byte_s = BITS_PER_BYTE / baud if baud else 0.0
        self._free_at = 0.0

    async def hold(self, nbytes: int) -> None:
        if not self.byte_s:
            return
        loop = asyncio.get_running_loop()
        self._free_at = max(loop.time(), self._free_at) + nbytes * self.byte_s
        await asyncio.sleep(max(0.0, self._free_at - loop.time()))


class CoderSimServer:
    def __init__(
        self,
        protocol: SimProtocol,
        *,
        baud: int | None = None,
        rate_per_s: float | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.protocol = protocol
        self.baud = baud
        self.rate_per_s = rate_per_s
        self.host = host
        self.port: int | None = None
        self.pty_path: str | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._pty_fds: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conveyor: asyncio.Task[None] | None = None

    @property
    def model(self) -> CoderModel:
        return self.protocol.model

    # -- lifecycle ----------------------------------------------------------------------------
    async def start_tcp(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve_tcp, self.host, port or self.port or 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._start_conveyor()
        return self.port

    async def start_pty(self) -> str:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty_fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(master, self._pty_readable, master, queue)
        self._spawn(self._serve_pty(master, queue))
        self._start_conveyor()
        return self.pty_path

    async def close(self) -> None:
        await self._drop_tcp()
        if self._pty_fds is not None:
            master, slave = self._pty_fds
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
            os.close(slave)
            self._pty_fds = None
        for task in [*self._tasks, *([self._conveyor] if self._conveyor else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._conveyor] if self._conveyor else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._conveyor = None

    async def power_loss(self) -> None:
        self.model.power_loss()
        await self._drop_tcp()

    async def power_on(self) -> None:
        self.model.power_on()
        self.protocol.reset_link()
        if self.port is not None and self._server is None:
            self._server = await asyncio.start_server(self._serve_tcp, self.host, self.port)

    async def _drop_tcp(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._conns):
            writer.close()
        self._conns.clear()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_conveyor(self) -> None:
        if self.rate_per_s and self._conveyor is None:
            self._conveyor = asyncio.create_task(self._run_conveyor(self.rate_per_s), name="sim-conveyor")

    async def _run_conveyor(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.model.fire()

    # -- byte paths ---------------------------------------------------------------------------
    async def _answer(self, data: bytes, rx: Pacer, tx: Pacer) -> bytes:
        await rx.hold(len(data))
        if not self.model.powered:
            return b""
        reply = self.protocol.receive(data)
        await tx.hold(len(reply))
        return reply

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.model.powered:
            writer.close()
            return
        self._conns.add(writer)
        self.protocol.reset_link()
        rx, tx = Pacer(self.baud), Pacer(self.baud)
        try:
            while data := await reader.read(4096):
                reply = await self._answer(data, rx, tx)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass  # the host went away; a printer just waits for the next connection
        finally:
            self._conns.discard(writer)
            writer.close()

    @staticmethod
    def _pty_readable(master: int, queue: asyncio.Queue[bytes]) -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            return  # EIO while no host has the slave open: nothing to read
        if data:
            queue.put_nowait(data)

    async def _serve_pty(self, master: int, queue: asyncio.Queue[bytes]) -> None:
        rx, tx = Pacer(self.baud), Pacer(self.baud)
        while True:
            data = await queue.get()
            reply = await self._answer(data, rx, tx)
            view = memoryview(reply)
            while view:
                try:
                    view = view[os.write(master, view):]
                except BlockingIOError:
                    await asyncio.sleep(0.001)
