"""What leaves the daemon for systemd and Prometheus, as it leaves: datagrams on a real AF_UNIX socket
(the sd_notify(3) protocol: "KEY=VALUE" lines) and the HTTP text a scraper reads."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path

import pytest

from agent.config import load_config
from agent.ledger import Ledger
from agent.line.metrics import LineMetrics
from agent.line.notify import Notifier
from agent.line.runtime import LineRuntime
from agent.line.status import DaemonStatus
from tests.conftest import free_port
from tests.helpers import make_line


def _listener(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    return sock, path


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


def test_notifier_speaks_the_protocol_and_is_silent_outside_systemd(tmp_path: Path) -> None:
    sock, path = _listener(tmp_path)
    n = Notifier(path)
    n.ready("idle, no job")
    assert _fields(sock.recv(4096)) == {"READY": "1", "STATUS": "idle, no job"}
    n.beat("running\nwith a newline")
    assert _fields(sock.recv(4096)) == {"WATCHDOG": "1", "STATUS": "running with a newline"}
    n.close()
    quiet = Notifier("")
    assert not quiet.enabled
    quiet.ready("nobody listens")  # no socket, no error


def test_watchdog_interval_is_half_of_watchdog_sec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier.watchdog_interval_s() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert Notifier.watchdog_interval_s() is None


def test_the_runtime_says_ready_then_beats_then_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = _listener(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    cfg = load_config(make_line(tmp_path))
    ledger = Ledger(tmp_path / "ledger.db")
    runtime = LineRuntime(cfg, ledger, status_every_s=0.05)

    async def main() -> list[dict[str, str]]:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        got: list[dict[str, str]] = []
        loop = asyncio.get_running_loop()
        while not got or "READY" not in got[-1]:  # a beat may come before the first probe is done
            got.append(_fields(await loop.run_in_executor(None, sock.recv, 4096)))
        got = got[-1:]
        while len(got) < 3:
            got.append(_fields(await loop.run_in_executor(None, sock.recv, 4096)))
        stop.set()
        await asyncio.wait_for(task, 30)
        sock.settimeout(2)
        while "STOPPING" not in got[-1]:
            got.append(_fields(await loop.run_in_executor(None, sock.recv, 4096)))
        return got

    try:
        got = asyncio.run(main())
    finally:
        ledger.close()
    assert got[0]["READY"] == "1" and got[0]["STATUS"].startswith("idle, no job")
    assert got[1]["WATCHDOG"] == "1"
    assert got[-1]["STOPPING"] == "1"


def test_metrics_are_served_on_localhost_from_the_status_snapshot() -> None:
    port = free_port()
    m = LineMetrics("s1", "L1")
    m.serve("127.0.0.1", port)
    st = DaemonStatus(pid=1, started_at=0, beat_at=0, state="running", light="green", job="WO-1",
                      devices={"cij1": {"kind": "coder", "state": "printing", "in_doubt_reconciles": 3}},
                      stations={"cam": {"kind": "verify", "verdicts": {"good": 97, "mismatch": 3}}},
                      alarms=[{"severity": "warning", "source": "sync", "key": "backlog", "detail": ""}],
                      sync={"acks": 12})
    m.update(st, line_running=True)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in ('lineagent_line_running{line="L1",site="s1"} 1.0',
                 'lineagent_verdicts{line="L1",site="s1",station="cam",verdict="good"} 97.0',
                 'lineagent_verdicts{line="L1",site="s1",station="cam",verdict="mismatch"} 3.0',
                 'lineagent_coder_codes_in_doubt{coder="cij1",line="L1",site="s1"} 3.0',
                 'lineagent_alarms{line="L1",severity="warning",site="s1"} 1.0',
                 'lineagent_sync_acked_batches{line="L1",site="s1"} 12.0'):
        assert line in text, line
    assert "python_gc" not in text  # a private registry: only the line's own figures


def test_a_dead_coder_is_an_alarm_on_the_log_and_in_the_journal_with_no_job(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import yaml

    path = make_line(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["devices"] = {"coders": {"cij1": {"type": "leibinger", "url": f"tcp://127.0.0.1:{free_port()}",
                                          "timeout_s": 0.2, "retries": 0}}}
    raw["stations"] = {"printer": {"type": "print", "coder": "cij1"}}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    ledger = Ledger(tmp_path / "ledger.db")
    runtime = LineRuntime(cfg, ledger, status_every_s=0.05)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        for _ in range(600):  # a hang detector
            if any(a.source == "cij1" for a in runtime.board.active) and not runtime.board._changes:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # one more beat journals it
        stop.set()
        await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.WARNING, logger="agent.line.beat"):
        asyncio.run(main())
    try:
        rows = ledger.conn.execute("SELECT kind, payload FROM events WHERE kind = 'alarm.raised'").fetchall()
    finally:
        ledger.close()
    assert any("cij1" in p and "communication" in p for _k, p in rows), rows
    assert any("ALARM cij1/communication" in r.getMessage() for r in caplog.records)


def test_ready_waits_for_the_devices_and_comes_degraded_when_one_stays_dead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    import agent.line.beat

    sock, path = _listener(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setattr(agent.line.beat, "READY_LIMIT_S", 1.0)  # 60 s on a line
    cfg_path = make_line(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["devices"] = {"coders": {"cij1": {"type": "leibinger", "url": f"tcp://127.0.0.1:{free_port()}",
                                          "timeout_s": 0.2, "retries": 0}}}  # nobody listens there
    raw["stations"] = {"printer": {"type": "print", "coder": "cij1"}}
    cfg_path.write_text(yaml.safe_dump(raw))
    ledger = Ledger(tmp_path / "ledger.db")
    runtime = LineRuntime(load_config(cfg_path), ledger, status_every_s=0.05)

    async def main() -> list[dict[str, str]]:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        got: list[dict[str, str]] = []
        loop = asyncio.get_running_loop()
        while not got or "READY" not in got[-1]:
            got.append(_fields(await loop.run_in_executor(None, sock.recv, 4096)))
        stop.set()
        await asyncio.wait_for(task, 30)
        return got

    try:
        got = asyncio.run(main())
    finally:
        ledger.close()
    assert got[0] == {"WATCHDOG": "1", "STATUS": got[0]["STATUS"]}  # beats, but not ready: the coder is dead
    assert got[-1]["READY"] == "1" and got[-1]["STATUS"].startswith("degraded: ")
    assert "1 alarm" in got[-1]["STATUS"]
