"""The daemon's heartbeat and status record, and the view `lineagent status` builds from it.

Why a JSON file beside the ledger (`<ledger>.status.json`) and not a ledger table: the record is a
transient view rewritten every half second, not a fact. Writing it into the ledger would add a write
transaction per beat to the file whose fsyncs pace the line, and it would sit in the journal/backup for
ever. The file is replaced atomically (write + rename), so a reader never sees half a record. Facts
(job progress, verdicts, packs, sync backlog) are read from the ledger itself, read-only, so `status`
is true even when the daemon is dead; the file adds what only the running daemon knows (device states,
FIFO depths, active alarms) and its heartbeat says whether that part is current. The heartbeat's age is
measured on the boot clock the record carries (agent/clock.py), so a clock set back does not keep a dead
daemon "alive" for the size of the jump.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.clock import Stamp, boot_id, elapsed, since_boot

STALE_AFTER_S = 5.0  # a heartbeat older than this: the daemon is not running (or hung)


def status_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".status.json")


@dataclass
class DaemonStatus:
    pid: int
    started_at: float
    beat_at: float
    state: str  # runtime state (agent.line.jobrun.RuntimeState)
    light: str
    job: str | None = None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {kind, state, detail, ...}
    stations: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    sync: dict[str, Any] = field(default_factory=dict)
    # The beat on the boot clock, taken when the record is made (None in records of older versions).
    beat_boot: str | None = field(default_factory=boot_id)
    beat_since_boot: float | None = field(default_factory=since_boot)

    def age(self, now: float | Stamp | None = None) -> float:
        """Seconds since the beat: by the boot clock when `now` is a reading of this boot."""
        if now is None:
            now = Stamp(time.time(), boot_id(), since_boot())
        elif not isinstance(now, Stamp):
            now = Stamp(now)
        return elapsed(Stamp(self.beat_at, self.beat_boot, self.beat_since_boot), now)

    def alive(self, now: float | Stamp | None = None) -> bool:
        return self.age(now) < STALE_AFTER_S


def write_status(path: Path, status: DaemonStatus) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(status), default=str))
    tmp.replace(path)


def read_status(path: Path) -> DaemonStatus | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # being replaced or damaged: the next beat rewrites it
    data.setdefault("beat_boot", None)  # an older record: its age is measured by the wall clock
    data.setdefault("beat_since_boot", None)
    return DaemonStatus(**data)


@dataclass(frozen=True)
class JobProgress:
    job: str
    state: str
    target: int
    codes: dict[str, int]  # code state -> count (allocated, sent, printed, verified, rejected, ...)
    rejects: dict[str, int]  # verdict -> count
    packs: dict[str, int]  # level -> closed packs


def job_progress(conn: sqlite3.Connection) -> JobProgress | None:
    """The running job (else the newest one) and where its codes are; read-only queries."""
    row = conn.execute("SELECT id, name, state, target_qty FROM jobs ORDER BY state = 'running' DESC, id DESC"
                       " LIMIT 1").fetchone()
    if row is None:
        return None
    job = int(row[0])
    codes = {str(s): int(n) for s, n in conn.execute(
        "SELECT state, COUNT(*) FROM codes WHERE job = ? AND level = (SELECT level FROM jobs WHERE id = ?)"
        " GROUP BY state", (job, job))}
    rejects = {str(v): int(n) for v, n in conn.execute(
        "SELECT verdict, COUNT(*) FROM items WHERE job = ? AND verdict != 'good' GROUP BY verdict", (job,))}
    packs = {str(lv): int(n) for lv, n in conn.execute(
        "SELECT level, COUNT(*) FROM packs WHERE job = ? GROUP BY level", (job,))}
    return JobProgress(str(row[1]), str(row[2]), int(row[3]), codes, rejects, packs)

