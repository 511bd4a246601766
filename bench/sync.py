"""Sync throughput: drain an outbox backlog through real mosquitto into the reference receiver.

Figures, each beside a raw paho QoS 1 publish loop (one event per message, 20 in flight) measured in
the same run on the same path:
- sync.events_per_s: local broker, receiver validating every document and storing in SQLite.
- sync.events_per_s_50ms_rtt: the agent reaches the broker through a proxy adding 25 ms each way.
The clock runs from the uplink's start until the last batch's ack is recorded (every event stored).

CPU per event, because the machine is shared and wall-clock rates move with its load:
- sync.agent_cpu_us_per_event: the uplink thread's CPU time (it does its own network I/O) for the
  local drain; baseline: this process's CPU per message of the raw paho loop.
- sync.receiver_cpu_us_per_event: the receiver process's user+system CPU over the same drain;
  baseline: stdlib json + one executemany per batch (no validation) on the same documents.
- sync.broker_cpu_us_per_event: mosquitto over the same drain, for the whole picture.
BENCH_SYNC_COMPRESS=0 runs the agent with `compress: false` (the default is zlib level 1).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config.mqtt import MqttConfig
from agent.epcis import LineContext, commissioning_event, document, epc_for
from agent.ledger import Ledger
from agent.sync.mqtt import Topics
from agent.sync.outbox import Batch, Outbox
from agent.sync.uplink import Uplink
from bench import Figure

ROOT = Path(__file__).resolve().parents[1]
CTX = LineContext(read_point="urn:epc:id:sgln:0614141.00777.L1", biz_location="urn:epc:id:sgln:0614141.00777.0",
                  utc_offset="+08:00")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


class DelayProxy:
    """Forwards TCP with a fixed one-way delay per direction, without capping throughput."""

    def __init__(self, target: int, one_way_s: float) -> None:
        self.target, self.delay = target, one_way_s
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                q: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(a, q), daemon=True).start()
                threading.Thread(target=self._write, args=(b, q), daemon=True).start()

    def _read(self, src: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        try:
            while data := src.recv(262144):
                q.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        q.put((0.0, b""))

    def _write(self, dst: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = q.get()
            if not data:
                dst.close()
                return
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def _fill(path: Path, n: int) -> None:
    ledger = Ledger(path, synchronous="NORMAL")
    t0 = 1_767_225_600.0
    chunk = 20_000
    for start in range(0, n, chunk):
        rows = []
        for i in range(start, min(n, start + chunk)):
            event = commissioning_event(CTX, [epc_for(f"{i:020d}")], at=t0 + i / 1000, lot="L1", expiry="2027-12-31")
            rows.append((t0 + i / 1000, "item.commissioned", json.dumps({"epcis": event}, separators=(",", ":"))))
        with ledger.atomic(durable=True) as conn:
            conn.executemany("INSERT INTO events(at, kind, uplink, payload) VALUES (?, ?, 1, ?)", rows)
    ledger.close()


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drain(ledger: Path, url: str) -> tuple[float, float]:
    """(wall seconds, uplink-thread CPU seconds) to drain the whole outbox."""
    compress = os.environ.get("BENCH_SYNC_COMPRESS", "1") != "0"
    cfg = MqttConfig(broker=url, batch_max_events=500, batch_max_ms=50, inflight=20, ack_timeout_s=60,
                     compress=compress)
    uplink = Uplink(Outbox(ledger), cfg, Topics("lineagent", "bench", "L1"), client_id="bench-uplink")
    cpu0 = time.thread_time()
    t0 = time.perf_counter()
    next_check = 0.0
    while True:
        uplink.step()
        now = time.perf_counter()
        if now >= next_check:
            next_check = now + 0.25
            if uplink.drained():
                break
    elapsed = time.perf_counter() - t0
    cpu = time.thread_time() - cpu0
    uplink.close()
    return elapsed, cpu


def _raw_paho(port: int, n: int) -> tuple[float, float]:
    """The plain way: one event per message, QoS 1, 20 in flight, until every PUBACK is in.

    (messages/s, this process's CPU seconds per message).
    """
    payload = json.dumps(commissioning_event(CTX, [epc_for("0" * 20)], at=1.8e9, lot="L1")).encode()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(20)
    c.max_queued_messages_set(0)
    acked = threading.Semaphore(0)
    c.on_publish = lambda *_: acked.release()
    c.connect("127.0.0.1", port)
    c.loop_start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(n):
        c.publish("bench/raw", payload, qos=1)
    for _ in range(n):
        acked.acquire()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    c.disconnect()
    c.loop_stop()
    return n / elapsed, cpu / n


def _plain_store_cpu(ledger: Path, db: Path, n: int) -> float:
    """CPU seconds per event to store documents the plain way: json.loads + one executemany per batch."""
    outbox = Outbox(ledger)
    bodies: list[bytes] = []
    total = 0
    for first in range(0, n, 500):
        doc = document(outbox.events(Batch(0, first, first + 499, 500, 0)))
        total += len(doc["epcisBody"]["eventList"])
        bodies.append(json.dumps(doc).encode())
    outbox.close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE e (event_id TEXT PRIMARY KEY, batch INTEGER, pos INTEGER, body TEXT)")
    cpu0 = time.process_time()
    for b, body in enumerate(bodies):
        events = json.loads(body)["epcisBody"]["eventList"]
        conn.execute("BEGIN")
        conn.executemany("INSERT OR IGNORE INTO e VALUES (?, ?, ?, ?)",
                         [(e["eventID"], b, i, json.dumps(e)) for i, e in enumerate(events)])
        conn.execute("COMMIT")
    cpu = time.process_time() - cpu0
    conn.close()
    return cpu / total


def run(quick: bool) -> dict[str, Figure]:
    n = int(os.environ.get("BENCH_SYNC_N", "0")) or (100_000 if quick else 1_000_000)
    n_rtt = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        work = Path(tmp)
        port = _free_port()
        (work / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                                     "max_queued_messages 1000000\n")
        broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(work / "m.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        receiver = None
        try:
            _wait_port(port)
            # The receiver runs from this tree, as the agent side does: the venv's `lineagent` script
            # imports whichever checkout the venv was installed from, which need not be this one.
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
            receiver = subprocess.Popen(
                [sys.executable, "-c", "from agent.cli.main import main; main()", "receiver",
                 "--broker", f"mqtt://127.0.0.1:{port}", "--db", str(work / "received.db")],
                stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
            _fill(work / "a.db", n)
            _fill(work / "b.db", n_rtt)
            time.sleep(1.0)  # the receiver subscribes
            receiver_cpu0, broker_cpu0 = _proc_cpu_s(receiver.pid), _proc_cpu_s(broker.pid)
            wall, agent_cpu = _drain(work / "a.db", f"mqtt://127.0.0.1:{port}")
            receiver_cpu = _proc_cpu_s(receiver.pid) - receiver_cpu0
            broker_cpu = _proc_cpu_s(broker.pid) - broker_cpu0
            local = n / wall
            raw_local, raw_cpu = _raw_paho(port, min(n, 50_000))
            plain_store = _plain_store_cpu(work / "b.db", work / "plain.db", min(n_rtt, 20_000))
            proxy = DelayProxy(port, 0.025)
            rtt = n_rtt / _drain(work / "b.db", f"mqtt://127.0.0.1:{proxy.port}")[0]
            raw_rtt = _raw_paho(proxy.port, min(n_rtt, 5_000))[0]
            proxy.close()
        finally:
            if receiver is not None:
                receiver.terminate()
                receiver.wait(10)
            broker.kill()
            broker.wait()
    zlib_note = "zlib level 1" if os.environ.get("BENCH_SYNC_COMPRESS", "1") != "0" else "uncompressed"
    return {
        "sync.events_per_s": Figure(local, "events/s", raw_local, 20_000.0,
                                    f"{n:,}-event backlog, batches of 500, 20 in flight, receiver validates+stores"),
        "sync.events_per_s_50ms_rtt": Figure(rtt, "events/s", raw_rtt, 5_000.0,
                                             f"{n_rtt:,}-event backlog through a proxy adding 50 ms round trip"),
        # 20,000 events/s on 2 cores leaves 100 us of CPU per event for agent, broker and receiver.
        "sync.agent_cpu_us_per_event": Figure(agent_cpu / n * 1e6, "us/event", raw_cpu * 1e6, 20.0,
                                              f"uplink thread, local drain; {zlib_note}; baseline: raw paho "
                                              "client CPU per one-event message", higher_is_better=False),
        "sync.receiver_cpu_us_per_event": Figure(receiver_cpu / n * 1e6, "us/event", plain_store * 1e6, 50.0,
                                                 "receiver process (validate every document, store once); "
                                                 "baseline: stdlib json + executemany, no validation",
                                                 higher_is_better=False),
        "sync.broker_cpu_us_per_event": Figure(broker_cpu / n * 1e6, "us/event", None, None,
                                               "mosquitto over the local drain", higher_is_better=False),
    }


if __name__ == "__main__":
    for key, fig in run("--full" not in sys.argv).items():
        print(key, json.dumps(fig.as_json()))
