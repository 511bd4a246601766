"""Serve a byte-stream coder simulator (Videojet WSI, Hitachi, Markem NGPCL) on a pty and/or TCP.

Why not drivers/sim/base.py's SimCoder: that base de-frames requests with one FrameSpec, but a
Hitachi host sends bare ENQ/DC2 bytes between STX/ETX texts and a WSI host's packets are answered by
unframed check sequences. These protocols therefore parse their own byte stream (`receive`), and this
module gives them the same outside as SimCoder, so `lineagent sim printer` and the contract suite use
them alike: keyword-only `rate_per_min`, `baud`, `faults` (a FaultPlan or SPEC, drivers/sim/faults.py),
`serve_pty()`, `serve_tcp(port)`, `close()`, `trigger()`, `printed`, and power loss/on.

Pacing: on a pty, bytes in both directions take their wire time at `baud` (10 bits a byte), so link
limits in benchmarks are real; TCP is not paced. Power loss drops TCP connections and refuses new ones;
on a pty the printer just goes silent. Either way the queue is lost and the counter kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from drivers.printers.base import Fault
from drivers.sim.coder_model import CoderModel
from drivers.sim.faults import FaultPlan, SimFault

BITS_PER_BYTE = 10  # 8N1


@dataclass
class Injection:
    """Wire faults for the next requests: armed by tests, or drawn from the seeded FaultPlan.

    A NAK'd, garbled or unanswered request is not executed (as in drivers/sim/base.py), so what the
    simulator printed is always what the driver was told it accepted, or in doubt.
    """

    plan: FaultPlan = field(default_factory=FaultPlan)
    armed: deque[SimFault] = field(default_factory=deque)
    banned: bytes = b""  # bytes garbage must not contain (the protocol's delimiters)

    def request(self, model: CoderModel, handle: Callable[[], bytes], nak: bytes) -> bytes:
        fault = self.armed.popleft() if self.armed else self.plan.draw_request()
        if fault is SimFault.SILENCE:
            return b""
        if fault is SimFault.GARBAGE:
            pool = [b for b in range(0x20, 0x7F) if b not in self.banned]
            return bytes(self.plan.rng.choice(pool) for _ in range(8))
        if fault is SimFault.NAK:
            return nak
        if fault is SimFault.BUFFER_FULL:
            model.force_full += 1
        return handle()


class SimProtocol(Protocol):
    model: CoderModel
    inject: Injection
    job: str

    def receive(self, data: bytes) -> bytes: ...

    def reset_link(self) -> None: ...


class StreamSim:
    """A coder model behind one protocol, on a pty and/or 127.0.0.1, with an optional conveyor."""

    def __init__(
        self,
        protocol: SimProtocol,
        *,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
    ) -> None:
        self.protocol = protocol
        self.rate_per_min = rate_per_min
        self.baud = baud
        self.plan = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults)
        protocol.inject.plan = self.plan
        self.port: int | None = None
        self.pty_path: str | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pty: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def model(self) -> CoderModel:
        return self.protocol.model

    @property
    def printed(self) -> list[str]:
        return self.model.printed

    @property
    def received(self) -> list[str]:
        return self.model.received

    @property
    def counter(self) -> int:
        return self.model.counter

    @property
    def missed(self) -> int:
        return self.model.missed

    @property
    def job(self) -> str:
        return self.protocol.job

    def stop_printing(self) -> None:
        """A stop at the coder's panel: printing stops and the queue is cleared; nobody tells the host."""
        self.model.stop()

    def inject(self, fault: SimFault, count: int = 1) -> None:
        """Request faults hit the next `count` requests; stop, ink low and power loss happen now."""
        if fault in (SimFault.NAK, SimFault.GARBAGE, SimFault.SILENCE, SimFault.BUFFER_FULL):
            self.protocol.inject.armed.extend([fault] * count)
        elif fault is SimFault.STOP:
            self.model.stop()
        elif fault is SimFault.INK_LOW:
            self.model.faults.add(Fault.INK_LOW)
        elif fault is SimFault.POWER_LOSS:
            self._spawn(self._power_cycle(self.plan.down_s), "power-cycle")

    def trigger(self, products: int = 1) -> int:
        """`products` pass the head; returns how many were printed. Print faults follow the plan."""
        done = 0
        for _ in range(products):
            if self.model.fire() is None:
                continue
            done += 1
            for fault in self.plan.after_print(len(self.model.printed)):
                self.inject(fault)
        return done

    # -- power --------------------------------------------------------------------------------
    async def _power_cycle(self, down_s: float) -> None:
        await self.power_off()
        await asyncio.sleep(down_s)
        await self.power_on()

    async def power_off(self) -> None:
        self.model.power_loss()
        self.protocol.inject.armed.clear()
        await self._drop_tcp()

    async def power_on(self) -> None:
        self.model.power_on()
        self.protocol.reset_link()
        if self.port is not None and self._server is None:
            await self.serve_tcp(self.port)

    # -- links --------------------------------------------------------------------------------
    async def serve_tcp(self, port: int = 0, host: str = "127.0.0.1") -> int:
        self._server = await asyncio.start_server(self._tcp_client, host, port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._start_conveyor()
        return self.port

    async def serve_pty(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty = (master, slave)  # the slave stays open here so the master never sees EIO
        rx: asyncio.Queue[bytes] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(master, self._pty_readable, master, rx)
        self._spawn(self._pty_serve(master, rx), "pty")
        self._start_conveyor()
        self.pty_path = os.ttyname(slave)
        return self.pty_path

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_tcp()
        self.port = None
        if self._pty is not None:
            master, slave = self._pty
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
            os.close(slave)
            self._pty = None

    async def _drop_tcp(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.model.powered:
            writer.close()
            return
        self._writers.add(writer)
        self.protocol.reset_link()
        try:
            while data := await reader.read(4096):
                if not self.model.powered:
                    break
                reply = self.protocol.receive(data)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except OSError:
            pass  # the host went away; a printer waits for the next connection
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    def _pty_readable(master: int, rx: asyncio.Queue[bytes]) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(master, 4096)
            if data:
                rx.put_nowait(data)

    async def _pty_serve(self, master: int, rx: asyncio.Queue[bytes]) -> None:
        """Requests in, answers out, each paced at the baud rate; full duplex like a serial line."""
        tx: asyncio.Queue[bytes] = asyncio.Queue()
        self._spawn(self._pty_tx(master, tx), "pty-tx")
        loop = asyncio.get_running_loop()
        byte_s = BITS_PER_BYTE / self.baud
        free = 0.0
        while True:
            data = await rx.get()
            free = max(loop.time(), free) + len(data) * byte_s  # the bytes are still arriving
            await asyncio.sleep(max(0.0, free - loop.time()))
            if self.model.powered:
                reply = self.protocol.receive(data)
                if reply:
                    tx.put_nowait(reply)

    async def _pty_tx(self, master: int, tx: asyncio.Queue[bytes]) -> None:
        loop = asyncio.get_running_loop()
        byte_s = BITS_PER_BYTE / self.baud
        free = 0.0
        while True:
            reply = await tx.get()
            free = max(loop.time(), free) + len(reply) * byte_s
            await asyncio.sleep(max(0.0, free - loop.time()))
            view = memoryview(reply)
            while view:
                try:
                    view = view[os.write(master, view) :]
                except BlockingIOError:
                    await asyncio.sleep(0.005)  # the host is not reading; its tty buffer is full

    # -- conveyor -----------------------------------------------------------------------------
    def _start_conveyor(self) -> None:
        if self.rate_per_min and not any(t.get_name() == "conveyor" for t in self._tasks):
            self._spawn(self._conveyor(60.0 / self.rate_per_min), "conveyor")

    async def _conveyor(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.trigger()

    def _spawn(self, coro: object, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
