"""End to end on the simulated line: real coder sim on a pty, real pymodbus PLC, real images through the
real decoder, real mosquitto and receiver; and the daemon's clean shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from agent.demo import run_demo
from agent.line.status import read_status, status_path


def test_simulated_line_keeps_every_invariant(tmp_path: Path) -> None:
    with Path(os.devnull).open("w") as sink:
        report = run_demo(tmp_path / "line", items=72, fresh=True, console=Console(file=sink),
                          rate_per_min=600.0, broker_restart=True)
    failed = [c for c in report.checks if not c.ok]
    assert failed == []
    names = {c.name for c in report.checks}
    assert "the receiver holds every uplink event exactly once" in names
    assert "no code printed twice" in names


def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    from agent.codes.package import generate_keys

    generate_keys(tmp_path / "keys", kind="ed25519")
    cfg = tmp_path / "line.yaml"
    cfg.write_text("site: {id: s}\nline: {id: L1}\nstorage: {ledger: ledger.db}\n"
                   "security: {cloud_public_key: keys/public.pem}\n")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "lineagent"), "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])
    path = status_path(tmp_path / "ledger.db")
    deadline = time.monotonic() + 20
    st = read_status(path)
    while time.monotonic() < deadline and (st is None or st.state != "idle"):
        time.sleep(0.05)  # waiting on another process, not in async code
        st = read_status(path)
    assert st is not None and st.alive() and st.pid == proc.pid
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert b"stopped cleanly" in out
    final = read_status(path)
    assert final is not None and final.state == "stopped"
