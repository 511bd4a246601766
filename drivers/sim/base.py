"""Shared simulator machinery: a coder model (FIFO, conveyor, counter, faults) served on a pty or TCP.

Why shared: every protocol simulator needs the same physics (a FIFO of the vendor's capacity, prints
paced by a conveyor, a product counter that survives a power loss, the record of exactly what was
printed) and the same links; a protocol subclass only answers frames. Adding a simulator is: subclass
`SimCoder`, set `frame_spec` and `capacity`, implement `handle(frame)` (and `nak`, optionally
`on_print`), register it in drivers/sim/__init__.py.

Links. `serve_pty()` opens a pty pair and returns the slave path for the driver to open as a serial
port; bytes in both directions take their wire time at `baud` (10 bits a byte) so a benchmark sees the
real link limit. `serve_tcp(port)` listens on 127.0.0.1 (no pacing: it is a network). Power loss on TCP
drops every connection and refuses new ones; on a pty (a serial cable stays plugged in) the device
just goes silent and deaf. Either way the FIFO is lost and the counter kept.

Determinism for tests: with `rate_per_min=None` there is no conveyor task and a test calls
`trigger()` for each product; every random choice comes from the seeded FaultPlan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from drivers.framing import Deframer, Frame, FrameError, FrameSpec, encode
from drivers.printers.base import Fault
from drivers.sim.faults import REQUEST_FAULTS, FaultPlan, SimFault
from drivers.transport import LinkClosed

log = logging.getLogger(__name__)
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
STOPPING = frozenset({Fault.INK_EMPTY, Fault.HEAD_FAULT, Fault.COVER_OPEN, Fault.OTHER})


@dataclass(frozen=True, slots=True)
class SimRecord:
    text: str
    tag: int  # the protocol's index/slot for the record (0 when the protocol has none)


class _Session:
    """One connected host: de-frames what it sends, writes answers (paced on a pty)."""

    def __init__(self, sim: SimCoder, send: Callable[[bytes], None]) -> None:
        self.sim = sim
        self.send = send
        self.deframer = sim.deframer()

    def received(self, data: bytes) -> None:
        for item in self.deframer.feed(data):
            self.answer(item)

    def answer(self, item: Frame | FrameError) -> None:
        if not self.sim.powered:
            return
        reply = self.sim.dispatch(item)
        if reply:
            self.send(reply)


class SimCoder(ABC):
    frame_spec: FrameSpec
    capacity: int = 256
    name: str = "coder"

    def __init__(
        self, *, rate_per_min: float | None = None, baud: int = 115200, faults: FaultPlan | str | None = None
    ) -> None:
        self.rate_per_min = rate_per_min
        self.baud = baud
        self.plan = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults)
        self.fifo: deque[SimRecord] = deque()
        self.printed: list[str] = []  # the truth: every text printed, in order
        self.received: list[str] = []  # every record accepted into the FIFO, in order (a second copy is a resend)
        self.counter = 0  # product counter: survives stops and power loss
        self.missed = 0  # products that passed unprinted (not running, empty FIFO, stopping fault)
        self.running = False
        self.powered = True
        self.faults: set[Fault] = set()
        self.last_tag = 0  # tag of the last printed record since power-on (0: none)
        self.requests = 0
        self.job = ""  # the job/message the host selected last
        self._armed: deque[SimFault] = deque()  # faults for the next requests, in order
        self._force_full = 0
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pty: tuple[int, int] | None = None
        self._server: asyncio.Server | None = None
        self._tcp_port: int | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.Task[None]] = set()  # connection handlers, awaited on close
        self._tx: asyncio.Queue[bytes] | None = None

    # --- protocol hooks --------------------------------------------------------------------------

    @abstractmethod
    def handle(self, frame: Frame) -> bytes | None:
        """Answer one request (wire bytes, e.g. `self.frame(payload)`), or None for no answer."""

    @abstractmethod
    def nak(self, frame: Frame, reason: str) -> bytes:
        """The protocol's refusal of `frame` (a NAK token or an error reply)."""

    def on_print(self, record: SimRecord) -> bytes | None:
        """An unsolicited message after each print (print-complete), if the protocol sends one."""
        return None

    def on_bad_frame(self, error: FrameError) -> bytes | None:
        """Answer to a malformed frame; default: ignore it, as most coders do."""
        return None

    def deframer(self) -> Deframer:
        return Deframer(self.frame_spec)

    def frame(self, payload: bytes) -> bytes:
        return encode(self.frame_spec, payload)

    # --- the coder model -------------------------------------------------------------------------

    def store(self, text: str, tag: int = 0) -> bool:
        """Append a record; False when the FIFO is full (or a buffer_full fault is armed)."""
        if self._force_full:
            self._force_full -= 1
            return False
        if len(self.fifo) >= self.capacity:
            return False
        self.fifo.append(SimRecord(text, tag))
        self.received.append(text)
        return True

    def expected_index(self) -> int:
        """The index an indexed coder accepts next: the one after the newest record it holds, or, with
        its FIFO empty (printed out, cleared, power-on), after the last it printed. Anchoring on the last
        print is what makes a cleared FIFO visible: a host still counting from the lost records is refused."""
        return (self.fifo[-1].tag if self.fifo else self.last_tag) % self.capacity + 1

    def start_printing(self) -> None:
        self.running = True

    def stop_printing(self) -> None:
        """A stop clears the FIFO (Leibinger clears mailing data on print stop)."""
        self.running = False
        self.fifo.clear()

    def clear_faults(self) -> None:
        self.faults.clear()

    def trigger(self, products: int = 1) -> int:
        """`products` pass the print head; returns how many were printed."""
        done = 0
        for _ in range(products):
            if not (self.powered and self.running) or self.faults & STOPPING:
                self.missed += 1
                continue
            if not self.fifo:
                self.faults.add(Fault.BUFFER_EMPTY)
                self.missed += 1
                continue
            record = self.fifo.popleft()
            self.printed.append(record.text)
            self.counter += 1
            self.last_tag = record.tag
            done += 1
            message = self.on_print(record)
            if message:
                self.broadcast(message)
            for fault in self.plan.after_print(len(self.printed)):
                self.inject(fault)
        return done

    def inject(self, fault: SimFault, count: int = 1) -> None:
        """Make `fault` happen: request faults hit the next `count` requests, the others now."""
        if fault in REQUEST_FAULTS:
            self._armed.extend([fault] * count)
        elif fault is SimFault.STOP:
            self.stop_printing()
        elif fault is SimFault.INK_LOW:
            self.faults.add(Fault.INK_LOW)
        elif fault is SimFault.POWER_LOSS:
            self._spawn(self._power_cycle(self.plan.down_s))

    async def _power_cycle(self, down_s: float) -> None:
        await self.power_off()
        await asyncio.sleep(down_s)
        await self.power_on()

    async def power_off(self) -> None:
        """Power lost: links dead, FIFO and print state lost; counter and record of prints kept."""
        self.powered = False
        self.running = False
        self.fifo.clear()
        self.last_tag = 0
        self._armed.clear()
        for session in self._sessions:
            session.deframer.reset()
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()
            await self._server.wait_closed()
            self._server = None

    async def power_on(self) -> None:
        if self._tcp_port is not None and self._server is None:
            await self.serve_tcp(self._tcp_port)  # listening before "powered": no half-up window
        self.powered = True
        self.faults.discard(Fault.BUFFER_EMPTY)

    # --- request dispatch ------------------------------------------------------------------------

    def dispatch(self, item: Frame | FrameError) -> bytes | None:
        if isinstance(item, FrameError):
            return self.on_bad_frame(item)
        self.requests += 1
        fault = self._armed.popleft() if self._armed else self.plan.draw_request()
        if fault is SimFault.SILENCE:
            return None
        if fault is SimFault.GARBAGE:  # the device acted on the request; its answer was corrupted
            self.handle(item)
            return self.garbage()
        if fault is SimFault.NAK:
            return self.nak(item, "injected NAK")
        if fault is SimFault.BUFFER_FULL:
            self._force_full += 1
        return self.handle(item)

    def garbage(self, size: int = 12) -> bytes:
        """Random bytes that cannot form a valid frame (no delimiter or escape bytes in them)."""
        spec = self.frame_spec
        banned = set(spec.start[:1] + spec.end + spec.escape + b"".join(spec.tokens))
        pool = [b for b in range(256) if b not in banned]
        body = bytes(self.plan.rng.choice(pool) for _ in range(size))
        return body if spec.start else body + spec.end

    def broadcast(self, data: bytes) -> None:
        for session in list(self._sessions):
            session.send(data)

    # --- links -----------------------------------------------------------------------------------

    async def serve_pty(self) -> str:
        """Open a pty pair; returns the slave path a driver opens as its serial port."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty = (master, slave)  # the slave stays open here so the master never sees EIO/HUP
        tx: asyncio.Queue[bytes] = asyncio.Queue()
        rx: asyncio.Queue[bytes] = asyncio.Queue()
        self._tx = tx
        session = _Session(self, tx.put_nowait)
        self._sessions.add(session)
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._pty_readable, master, rx)
        self._spawn(self._pty_rx(rx, session))
        self._spawn(self._pty_tx(master, tx))
        self._start_conveyor()
        return os.ttyname(slave)

    def _pty_readable(self, master: int, rx: asyncio.Queue[bytes]) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(master, 4096)
            if data:
                rx.put_nowait(data)

    def wire_time(self, n: int) -> float:
        return n * BITS_PER_BYTE / self.baud

    async def _pty_rx(self, rx: asyncio.Queue[bytes], session: _Session) -> None:
        """Each frame is handled when its last byte would have arrived at `baud`, not when the host's
        whole burst landed in the pty: a coder answers frame by frame while the next one is on the line."""
        loop = asyncio.get_running_loop()
        line_free = loop.time()
        while True:
            data = await rx.get()
            if not self.powered:
                session.deframer.reset()
                continue
            line_free = max(line_free, loop.time())
            for item in session.deframer.feed(data):
                line_free += self.wire_time(len(item.raw))
                await asyncio.sleep(max(0.0, line_free - loop.time()))
                session.answer(item)

    async def _pty_tx(self, master: int, tx: asyncio.Queue[bytes]) -> None:
        loop = asyncio.get_running_loop()
        line_free = loop.time()
        while True:
            data = await tx.get()
            if not self.powered:
                continue
            line_free = max(line_free, loop.time()) + self.wire_time(len(data))
            await asyncio.sleep(max(0.0, line_free - loop.time()))  # the bytes take their time on the line
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(master, view) :]
                except BlockingIOError:
                    await asyncio.sleep(0.005)  # the host is not reading; its tty buffer is full

    async def serve_tcp(self, port: int, host: str = "127.0.0.1") -> int:
        """Listen on `port` (0: any free port); returns the port."""
        self._server = await asyncio.start_server(self._tcp_client, host, port, reuse_address=True)
        self._tcp_port = int(self._server.sockets[0].getsockname()[1])
        self._start_conveyor()
        return self._tcp_port

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.powered:
            writer.close()
            return
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        session = _Session(self, writer.write)
        self._sessions.add(session)
        try:
            while data := await reader.read(4096):
                session.received(data)
                await writer.drain()
        except (OSError, LinkClosed):
            pass
        finally:
            self._sessions.discard(session)
            self._writers.discard(writer)
            writer.close()

    # --- conveyor and lifecycle ------------------------------------------------------------------

    def _start_conveyor(self) -> None:
        if self.rate_per_min and not any(t.get_name() == "conveyor" for t in self._tasks):
            self._spawn(self._conveyor(60.0 / self.rate_per_min), "conveyor")

    async def _conveyor(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))  # drift-free: products arrive on a clock
            self.trigger()

    def _spawn(self, coro: object, name: str = "sim") -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None
        for client in list(self._clients):  # let each handler see its closed connection and return
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await asyncio.wait_for(client, 1.0)
        self._tcp_port = None
        if self._pty is not None:
            master, slave = self._pty
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
            os.close(slave)
            self._pty = None
        self._sessions.clear()

