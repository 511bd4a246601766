"""A mosquitto broker on a free local port, for the simulated line (demo, tests, benchmarks).

Why a process and no persistence: the point is to show the agent's own guarantees; a broker that
dies loses what it held, and the uplink must still deliver every event exactly once.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BrokerError(RuntimeError):
    pass


class Broker:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             "max_inflight_messages 0\nmax_queued_messages 100000\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, wait_s: float = 10.0) -> None:
        if not Path(MOSQUITTO).exists():
            raise BrokerError(f"mosquitto not found at {MOSQUITTO}; install it (apt-get install mosquitto)")
        # its own session: a Ctrl-C at the terminal (SIGINT to the foreground group) must reach only the
        # demo, which stops the line and then the broker, not kill the broker under the uplink's drain
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode} (port {self.port} taken?)")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)  # a plain thread, not the event loop
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {wait_s} s")

    def kill(self) -> None:
        """Like a crash: SIGKILL, nothing flushed."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1
