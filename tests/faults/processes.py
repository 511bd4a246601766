"""The processes of a fault run: the plant (`lineagent sim line`), the agent (`lineagent run`) and the
CLI, each started from the source tree under test (`python -m agent`), as an operator's shell would.

Why `python -m agent` with PYTHONPATH set to this tree: the venv's console script may point at another
checkout; the harness must kill and audit the code it was written against.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "LANG": "C.UTF-8", "LANGUAGE": "en"}


def cli(*args: str, timeout: float = 180) -> tuple[int, str]:
    """One `lineagent` command, as typed; returns (exit code, stdout + stderr)."""
    try:
        done = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                              timeout=timeout, check=False, env=env())
    except subprocess.TimeoutExpired as exc:  # a hung daemon: the caller notes it, the run goes on
        return 124, f"lineagent {' '.join(args)}: no answer in {timeout:g} s ({exc.stdout or ''})"
    return done.returncode, done.stdout + done.stderr


class PlantProcess:
    """`lineagent sim line` in its own process group (a Ctrl-C at a terminal must not reach it)."""

    def __init__(self, config: Path, workdir: Path, *, rate: float, seed: int, watchdog_s: float,
                 defects: float = 0.06) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.out_path = workdir / "plant.out"
        self._out: IO[str] = self.out_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "sim", "line", "--config", str(config), "--dir", str(workdir),
             "--rate", str(rate), "--seed", str(seed), "--watchdog", str(watchdog_s), "--defects", str(defects)],
            stdout=subprocess.PIPE, stderr=self._out, text=True, env=env(), start_new_session=True)
        self.info: dict[str, Any] = {}

    def wait_ready(self, timeout_s: float = 120) -> dict[str, Any]:
        """The plant's ready line on stdout (it writes it once every device listens)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith('{"ready"'):
                self.info = json.loads(line)["ready"]
                return self.info
        raise RuntimeError(f"the plant did not come up: exit {self.proc.poll()}, {self.out_path.read_text()[-2000:]}")

    def stop(self, timeout_s: float = 60) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
        self._out.close()
        return (rest or "") + self.out_path.read_text()


@dataclass
class Life:
    """One run of the agent between a start and its end (a kill or a clean stop)."""

    number: int
    spawned_at: float  # time.time(): comparable with the ledger's and the plant's times
    pid: int = 0
    ended_at: float | None = None
    end: str = ""  # "sigkill while starting", "sigkill while running", "sigterm"
    exit_code: int | None = None
    first_item: int | None = None  # the first conveyor seq printed in this life
    resumed_s: float | None = None  # from spawn to the first item printed (None: the line never ran)
    nothing_left: bool = False  # the job's target was on products when this life began: no line to run
    notes: list[str] = field(default_factory=list)


class AgentProcess:
    def __init__(self, live_config: Path, log: Path, number: int) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(live_config), "-v"],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
        self.life = Life(number, time.time(), self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, why: str) -> None:
        """SIGKILL: nothing flushed, nothing closed, as a power cut or the OOM killer does it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.life.exit_code = self.proc.wait()
        self.life.ended_at = time.time()
        self.life.end = why
        self._log.close()

    def terminate(self, timeout_s: float = 120) -> int:
        """SIGTERM: the clean stop; returns the exit code (a hang past `timeout_s` is killed and noted)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
            self.life.end = "sigterm"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            self.life.end = f"sigterm ignored for {timeout_s:g} s, killed"
        self.life.exit_code = code
        self.life.ended_at = time.time()
        self._log.close()
        return code
