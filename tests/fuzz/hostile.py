"""A hostile device: a man in the middle between a driver and the real simulator of its device.

Why in the middle and not a device of its own: the simulator answers every request with the real
protocol's bytes, so a fuzz script can corrupt *valid* answers (a good frame with a huge count, a
checksum that no longer sums, a terminator inside a field) and not only send noise a parser rejects
at the first byte. The driver reaches the device over a real pty (it opens the slave path as a serial
port) or a real TCP socket; the device reaches the simulator over TCP.

Every chunk the simulator sends is handed to the next `Action` of the script (shared by all
connections, so a reconnect continues it); when the script is used up the simulator's bytes pass
unchanged. Actions: pass, rewrite (byte edits, or `Reframe`: a field edit inside frames re-encoded
with correct framing by the target's own `reframe` function), replace with other bytes, drop,
hang up after part of the chunk, flood without end (rate-limited, until the driver hangs up), and
stall (never answer again on this connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# ---- edits: what a hostile device does to bytes ---------------------------------------------------


@dataclass(frozen=True)
class Truncate:
    keep: int

    def __call__(self, data: bytes) -> bytes:
        return data[: self.keep]


@dataclass(frozen=True)
class Overwrite:
    at: int
    value: bytes

    def __call__(self, data: bytes) -> bytes:
        if not data:
            return self.value
        i = self.at % len(data)
        return data[:i] + self.value + data[i + len(self.value) :]


@dataclass(frozen=True)
class Insert:
    at: int
    value: bytes

    def __call__(self, data: bytes) -> bytes:
        i = self.at % (len(data) + 1)
        return data[:i] + self.value + data[i:]


@dataclass(frozen=True)
class Append:
    value: bytes

    def __call__(self, data: bytes) -> bytes:
        return data + self.value


@dataclass(frozen=True)
class Digits:
    """Every run of ASCII digits becomes `value` (a huge count, a negative, a non-number)."""

    value: bytes

    def __call__(self, data: bytes) -> bytes:
        out, i = bytearray(), 0
        while i < len(data):
            if 0x30 <= data[i] <= 0x39:
                while i < len(data) and 0x30 <= data[i] <= 0x39:
                    i += 1
                out += self.value
            else:
                out.append(data[i])
                i += 1
        return bytes(out)


@dataclass(frozen=True)
class Repeat:
    times: int

    def __call__(self, data: bytes) -> bytes:
        return data * self.times


Edit = Truncate | Overwrite | Insert | Append | Digits | Repeat


def apply_edits(edits: Sequence[Edit], data: bytes) -> bytes:
    for edit in edits:
        data = edit(data)
    return data


# ---- actions: what the device does with one answer -----------------------------------------------


@dataclass(frozen=True)
class Pass:
    pass


@dataclass(frozen=True)
class Rewrite:
    edits: tuple[Edit, ...]


@dataclass(frozen=True)
class Reframe:
    """Edit the payload of every frame in the answer, then frame it again correctly (a valid frame with
    a hostile field: the checksum, length and escapes all agree with the hostile content)."""

    edits: tuple[Edit, ...]


@dataclass(frozen=True)
class Replace:
    data: bytes


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class Hangup:
    keep: int  # bytes of the answer sent before the connection is cut: a peer closing mid-frame


@dataclass(frozen=True)
class Flood:
    unit: bytes  # sent over and over in place of the answer, with no end, until the driver hangs up


@dataclass(frozen=True)
class Stall:
    pass


Action = Pass | Rewrite | Reframe | Replace | Drop | Hangup | Flood | Stall
Reframer = Callable[[bytes, Callable[[bytes], bytes]], bytes]

FLOOD_CHUNK = 4096
FLOOD_PAUSE_S = 0.002  # about 2 MB/s: endless for a driver, harmless for the test machine


def _identity(data: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    return edit(data)


@dataclass
class Script:
    actions: Sequence[Action]
    reframe: Reframer = _identity
    used: int = 0
    flooded: int = 0  # bytes sent by floods, for the report
    log: list[str] = field(default_factory=list)

    def next(self) -> Action:
        if self.used < len(self.actions):
            self.used += 1
            return self.actions[self.used - 1]
        return Pass()

    def render(self, action: Action, chunk: bytes) -> bytes:
        """The bytes an answer-changing action sends in place of `chunk`."""
        if isinstance(action, Rewrite):
            return apply_edits(action.edits, chunk)
        if isinstance(action, Reframe):
            return self.reframe(chunk, lambda payload: apply_edits(action.edits, payload))
        if isinstance(action, Replace):
            return action.data
        if isinstance(action, Hangup):
            return chunk[: action.keep]
        if isinstance(action, Pass):
            return chunk
        return b""


# ---- the links to the driver --------------------------------------------------------------------


class _Downstream:
    """The driver's side of one connection: TCP streams or a pty master."""

    closed: asyncio.Event

    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes:
        """b'' when the driver went away."""
        return b""

    def close(self) -> None: ...


class _TcpDown(_Downstream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.closed = asyncio.Event()

    async def send(self, data: bytes) -> None:
        if self.closed.is_set() or not data:
            return
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, RuntimeError):
            self.close()

    async def recv(self) -> bytes:
        try:
            return await self.reader.read(4096)
        except OSError:
            return b""

    def close(self) -> None:
        self.closed.set()
        self.writer.close()


class _PtyDown(_Downstream):
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline: a serial line
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.closed = asyncio.Event()
        self._rx: asyncio.Queue[bytes] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._rx.put_nowait(data)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed.is_set():
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                await asyncio.sleep(0.002)  # the driver is not reading: its tty buffer is full
            except OSError:
                return

    async def recv(self) -> bytes:
        get = asyncio.ensure_future(self._rx.get())
        closed = asyncio.ensure_future(self.closed.wait())
        done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (get, closed):
            if task not in done:
                task.cancel()
        return get.result() if get in done else b""

    def close(self) -> None:
        """The cable is cut: the driver's reads fail (EIO) and the path disappears."""
        if self.closed.is_set():
            return
        self.closed.set()
        asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


# ---- the device ---------------------------------------------------------------------------------


class HostileDevice:
    """Serve the script between a driver and the simulator listening on `upstream_port`."""

    def __init__(self, upstream_port: int, script: Script) -> None:
        self.upstream_port = upstream_port
        self.script = script
        self._server: asyncio.Server | None = None
        self._downs: list[_Downstream] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve_tcp(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def serve_pty(self) -> str:
        down = _PtyDown()
        self._spawn(self._run(down))
        return down.path

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._run(_TcpDown(reader, writer))

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, down: _Downstream) -> None:
        self._downs.append(down)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            down.close()
            return
        tasks = [asyncio.ensure_future(self._to_device(down, up_w)),
                 asyncio.ensure_future(self._to_driver(down, up_r))]
        try:
            await down.closed.wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await t
            up_w.close()
            down.close()

    async def _to_device(self, down: _Downstream, up_w: asyncio.StreamWriter) -> None:
        while data := await down.recv():
            try:
                up_w.write(data)
                await up_w.drain()
            except OSError:
                break
        down.close()

    async def _to_driver(self, down: _Downstream, up_r: asyncio.StreamReader) -> None:
        stalled = False
        while True:
            try:
                chunk = await up_r.read(4096)
            except OSError:
                chunk = b""
            if not chunk:
                down.close()  # the simulator hung up: so does the device
                return
            if stalled:
                continue
            action = self.script.next()
            await down.send(self.script.render(action, chunk))
            if isinstance(action, Hangup):
                down.close()
                return
            if isinstance(action, Stall):
                stalled = True
            elif isinstance(action, Flood):
                await self._flood(down, action.unit or b"\x00")
                return

    async def _flood(self, down: _Downstream, unit: bytes) -> None:
        block = (unit * (FLOOD_CHUNK // len(unit) + 1))[:FLOOD_CHUNK]
        while not down.closed.is_set():
            await down.send(block)
            self.script.flooded += len(block)
            await asyncio.sleep(FLOOD_PAUSE_S)

    def cut(self) -> None:
        """Cut every open connection (the device keeps listening for new ones)."""
        for down in self._downs:
            down.close()
        self._downs.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for down in self._downs:
            down.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
