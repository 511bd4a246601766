"""Line figure: the agent's own CPU share running the simulated line at 2,000 items/min.

What is measured: CPU time (user + system) of the agent's threads only, over wall time, while the line
runs at 2,000 items/min: the runtime's loop, its worker threads (decode and grade, ledger writes), the
packing thread and the MQTT uplink thread. The simulators (the plant thread: coder on a pty, pymodbus
PLC, camera rendering, ZPL printer) and the reference receiver's paho thread run in the same process
but are subtracted per thread from /proc/self/task/<tid>/stat, so the figure is what the agent would
cost on the line PC.

Baseline, same run: the same agent with the same job running, every device connected and polled, the
coder primed and the belt running, but no products arriving (SimSettings.infeed=False): what being
connected and ready costs before a single item. The difference is the per-item cost.

The figure only counts when the line really ran at that speed: the note says "valid" when, over the
measured period, the verify station judged (at least 98% of) every item the plant produced and no line
stop happened; it also gives the verify p99 (image arrival to verdict, reject fired) as the line saw it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
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


@dataclass
class Sample:
    """One measured period: the agent's CPU share and what the line did meanwhile."""

    cpu: float
    produced: int  # items past the print head (the PLC counter)
    judged: int  # verdicts reported by the verify station
    stops: int  # alarms of the verify station (a line stop each)
    p99_ms: float  # image arrival -> verdict decided (reject fired), as the station saw it


def measure(workdir: Path, *, seconds: float, with_job: bool, infeed: bool = True) -> Sample:
    """The agent over `seconds` of steady running (after start-up)."""
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(workdir, 5000, Console(file=sink))
    cfg = _wide_window(cfg)
    sim = SimulatedLine(cfg, workdir, SimSettings(rate_per_min=RATE, infeed=infeed))
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
        plc = next(iter(sim.plcs.values())).model

        async def scenario() -> Sample:
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            for _ in range(400):  # up to 20 s for the coder to be primed and the conveyor started
                if not with_job or runtime.line_running:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.0)  # past start-up: priming, first packs, first sync batches
            judged0, produced0, lat0 = _judged(runtime), plc.counter, len(_latencies(runtime))
            c0, w0 = _agent_cpu(sim), time.monotonic()
            await asyncio.sleep(seconds)
            c1, w1 = _agent_cpu(sim), time.monotonic()
            judged, produced = _judged(runtime) - judged0, plc.counter - produced0
            lat = sorted(_latencies(runtime)[lat0:])
            stops = sum(len(v.station.alarms) for v in runtime.verifiers.values() if v.station is not None)
            stop.set()
            await asyncio.wait_for(task, 60)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
            return Sample((c1 - c0) / (w1 - w0), produced, judged, stops, p99)

        return asyncio.run(scenario())
    finally:
        ledger.close()
        sim.stop()


def _latencies(runtime: LineRuntime) -> list[float]:
    return [x for v in runtime.verifiers.values() if v.station is not None for x in v.station.latency_s]


def _wide_window(cfg: LineConfig) -> LineConfig:
    """At 30 ms a pitch the demo's 5-pitch read window is 150 ms; a real line at this speed puts the
    gate further downstream. 12 pitches (360 ms) of window, gate at 18. The demo's 24-code FIFO is
    0.7 s of printing at this speed, less than one slow fsync burst on a shared disk: 64 codes (2 s),
    as a site running this fast would configure it. poll_ms 15: the counter is read at the line's pitch
    (agent/verify/pacing.py) and when a frame arrives; 15 ms is the interval only until the pitch is known
    and while the belt runs empty (the baseline), where 5 ms would read it six times a pitch."""
    assert cfg.source is not None
    raw = yaml.safe_load(cfg.source.read_text())
    raw["stations"]["camera"]["verify"].update(read_window=12, gate_at=18, max_consecutive_rejects=10, poll_ms=15)
    raw["stations"]["printer"]["feed"].update(target_depth=64, push_chunk=16)
    cfg.source.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(cfg.source)


def _judged(runtime: LineRuntime) -> int:
    return sum(v.station.counts.total() for v in runtime.verifiers.values() if v.station is not None)


def run(quick: bool) -> dict[str, Figure]:
    seconds = 30.0 if quick else 120.0
    root = Path(tempfile.mkdtemp(prefix="bench-line-"))
    try:
        idle = measure(root / "idle", seconds=min(seconds, 15.0), with_job=True, infeed=False)
        busy = measure(root / "busy", seconds=seconds, with_job=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_min = busy.produced / seconds * 60
    valid = busy.stops == 0 and busy.produced > 0 and busy.judged >= busy.produced * 0.98
    return {
        "line.cpu_share_at_2000_per_min": Figure(
            round(busy.cpu, 3), "cores", round(idle.cpu, 3), 0.10,
            note=f"{'valid' if valid else 'NOT VALID'}: {busy.produced} items produced and {busy.judged} judged "
                 f"in {seconds:.0f} s ({per_min:.0f}/min), {busy.stops} line stops, verify p99 "
                 f"{busy.p99_ms:.1f} ms (image arrival to verdict, in the line); agent threads only "
                 "(simulators and receiver subtracted); baseline: same agent, same job, devices connected and "
                 "polled, no products arriving",
            higher_is_better=False),
    }


def _main() -> None:
    """`python -m bench.line --seconds N`: the busy scenario alone, for bench.profile to sample."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    try:
        sample = measure(root / "busy", seconds=args.seconds, with_job=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"cpu {sample.cpu:.3f} cores, produced {sample.produced}, judged {sample.judged}, stops {sample.stops}")


if __name__ == "__main__":
    _main()
