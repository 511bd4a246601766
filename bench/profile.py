"""Where the line's CPU goes: a sampling profile of the simulated line at 2,000 items/min.

Why py-spy and a child process: the agent's time is spread over its loop and worker threads, and a
profiler inside the process (cProfile, pyinstrument) sees one thread and slows what it watches. py-spy
samples every thread of another process from outside at 100 Hz, and by default only threads that are
running, so waiting shows as nothing. The child runs bench.line's busy scenario; stacks that pass
through the simulators (drivers/sim/) or the reference receiver (agent/receiver/) are the plant and the
cloud side, and are counted apart from the agent's.

Output: bench/profile.txt (not committed): the agent's heaviest own frames (a library frame is charged
to the nearest agent/ or drivers/ frame that called it), and the share per module; docs/benchmarks.md
quotes its head.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import Figure

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+):(?P<line>\d+)\)$")
OURS = ("agent/", "drivers/")
FOREIGN = ("drivers/sim/", "agent/receiver/", "bench/")
RATE_HZ = 100


def _ours(file: str) -> bool:
    return any(f"/{p}" in f"/{file}" for p in OURS) and not any(f"/{p}" in f"/{file}" for p in FOREIGN)


def _parse(raw: str) -> tuple[collections.Counter[str], collections.Counter[str], int, int]:
    """(frame -> samples, module -> samples, agent samples, plant/cloud samples)."""
    frames: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
    agent = foreign = 0
    for line in raw.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        parsed = [m for f in stack.split(";") if (m := FRAME.match(f.strip()))]
        if any(any(p in m["file"] for p in FOREIGN) for m in parsed):
            foreign += count
            continue
        agent += count
        own = next((m for m in reversed(parsed) if _ours(m["file"])), None)
        if own is None:
            inner = parsed[-1]["file"].split("site-packages/")[-1].split("python3.11/")[-1] if parsed else "?"
            frames[f"(no agent frame) {inner}"] += count
            continue
        module = own["file"].split("site-packages/")[-1]
        module = module[module.find("agent/") if "agent/" in module else module.find("drivers/"):]
        frames[f"{own['func']} ({module})"] += count
        modules[module] += count
    return frames, modules, agent, foreign


def run(quick: bool) -> dict[str, Figure]:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[dev]')")
    seconds = 20 if quick else 60
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.txt"
        cmd = [spy, "record", "-r", str(RATE_HZ), "-f", "raw", "-o", str(raw), "--nonblocking", "--",
               sys.executable, "-m", "bench.line", "--seconds", str(seconds)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180, check=False)
        if done.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr[-2000:]}")
        frames, modules, agent, foreign = _parse(raw.read_text())
    total = max(agent, 1)
    lines = [f"agent samples {agent}, plant + receiver samples {foreign} (100 Hz, running threads only, "
             f"whole run incl. start-up)", "", "heaviest agent frames (self + libraries they call):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in frames.most_common(25)]
    lines += ["", "by module:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in modules.most_common(15)]
    Path("bench").mkdir(exist_ok=True)
    Path("bench/profile.txt").write_text("\n".join(lines) + "\n")
    top = frames.most_common(1)[0][0] if frames else "nothing"
    return {
        "profile.agent_cpu_samples": Figure(
            agent / RATE_HZ, "cpu-s", None, None,
            note=f"CPU seconds of agent threads sampled over a {seconds} s run at 2,000 items/min (with "
                 f"start-up); heaviest frame: {top}; see bench/profile.txt"),
    }
