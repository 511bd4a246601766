"""Line figures: the agent's own CPU share running the simulated line at 2,000 items/min, and how often
its loop wakes.

What is measured: CPU time (user + system) of the agent's threads only, over wall time, while the line
runs at 2,000 items/min: the runtime's loop, its worker threads (decode and grade, ledger writes), the
packing thread and the MQTT uplink. The simulators (the plant thread: coder on a pty, pymodbus PLC,
camera rendering, ZPL printer; and its loop's executor threads, if any) and the reference receiver's
threads run in the same process but are subtracted per thread (bench/threadcpu.py), so the figure is what the agent
would cost on the line PC. The note breaks it down by thread and gives wall time, the agent's CPU
seconds, the whole process's and the whole machine's busy cores beside each other: the machine is
shared, and a neighbour shows there.

Baselines (issue 10): the same daemon with every device connected and polled and no job at all (the
PLC cycle, the status beat, the device probe, the uplink): what the agent costs sitting on a line that
is not producing. A second figure gives the agent with the job running, coder primed and belt running,
but no products arriving (SimSettings.infeed=False), against the same no-job baseline: what being ready
costs before a single item. busy - no-job, per item, is the cost of an item.

Loop wakeups (bench/loopwake.py): how often the runtime's loop went to sleep in select() and was woken,
by an I/O event, a worker thread's call_soon_threadsafe, or a timer falling due.

The figures only count when the line really ran at that speed: the note says "valid" when, over the
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
from bench.loopwake import Counts, LoopProbe
from bench.threadcpu import Period, Snapshot

RATE = 2000.0
# Wakeups a second the loop may take at 2,000 items/min: 33 items/s, each a handful of events (the
# PLC counter moving, the camera's image, the decode coming back, the verdict's write committed, the
# gate fired): 6 an item is 200/s. Short polls (5-20 ms periods) would add 50-200/s each on their own.
WAKEUP_TARGET = 200.0


def _foreign_threads(sim: SimulatedLine) -> list[threading.Thread]:
    """The plant thread and the receiver's paho thread: simulators and the cloud side, not the agent."""
    paho = getattr(sim.receiver.client, "_thread", None) if sim.receiver is not None else None
    return [t for t in threading.enumerate() if t is sim._thread or t is paho]


@dataclass
class Sample:
    """One measured period: the agent's CPU, its loop's wakeups and what the line did meanwhile."""

    wall_s: float
    period: Period  # CPU seconds: the agent's (by thread), the process's, the machine's
    loop: Counts  # the runtime loop's turns and wakeups over the period
    produced: int  # items past the print head (the PLC counter)
    judged: int  # verdicts reported by the verify station
    stops: int  # alarms of the verify station (a line stop each)
    p99_ms: float  # image arrival -> verdict decided (reject fired), as the station saw it

    @property
    def cpu(self) -> float:
        """The agent's cores: its CPU seconds over wall seconds."""
        return self.period.agent_s / self.wall_s

    @property
    def wakeups(self) -> float:
        return self.loop.wakeups / self.wall_s

    def wake_causes(self) -> str:
        w, lp = self.wall_s, self.loop
        pool = ", ".join(f"{name} {n / w:.0f}" for name, n in lp.pool.most_common(4) if n / w >= 0.5)
        return (f"{self.wakeups:.0f}/s ({lp.io / w:.0f} I/O, {lp.thread / w:.0f} from worker threads, "
                f"{lp.timer / w:.0f} timers; {lp.turns / w:.0f} loop turns/s; to_thread calls "
                f"{lp.pool.total() / w:.0f}/s{': ' + pool if pool else ''})")

    def cpu_facts(self) -> str:
        p, w = self.period, self.wall_s
        return (f"{w:.1f} s wall, agent {p.agent_s:.2f} CPU-s ({p.agent_s / w:.3f} cores), whole process with "
                f"simulators {p.process_s / w:.2f} cores, whole machine busy {p.machine_s / w:.2f} of "
                f"{os.cpu_count()} cores")


def measure(workdir: Path, *, seconds: float, with_job: bool, infeed: bool = True) -> Sample:
    """The agent over `seconds` of steady running (after start-up)."""
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(workdir, 5000, Console(file=sink))
    cfg = _wide_window(cfg)
    sim = SimulatedLine(cfg, workdir, SimSettings(rate_per_min=RATE, infeed=infeed))
    live = sim.start()
    ledger = Ledger(live.resolve(live.storage.ledger), group_window_s=live.storage.group_commit_ms / 1000)
    probe = LoopProbe()
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
            foreign = _foreign_threads(sim)
            s0, n0, w0 = Snapshot.take(foreign), probe.counts(), time.monotonic()
            await asyncio.sleep(seconds)
            s1, n1, w1 = Snapshot.take(foreign), probe.counts(), time.monotonic()
            judged, produced = _judged(runtime) - judged0, plc.counter - produced0
            lat = sorted(_latencies(runtime)[lat0:])
            stops = sum(len(v.station.alarms) for v in runtime.verifiers.values() if v.station is not None)
            stop.set()
            await asyncio.wait_for(task, 60)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
            return Sample(w1 - w0, Period.between(s0, s1), n1 - n0, produced, judged, stops, p99)

        with asyncio.Runner(loop_factory=probe.new_loop) as runner:
            return runner.run(scenario())
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
    base_s = 15.0 if quick else 30.0
    root = Path(tempfile.mkdtemp(prefix="bench-line-"))
    try:
        no_job = measure(root / "no-job", seconds=base_s, with_job=False, infeed=False)
        ready = measure(root / "ready", seconds=base_s, with_job=True, infeed=False)
        busy = measure(root / "busy", seconds=seconds, with_job=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_s = busy.produced / busy.wall_s
    valid = busy.stops == 0 and busy.produced > 0 and busy.judged >= busy.produced * 0.98
    line = (f"{'valid' if valid else 'NOT VALID'}: {busy.produced} items produced and {busy.judged} judged in "
            f"{busy.wall_s:.0f} s ({per_s * 60:.0f}/min), {busy.stops} line stops, verify p99 {busy.p99_ms:.1f} ms "
            "(image arrival to verdict, in the line)")
    per_item = (busy.cpu - no_job.cpu) / per_s * 1000 if per_s else 0.0
    return {
        "line.cpu_share_at_2000_per_min": Figure(
            busy.cpu, "cores", no_job.cpu, 0.10,
            note=f"{line}; agent threads only (simulators and receiver subtracted): {busy.cpu_facts()}; "
                 f"{per_item:.2f} ms of agent CPU per item above the baseline; by thread (cores): "
                 f"{busy.period.breakdown(busy.wall_s)}. Baseline: the same daemon, every device connected and "
                 f"polled, no job: {no_job.cpu_facts()}; by thread: {no_job.period.breakdown(no_job.wall_s, 5)}",
            higher_is_better=False),
        "line.cpu_share_ready_no_items": Figure(
            ready.cpu, "cores", no_job.cpu, None,
            note=f"the job running, coder primed, belt running, no products arriving: {ready.cpu_facts()}; by "
                 f"thread (cores): {ready.period.breakdown(ready.wall_s, 6)}; baseline: connected and polled, no "
                 "job (as line.cpu_share_at_2000_per_min)",
            higher_is_better=False),
        "line.loop_wakeups_per_s": Figure(
            busy.wakeups, "wakeups/s", no_job.wakeups, WAKEUP_TARGET,
            note=f"{line}; the runtime loop slept in select() and was woken {busy.wake_causes()}; baseline, no "
                 f"job: {no_job.wake_causes()}; job running, no products: {ready.wake_causes()}. Target: 33 "
                 "items/s each needing a handful of events (counter, image, decode done, write committed, "
                 "gate), about 6 an item; issue 10: event driven, not 5-20 ms polls",
            higher_is_better=False),
    }


def _main() -> None:
    """`python -m bench.line --seconds N`: one scenario alone (busy by default), for bench.profile to
    sample and for a quick look while working on the agent's CPU."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--no-job", action="store_true", help="the baseline: connected and polled, no job")
    ap.add_argument("--no-infeed", action="store_true", help="the job running, no products arriving")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    try:
        sample = measure(root / "run", seconds=args.seconds, with_job=not args.no_job,
                         infeed=not (args.no_job or args.no_infeed))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"cpu {sample.cpu:.3f} cores, produced {sample.produced}, judged {sample.judged}, stops {sample.stops}")
    print(f"  {sample.cpu_facts()}")
    print(f"  loop wakeups {sample.wake_causes()}")
    print(f"  by thread (cores): {sample.period.breakdown(sample.wall_s, 12)}")
    print(f"  not counted (simulators, receiver): {sample.period.breakdown(sample.wall_s, 6, foreign=True)}")


if __name__ == "__main__":
    _main()
