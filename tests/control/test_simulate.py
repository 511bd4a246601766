"""`lineagent run --simulate` and the README's tour against it, each command in its own process as an
operator types them in a second terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LINEAGENT = str(Path(sys.executable).parent / "lineagent")


def _cli(*args: str) -> tuple[int, str]:
    done = subprocess.run([LINEAGENT, *args], capture_output=True, text=True, timeout=180, check=False,
                          env={**os.environ, "COLUMNS": "200"})
    return done.returncode, done.stdout + done.stderr


def test_the_tour_against_a_simulated_line(tmp_path: Path) -> None:
    work = tmp_path / "sim"
    proc = subprocess.Popen([LINEAGENT, "run", "--simulate", "--dir", str(work), "--rate", "600"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        seen = ""
        deadline = time.monotonic() + 120  # key generation, packages, simulators: a hang detector
        while "simulated line running" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "simulated line running" in seen, seen
        conf = ["--config", str(work / "line.live.yaml")]
        code, out = _cli("job", "create", "WO-1", "--product", "water500", "--lot", "L1", "--qty", "60",
                         "--packing-spec", "6x4x40", *conf)
        assert code == 0, out
        code, out = _cli("job", "start", "WO-1", *conf)
        assert code == 0 and "running" in out, out
        printed = 0
        while time.monotonic() < deadline + 120 and printed < 12:
            code, out = _cli("status", "--json", *conf)
            assert code == 0, out
            report = json.loads(out)
            printed = sum(report["job"]["codes"].get(k, 0) for k in ("printed", "verified", "rejected"))
            time.sleep(0.5)  # polling another process from a plain test, not async code
        assert printed >= 12, report
        code, out = _cli("job", "stop", "WO-1", *conf)
        assert code == 0 and "stopped (by the running daemon)" in out, out
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, rest
    assert "simulated line stopped cleanly" in rest
    assert "Traceback" not in rest
