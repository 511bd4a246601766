"""The demo stops cleanly on the first Ctrl-C: SIGINT to its whole process group, as a terminal sends it,
stops the line through the runtime's stop event; the summary is printed, every invariant holds on what
ran, and the exit code is 130, with no traceback."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _items(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created or not migrated yet


def test_first_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    items = 600  # a minute at 600/min: the Ctrl-C lands well before the end on a busy machine too
    proc = subprocess.Popen(
        [sys.executable, "-c", "from agent.cli.main import main; main()", "demo", "--dir", str(work),
         "--items", str(items), "--no-broker-restart"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
    try:
        db = work / "ledger.db"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and _items(db) < 10:
            time.sleep(0.2)  # waiting on another process
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole foreground group
        out_b, err_b = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out, err = out_b.decode(), err_b.decode()
    assert "Traceback" not in out + err, out + err
    assert proc.returncode == 130, out + err
    assert "stopped by Ctrl-C" in out
    assert "invariants" in out and "FAILED" not in out, out
    assert "the receiver holds every uplink event exactly once" in out  # the broker outlived the Ctrl-C
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        states = dict(conn.execute("SELECT state, COUNT(*) FROM codes WHERE level = 'item' AND job IS NOT NULL "
                                   "GROUP BY state"))
        job_state = conn.execute("SELECT state FROM jobs").fetchone()[0]
    finally:
        conn.close()
    printed = sum(states.get(s, 0) for s in ("printed", "verified", "rejected"))
    assert 10 <= printed < items, states  # stopped part way
    assert states.get("sent", 0) == 0 and states.get("allocated", 0) == 0, states  # every code accounted for
    assert job_state == "finished"
    # the figures the summary prints are the ledger's
    for state, n in states.items():
        assert f"item codes {state}" in out and f" {n} " in out.split(f"item codes {state}", 1)[1][:60]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/setup installs it)")
def test_live_progress_on_a_terminal_and_a_real_ctrl_c(tmp_path: Path) -> None:
    """On an 80x24 tmux pane: the progress rows move while the line runs; C-c typed at the terminal."""
    work, rc = tmp_path / "demo", tmp_path / "rc"
    cli = shlex.join([sys.executable, "-c", "from agent.cli.main import main; main()", "demo", "--dir", str(work),
                      "--items", "600", "--no-broker-restart"])
    tmux = ["tmux", "-L", f"demo-test-{os.getpid()}", "-f", "/dev/null"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", "-s", "demo",
                    f"cd {ROOT} && {cli}; echo $? > {rc}; sleep 120"], check=True, env={**env, "TERM": "xterm"})
    try:
        seen: list[int] = []
        for _ in range(360):  # until two frames show different printed counts; no timed assert
            time.sleep(0.5)
            m = re.search(r"printed .*? (\d+)/600", _pane(tmux))
            if m and int(m.group(1)) > 0 and (not seen or int(m.group(1)) != seen[-1]):
                seen.append(int(m.group(1)))
            if len(seen) >= 2:
                break
        assert len(seen) >= 2 and seen[-1] > seen[0], _pane(tmux)
        assert re.search(r"judged .*? \d+/600 +good \d+", _pane(tmux)), _pane(tmux)
        subprocess.run([*tmux, "send-keys", "-t", "demo", "C-c"], check=True)
        for _ in range(600):
            if rc.exists() and rc.read_text().strip():
                break
            time.sleep(0.5)
        history = _pane(tmux, "-S", "-300")
        assert rc.read_text().strip() == "130", history
        assert "Traceback" not in history and "stopped by Ctrl-C" in history and "FAILED" not in history, history
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


def _pane(tmux: list[str], *extra: str) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p", "-t", "demo", *extra], capture_output=True, text=True,
                          check=False).stdout
