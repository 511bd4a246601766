"""A TCP proxy between the agent and the MQTT broker that drops, stalls and reorders, on command.

Why MQTT-aware: TCP itself never reorders bytes, so "reordering" a TCP stream only means something at
the level of whole MQTT control packets. The proxy cuts each direction into packets by the fixed header
(MQTT 5.0, OASIS Standard, 2.1.1 "Fixed Header": one byte of type and flags, then the Remaining Length
as a Variable Byte Integer, 1.5.5) and can then:
- drop: abort every connection at once (a reset, as a switch or a NAT table losing the flow does);
- stall: hold every packet in both directions for a while, the connections open (a congested link or a
  broker paused by its host): the agent's keep-alive and ack timeouts must carry it;
- reorder: deliver the next packets of each direction pairwise swapped (never CONNECT or CONNACK, which
  must come first): a broker or bridge that does not keep the order of messages on different topics,
  and acks coming back out of order.
It runs its own event loop in a thread, so the test that drives it stays plain code.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

CONNECT, CONNACK = 1, 2


class MalformedPacket(ValueError):
    pass


def split_packets(buffer: bytearray) -> list[bytes]:
    """Take every complete MQTT control packet off the front of `buffer` (what is left stays there)."""
    out: list[bytes] = []
    while len(buffer) >= 2:
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(buffer):
                return out  # the length itself is not complete yet
            byte = buffer[i]
            length += (byte & 0x7F) * multiplier
            i += 1
            if not byte & 0x80:
                break
            multiplier *= 128
            if i > 4:
                raise MalformedPacket("Remaining Length longer than 4 bytes")
        if len(buffer) < i + length:
            return out
        out.append(bytes(buffer[:i + length]))
        del buffer[:i + length]
    return out


@dataclass
class ProxyStats:
    connections: int = 0
    drops: int = 0  # connections aborted by drop()
    stalls: int = 0
    reordered: int = 0  # pairs of packets delivered swapped
    packets: int = 0


class ChaosProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.host = host
        self.port = 0
        self.stats = ProxyStats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self._swap = 0  # packets still to deliver swapped, per direction (each pump takes from it)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    # ---- control (any thread) -------------------------------------------------------------------

    def start(self) -> int:
        self._thread.start()
        self.port = self._call(self._start())
        return self.port

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def drop(self) -> None:
        self._call(self._drop())

    def stall(self, seconds: float) -> None:
        """Hold every packet for `seconds` (returns at once)."""
        self._call(self._stall(seconds))

    def reorder(self, pairs: int) -> None:
        self._call(self._reorder(pairs))

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ---- the loop ---------------------------------------------------------------------------------

    async def _start(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop(count=False)

    async def _drop(self, count: bool = True) -> None:
        for w in list(self._writers):
            w.transport.abort()
            if count:
                self.stats.drops += 1
        self._writers.clear()

    async def _stall(self, seconds: float) -> None:
        assert self._flowing is not None
        self.stats.stalls += 1
        self._flowing.clear()
        self._loop.call_later(seconds, self._flowing.set)

    async def _reorder(self, pairs: int) -> None:
        self._swap += 2 * pairs

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()  # the broker is down: the agent sees the connection refused/closed
            return
        self._writers.update((writer, up_writer))
        pumps = [asyncio.create_task(self._pump(reader, up_writer)), asyncio.create_task(self._pump(up_reader, writer))]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        buffer = bytearray()
        held: bytes | None = None  # a packet waiting to be delivered after the next one
        with contextlib.suppress(OSError, MalformedPacket):
            while True:
                try:
                    async with asyncio.timeout(0.5 if held is not None else None):
                        data = await reader.read(65536)
                except TimeoutError:  # nothing came to swap with: deliver the held packet as it is
                    assert held is not None
                    await self._deliver(writer, held)
                    held = None
                    continue
                if not data:
                    return
                buffer.extend(data)
                for packet in split_packets(buffer):
                    self.stats.packets += 1
                    if held is not None:
                        await self._deliver(writer, packet + held)
                        self.stats.reordered += 1
                        held = None
                    elif self._swap > 0 and packet[0] >> 4 not in (CONNECT, CONNACK):
                        self._swap -= 1
                        held = packet
                    else:
                        await self._deliver(writer, packet)

    async def _deliver(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        assert self._flowing is not None
        await self._flowing.wait()
        writer.write(data)
        await writer.drain()
