"""The fault proxy itself: it cuts MQTT packets as the standard frames them (MQTT 5.0, 1.5.5: the
Remaining Length examples of Table 1-1), and drop, stall and reorder do what they say to real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from tests.faults.proxy import ChaosProxy, MalformedPacket, split_packets

PINGREQ = b"\xc0\x00"
CONNECT = b"\x10\x05" + b"MQTT\x05"  # type 1; the body's content does not matter to the proxy


def publish(n: int, size: int = 3) -> bytes:
    body = bytes([n]) * size
    return b"\x30" + bytes([size]) + body


def test_packets_are_cut_at_the_remaining_length_of_the_standard() -> None:
    body128 = bytes(128)
    big = b"\x30\x80\x01" + body128  # 128 = 0x80 0x01 (Table 1-1)
    body16384 = bytes(16384)
    huge = b"\x30\x80\x80\x01" + body16384  # 16,384 = 0x80 0x80 0x01
    buffer = bytearray(PINGREQ + big + huge + b"\x30\xff")  # the last length is not complete yet
    assert split_packets(buffer) == [PINGREQ, big, huge]
    assert buffer == bytearray(b"\x30\xff")
    buffer.extend(b"\x7f" + bytes(16383))  # 16,383 = 0xFF 0x7F
    assert split_packets(buffer) == [b"\x30\xff\x7f" + bytes(16383)] and not buffer
    with pytest.raises(MalformedPacket):
        split_packets(bytearray(b"\x30\xff\xff\xff\xff\x01"))


class Upstream:
    """A plain TCP server standing in for the broker: records what arrives, can answer."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.conn: socket.socket | None = None
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.conn, _ = self.sock.accept()
        while data := self.conn.recv(65536):
            with self.lock:
                self.received.extend(data)

    def got(self) -> bytes:
        with self.lock:
            return bytes(self.received)


def wait(cond: object, limit_s: float = 30) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def wired() -> tuple[ChaosProxy, Upstream, socket.socket]:
    up = Upstream()
    proxy = ChaosProxy(up.port)
    proxy.start()
    client = socket.create_connection(("127.0.0.1", proxy.port))
    client.sendall(CONNECT)
    assert wait(lambda: up.got() == CONNECT)
    yield proxy, up, client
    client.close()
    proxy.close()


def test_reorder_swaps_the_next_packets_pairwise(wired: tuple[ChaosProxy, Upstream, socket.socket]) -> None:
    proxy, up, client = wired
    proxy.reorder(1)
    client.sendall(publish(1) + publish(2) + publish(3))
    assert wait(lambda: len(up.got()) == len(CONNECT) + 15)
    assert up.got() == CONNECT + publish(2) + publish(1) + publish(3)
    assert proxy.stats.reordered == 1


def test_a_held_packet_with_nothing_to_swap_with_is_still_delivered(
        wired: tuple[ChaosProxy, Upstream, socket.socket]) -> None:
    proxy, up, client = wired
    proxy.reorder(1)
    client.sendall(publish(7))
    assert wait(lambda: up.got() == CONNECT + publish(7))


def test_stall_holds_packets_then_lets_them_through(wired: tuple[ChaosProxy, Upstream, socket.socket]) -> None:
    proxy, up, client = wired
    proxy.stall(2.0)
    client.sendall(publish(4))
    time.sleep(0.3)  # nothing may arrive while stalled (this can only pass wrongly, never fail wrongly)
    assert up.got() == CONNECT
    assert wait(lambda: up.got() == CONNECT + publish(4))


def test_drop_resets_both_connections(wired: tuple[ChaosProxy, Upstream, socket.socket]) -> None:
    proxy, _up, client = wired
    proxy.drop()
    client.settimeout(30)
    with contextlib.suppress(ConnectionResetError):  # an abort is a reset: either way the link is gone
        assert client.recv(1) == b""
    assert proxy.stats.drops == 2


def test_a_client_of_a_dead_broker_is_closed_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
        proxy = ChaosProxy(port)
        proxy.start()
        try:
            client = socket.create_connection(("127.0.0.1", proxy.port))
            client.settimeout(30)
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(1) == b""
            client.close()
        finally:
            proxy.close()


def test_the_proxy_runs_apart_from_the_callers_event_loop() -> None:
    async def main() -> None:
        up = Upstream()
        proxy = ChaosProxy(up.port)
        proxy.start()  # from inside a running loop: its own thread and loop
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(CONNECT + PINGREQ)
            await writer.drain()
            for _ in range(3000):
                if up.got() == CONNECT + PINGREQ:
                    break
                await asyncio.sleep(0.01)
            assert up.got() == CONNECT + PINGREQ
            writer.close()
        finally:
            proxy.close()

    asyncio.run(main())
