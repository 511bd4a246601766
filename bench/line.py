"""Line figure: the agent's own CPU share running the simulated line at 2,000 items/min.

What is measured: CPU time (user + system) of the agent's threads only, over wall time, while the line
runs at 2,000 items/min: the runtime's loop, its worker threads (decode and grade, ledger writes), the
packing thread and the MQTT uplink thread. The simulators (the plant thread: coder on a pty, pymodbus
PLC, camera rendering, ZPL printer) and the reference receiver's paho thread run in the same process
but are subtracted per thread from /proc/self/task/<tid>/stat, so the figure is what the agent would
cost on the line PC.

Baseline, same run: the same agent with every device connected and polled but no job (the conveyor
stands still), i.e. what being connected costs before a single item. The difference is the per-item
cost; the target is under half a core at full line speed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import yaml
from rich.console import Console

from agent.config import LineConfig, load_config
from agent.demo import _label_readers, prepare
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import Ledger
from agent.line.runtime import LineRuntime
from agent.line.simulated import SimSettings, SimulatedLine
from bench import Figure

RATE = 2000.0
TICK = os.sysconf("SC_CLK_TCK")


def _thread_cpu(tid: int) -> float:
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15 of stat)


def _foreign_tids(sim: SimulatedLine) -> list[int]:
    """The plant thread and the receiver's paho thread: simulators and the cloud side, not the agent."""
    paho = getattr(sim.receiver.client, "_thread", None) if sim.receiver is not None else None
    return [t.native_id for t in threading.enumerate() if t.native_id and (t is sim._thread or t is paho)]


def _agent_cpu(sim: SimulatedLine) -> float:
    t = os.times()
    return t.user + t.system - sum(_thread_cpu(tid) for tid in _foreign_tids(sim))


def measure(workdir: Path, *, seconds: float, with_job: bool) -> tuple[float, int]:
    """(agent CPU share, items judged) over `seconds` of steady running."""
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(workdir, 5000, Console(file=sink))
    cfg = _wide_window(cfg)
    sim = SimulatedLine(cfg, workdir, SimSettings(rate_per_min=RATE))
    live = sim.start()
    ledger = Ledger(live.resolve(live.storage.ledger), group_window_s=live.storage.group_commit_ms / 1000)
    try:
        if with_job:
            job = create_job(ledger, JobSpec(name="WO-BENCH", gtin="09506000134352", product_name="water",
                                             lot="B1", target_qty=5000, template="dl", packing_spec="6x4x40"))
            start_job(ledger, job)
        runtime = LineRuntime(live, ledger, overrides=sim.overrides(),
                              read_labels=_label_readers(sim, live, workdir / "labels"))
        (workdir / "labels").mkdir(exist_ok=True)

        async def scenario() -> tuple[float, int]:
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            for _ in range(400):  # up to 20 s for the coder to be primed and the conveyor started
                if not with_job or runtime.line_running:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.0)  # past start-up: priming, first packs, first sync batches
            judged0 = _judged(runtime)
            c0, w0 = _agent_cpu(sim), time.monotonic()
            await asyncio.sleep(seconds)
            c1, w1 = _agent_cpu(sim), time.monotonic()
            judged = _judged(runtime) - judged0
            stop.set()
            await asyncio.wait_for(task, 60)
            return (c1 - c0) / (w1 - w0), judged

        return asyncio.run(scenario())
    finally:
        ledger.close()
        sim.stop()


def _wide_window(cfg: LineConfig) -> LineConfig:
    """At 30 ms a pitch the demo's 5-pitch read window is 150 ms; a real line at this speed puts the
    gate further downstream. 12 pitches (360 ms) of window, gate at 18."""
    assert cfg.source is not None
    raw = yaml.safe_load(cfg.source.read_text())
    raw["stations"]["camera"]["verify"].update(read_window=12, gate_at=18, max_consecutive_rejects=10)
    cfg.source.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(cfg.source)


def _judged(runtime: LineRuntime) -> int:
    return sum(v.station.counts.total() for v in runtime.verifiers.values() if v.station is not None)


def run(quick: bool) -> dict[str, Figure]:
    seconds = 30.0 if quick else 120.0
    root = Path(tempfile.mkdtemp(prefix="bench-line-"))
    try:
        idle, _ = measure(root / "idle", seconds=min(seconds, 15.0), with_job=False)
        busy, judged = measure(root / "busy", seconds=seconds, with_job=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_min = judged / seconds * 60
    return {
        "line.cpu_share_at_2000_per_min": Figure(
            round(busy, 3), "cores", round(idle, 3), 0.5,
            note=f"agent threads only (simulators and receiver subtracted); {judged} items judged in "
                 f"{seconds:.0f} s = {per_min:.0f}/min; baseline: same agent connected, no job",
            higher_is_better=False),
    }
