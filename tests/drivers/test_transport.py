"""Transports against real links: pyserial loop://, a pty pair, socket:// and plain TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import tty
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from drivers.transport import (
    Backoff,
    LinkClosed,
    ReadTimeout,
    SerialTransport,
    TcpTransport,
    Transport,
    _waiting,
    open_transport,
)
from tests.conftest import free_port


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


async def read_exactly(t: Transport, n: int) -> bytes:
    out = b""
    while len(out) < n:
        out += await t.read(2.0)
    return out


async def echo_server() -> tuple[asyncio.Server, int, list[asyncio.StreamWriter]]:
    clients: list[asyncio.StreamWriter] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1]), clients


def test_loop_url_echoes_bytes() -> None:
    async def main() -> None:
        t = open_transport("loop://", baud=9600)
        assert isinstance(t, SerialTransport)
        await t.open(2.0)
        await t.write(b"\x02hello\x03")
        assert await read_exactly(t, 7) == b"\x02hello\x03"
        await t.close()
        assert not t.is_open

    run(main())


def test_pty_both_directions_and_read_timeout() -> None:
    async def main() -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        try:
            t = SerialTransport(os.ttyname(slave), baud=115200)
            await t.open(2.0)
            os.write(master, b"^0=SM\t256\t0\t0\r")
            assert await read_exactly(t, 14) == b"^0=SM\t256\t0\t0\r"
            await t.write(b"^0?RS\r")
            got = b""
            while len(got) < 6:
                got += await asyncio.to_thread(os.read, master, 64)
            assert got == b"^0?RS\r"
            with pytest.raises(ReadTimeout, match="nothing received"):
                await t.read(0.05)
            await t.close()
        finally:
            os.close(master)
            os.close(slave)

    run(main())


def test_serial_url_socket_scheme_reaches_a_tcp_device() -> None:
    async def main() -> None:
        server, port, _ = await echo_server()
        t = open_transport(f"socket://127.0.0.1:{port}")
        assert isinstance(t, SerialTransport)
        await t.open(2.0)
        await t.write(b"ping")
        assert await read_exactly(t, 4) == b"ping"
        await t.close()
        server.close()

    run(main())


def test_tcp_echo_then_peer_close_is_link_closed() -> None:
    async def main() -> None:
        server, port, clients = await echo_server()
        t = open_transport(f"tcp://127.0.0.1:{port}")
        assert isinstance(t, TcpTransport)
        await t.open(2.0)
        await t.write(b"\x06")
        assert await read_exactly(t, 1) == b"\x06"
        server.close()
        for client in clients:  # the device drops the connection (power loss, reboot)
            client.close()
        with pytest.raises(LinkClosed):
            for _ in range(50):
                await t.read(0.1)
        await t.close()

    run(main())


def test_nothing_listening_is_link_closed_with_the_address() -> None:
    async def main() -> None:
        port = free_port()
        with pytest.raises(LinkClosed, match=f"127.0.0.1:{port}"):
            await open_transport(f"tcp://127.0.0.1:{port}").open(1.0)
        with pytest.raises(LinkClosed, match="/dev/no-such-tty"):
            await open_transport("/dev/no-such-tty").open(1.0)
        with pytest.raises(LinkClosed, match="closed link"):
            await open_transport("loop://").write(b"x")

    run(main())


def test_tcp_url_needs_host_and_port() -> None:
    with pytest.raises(ValueError, match=r"tcp://10\.0\.0\.5:3000"):
        open_transport("tcp://printer")


def test_trace_logs_every_chunk_as_hex(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        t = open_transport("loop://", name="cij1", trace=True)
        await t.open(2.0)
        await t.write(b"\x02A\x03")
        await read_exactly(t, 3)
        await t.close()

    with caplog.at_level(logging.INFO, logger="lineagent.trace"):
        run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "lineagent.trace"]
    assert "cij1 >> 3: 02 41 03" in lines
    assert any(line.startswith("cij1 << ") and "02" in line for line in lines)


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    rng = random.Random(3)
    b = Backoff(first_s=0.1, max_s=1.0)
    delays = [b.next_delay(rng) for _ in range(8)]
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered: no two agents retry in lock-step
    for _ in range(5000):  # a coder off for a weekend: the delay stays at the cap, no overflow
        assert b.next_delay(rng) <= 1.0
    b.reset()
    assert b.next_delay(rng) <= 0.1


class _Port:
    """A port that holds `waiting` bytes and reads them in pieces of at most `piece`, as a tty may."""

    def __init__(self, waiting: bytes, piece: int) -> None:
        self.waiting, self.piece = waiting, piece

    @property
    def in_waiting(self) -> int:
        return len(self.waiting)

    def read(self, size: int = 1) -> bytes:
        got, self.waiting = self.waiting[: min(size, self.piece)], self.waiting[min(size, self.piece) :]
        return got


def test_the_reader_takes_everything_waiting_behind_the_first_byte() -> None:
    """One hand-over to the loop per burst, not one for the byte the read woke on and one for the rest."""
    port = _Port(b"^0=SM\t256\t0\t0\r", piece=4)
    first = port.read(1)
    assert first + _waiting(port) == b"^0=SM\t256\t0\t0\r"  # type: ignore[arg-type]
    assert _waiting(_Port(b"", piece=4)) == b""  # type: ignore[arg-type]


def test_pty_writes_in_order_past_a_full_tty_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small write goes out on the loop; what the tty buffer cannot take is finished by a worker thread,
    and two writes started together reach the device whole and in the order they were made."""

    async def main() -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        try:
            t = SerialTransport(os.ttyname(slave), baud=115200)
            await t.open(2.0)
            threaded: list[int] = []
            real_to_thread = asyncio.to_thread

            async def counting_to_thread(fn: Callable[..., Any], /, *args: Any) -> Any:
                threaded.append(len(args[0]) if args and isinstance(args[0], bytes) else 0)
                return await real_to_thread(fn, *args)

            monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)
            await t.write(b"^0?RS\r")
            assert threaded == []
            assert await real_to_thread(os.read, master, 64) == b"^0?RS\r"

            big_a, big_b = b"A" * 300_000, b"B" * 300_000  # far more than a tty buffer holds
            received = bytearray()

            def drain() -> None:
                while len(received) < len(big_a) + len(big_b):
                    received.extend(os.read(master, 65536))

            await asyncio.gather(t.write(big_a), t.write(big_b), real_to_thread(drain))
            assert bytes(received) == big_a + big_b
            assert threaded  # the rest of a write the buffer refused went to a thread
            monkeypatch.undo()
            await t.close()
        finally:
            os.close(master)
            os.close(slave)

    run(main())
