"""Real parts for sync tests: mosquitto on a free port (stoppable, restartable), a cutting TCP proxy,
a receiver, and ledgers full of real EPCIS outbox rows."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.epcis import LineContext, commissioning_event, epc_for
from agent.ledger import Ledger
from tests.conftest import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CTX = LineContext(read_point="urn:epc:id:sgln:0614141.00777.L1", biz_location=None, utc_offset="+08:00")


class Broker:
    """A mosquitto process; stop() kills it like a crash (no persistence), start() brings it back."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             "max_inflight_messages 0\nmax_queued_messages 100000\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Proxy:
    """A TCP proxy on a free port that can cut every connection and add latency each way."""

    def __init__(self, target_port: int, delay_s: float = 0.0) -> None:
        self.target = target_port
        self.delay_s = delay_s
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)  # a thread per direction: latency, not a throughput cap
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        self.cut()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def proxy(broker: Broker) -> Iterator[Proxy]:
    p = Proxy(broker.port)
    yield p
    p.close()


def fill(ledger_path: Path, count: int, start: int = 0, at: float = 1_767_225_600.0) -> list[str]:
    """Write `count` commissioning events into the outbox the way producers do; their EPCs."""
    epcs = []
    with Ledger(ledger_path) as ledger:
        for i in range(start, start + count):
            epc = epc_for(f"CODE{i:08d}")
            epcs.append(epc)
            t = at + i / 1000
            event = commissioning_event(CTX, [epc], at=t, lot="L1")
            ledger.append_event("item.commissioned", {"epcis": event}, uplink=True, at=t)
        ledger.commit()
    return epcs
