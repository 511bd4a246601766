"""Per-thread CPU of this process, split into the agent's threads and the simulators' and cloud's.

Why per thread: the line benchmark runs the agent, the simulated plant and the reference receiver in
one process, and only the agent's share counts; and "0.3 of a core" says nothing about what to fix,
while "the ledger writer 0.08, the loop 0.12" does. Linux keeps utime and stime for every thread in
/proc/self/task/<tid>/stat; names come from threading.enumerate() (native threads, such as a library's
worker pool, by their kernel name), and a pool worker is labelled with the agent function it was
running when the period ended (sys._current_frames), so the uplink's long-lived worker shows as such.

The machine is shared: the busy cores of the whole machine over the same period (/proc/stat) say how
much else was running, beside the wall-clock and CPU-time figures.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

TICK = os.sysconf("SC_CLK_TCK")
# Threads of the simulators and the reference receiver: the plant loop, its default executor (asyncio's
# own "asyncio_N" names: the camera renders there; the runtime's pool is renamed, see bench.loopwake),
# the receiver's store worker. The receiver's paho thread is told apart by identity (see Snapshot.take).
FOREIGN_NAMES = re.compile(r"^(plant|asyncio_\d+|receiver-store)$")
OUR_FILES = ("/agent/", "/drivers/")
NOT_OURS = ("/drivers/sim/", "/agent/receiver/", "/bench/")


def thread_cpu(tid: int) -> float:
    """CPU seconds (user + system) of one thread of this process; 0 once it has ended."""
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15 of stat)


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent not idle since boot (all processes)."""
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in cpu[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / TICK


def _doing(frame: FrameType | None) -> str:
    """The outermost agent or driver function on a thread's stack: what a pool worker is for."""
    found = ""
    f = frame
    while f is not None:
        path = f.f_code.co_filename
        if any(p in path for p in OUR_FILES) and not any(p in path for p in NOT_OURS):
            found = f.f_code.co_qualname
        f = f.f_back
    return found


@dataclass
class Snapshot:
    """Every thread's CPU seconds at one moment, with its name and whether it is the agent's."""

    cpu: dict[int, float]
    names: dict[int, str]
    foreign: set[int]
    process_s: float
    machine_s: float

    @classmethod
    def take(cls, foreign_threads: list[threading.Thread]) -> Snapshot:
        by_tid = {t.native_id: t for t in threading.enumerate() if t.native_id}
        frames = sys._current_frames()
        cpu, names, foreign = {}, {}, set()
        for entry in os.scandir("/proc/self/task"):
            tid = int(entry.name)
            cpu[tid] = thread_cpu(tid)
            t = by_tid.get(tid)
            if t is None:
                try:
                    names[tid] = Path(f"/proc/self/task/{tid}/comm").read_text().strip() + " (native)"
                except OSError:
                    names[tid] = f"tid {tid}"
                continue
            doing = _doing(frames.get(t.ident)) if t.ident is not None else ""
            if t is threading.main_thread():
                names[tid] = "loop (MainThread)"
            else:
                names[tid] = t.name + (f" [{doing}]" if doing and "pool" in t.name else "")
            if FOREIGN_NAMES.match(t.name) or any(t is f for f in foreign_threads):
                foreign.add(tid)
        times = os.times()
        return cls(cpu, names, foreign, times.user + times.system, machine_busy_s())

    def agent_s(self) -> float:
        """The process's CPU seconds less the simulators' and receiver's threads that are alive now."""
        return self.process_s - sum(self.cpu[t] for t in self.foreign)


@dataclass
class Period:
    """What the agent's threads, the process and the machine spent between two snapshots."""

    agent_s: float
    process_s: float
    machine_s: float
    threads: list[tuple[str, float]]  # agent threads (name, CPU seconds), heaviest first
    foreign: list[tuple[str, float]]  # the simulators' and receiver's, not counted

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> Period:
        agent = b.agent_s() - a.agent_s()
        grouped: dict[str, float] = defaultdict(float)
        foreign: dict[str, float] = defaultdict(float)
        for tid, cpu in b.cpu.items():
            into = foreign if tid in b.foreign or tid in a.foreign else grouped
            into[_group(b.names[tid])] += cpu - a.cpu.get(tid, 0.0)
        listed = sum(grouped.values())
        if abs(agent - listed) >= 0.01:  # threads that ended within the period, and tick rounding
            grouped["(ended threads, rounding)"] += agent - listed
        return cls(agent, b.process_s - a.process_s, b.machine_s - a.machine_s, _heaviest(grouped),
                   _heaviest(foreign))

    def breakdown(self, wall_s: float, top: int = 8, *, foreign: bool = False) -> str:
        """'loop (MainThread) 0.120, ledger-writer:… 0.080, …' in cores over wall_s."""
        threads = self.foreign if foreign else self.threads
        shown = [f"{name} {cpu / wall_s:.3f}" for name, cpu in threads[:top] if cpu / wall_s >= 0.001]
        rest = sum(cpu for _, cpu in threads[top:])
        if rest / wall_s >= 0.001:
            shown.append(f"{len(threads) - top} others {rest / wall_s:.3f}")
        return ", ".join(shown)


def _group(name: str) -> str:
    """A pool's workers as one entry ('agent-pool_3' -> 'agent-pool'), unless labelled by what it runs."""
    return name if "[" in name else re.sub(r"_\d+$", "", name)


def _heaviest(by_name: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(by_name.items(), key=lambda x: -x[1])
