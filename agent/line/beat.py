"""The daemon's beat: the status record, systemd's watchdog and status line, the metrics, and every
alarm raise and clear on the log and in the journal.

Why one task from one snapshot: the record, the STATUS= line and the metrics must tell the same story,
and the runtime's dicts are only read on the loop that changes them; the snapshot is taken there and
only the file is written in a thread. Why the beat feeds systemd's watchdog: WATCHDOG=1 then proves the
loop runs (a hung loop is restarted, not only a dead process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.jobs import Job
from agent.ledger import Ledger, LedgerError
from agent.line.alarms import AlarmBoard, AlarmChange, Severity
from agent.line.metrics import LineMetrics
from agent.line.notify import Notifier
from agent.line.resources import ResourceGuard
from agent.line.status import DaemonStatus, write_status

if TYPE_CHECKING:
    from enum import StrEnum

    from agent.line.packing import PackLine
    from agent.line.printing import PrintStation
    from agent.line.verifying import VerifyRunner
    from agent.sync.uplink import Uplink

log = logging.getLogger(__name__)

READY_LIMIT_S = 60.0  # READY=1 at the latest this long after start, devices up or not (TimeoutStartSec=120)


class Line(Protocol):
    """What the beat reads of the runtime (agent/line/runtime.py LineRuntime)."""

    @property
    def ledger(self) -> Ledger: ...
    @property
    def board(self) -> AlarmBoard: ...
    @property
    def resources(self) -> ResourceGuard: ...
    @property
    def notifier(self) -> Notifier: ...
    @property
    def metrics(self) -> LineMetrics | None: ...
    @property
    def status_every_s(self) -> float: ...
    @property
    def status_file(self) -> Path: ...
    @property
    def started_at(self) -> float: ...
    @property
    def state(self) -> StrEnum: ...
    @property
    def current(self) -> Job | None: ...
    @property
    def line_running(self) -> bool: ...
    @property
    def printers(self) -> dict[str, PrintStation]: ...
    @property
    def verifiers(self) -> dict[str, VerifyRunner]: ...
    @property
    def packline(self) -> PackLine | None: ...
    @property
    def uplink(self) -> Uplink | None: ...
    @property
    def devices_checked(self) -> asyncio.Event: ...

    def snapshot(self) -> DaemonStatus: ...


class Beat:
    def __init__(self, line: Line) -> None:
        self.line = line

    async def run(self, stop: asyncio.Event) -> None:
        """The status record, systemd's watchdog and the metrics, from one snapshot taken on the loop
        (the runtime's dicts are only read where they are changed; the file is written in a thread)."""
        line = self.line
        every = line.status_every_s
        wd = line.notifier.watchdog_interval_s()
        if wd is not None:
            every = min(every, wd)
        ready = False
        began = time.monotonic()
        while not stop.is_set():
            await self.report_alarms()
            snap = line.snapshot()  # looked up on the runtime each time (a test replaces it)
            await asyncio.to_thread(self.write, snap)
            text = summary(snap)
            if not ready:
                ready = self._ready(text, time.monotonic() - began)
            line.notifier.beat(text)
            if line.metrics is not None:
                line.metrics.update(snap, line.line_running)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()
        line.notifier.stopping("stopping: reconciling coders and committing the ledger")

    def _ready(self, text: str, waited_s: float) -> bool:
        """READY=1 once the devices were looked at: the first probe with no job, or the belt running with
        one (every coder primed, every PLC took the run command). A device that stays dead must not keep
        systemd's start waiting until TimeoutStartSec kills and restarts a daemon that would only find it
        dead again: after READY_LIMIT_S it is READY, degraded, its alarms on the log and the status line."""
        line = self.line
        if line.devices_checked.is_set() or line.line_running:
            line.notifier.ready(text)
            return True
        if waited_s < READY_LIMIT_S:
            return False
        down = sorted({f"{a.source}/{a.key}" for a in line.board.active})
        log.error("ready after %.0f s without every device up (%s)", waited_s, ", ".join(down) or "none named")
        line.notifier.ready(f"degraded: {text}")
        return True

    async def report_alarms(self) -> None:
        """Every raise and clear on the daemon's output (journald under systemd) and in the journal, so
        a person who never opens the status screen still finds it, with its time."""
        changes = self.line.board.take_changes()
        for c in changes:
            if c.active:
                level = logging.ERROR if c.severity is Severity.STOP else logging.WARNING
                log.log(level, "ALARM %s/%s (%s): %s", c.source, c.key, c.severity.name.lower(), c.detail)
            else:
                log.info("alarm cleared %s/%s", c.source, c.key)
        if changes:
            await asyncio.to_thread(self._journal_alarms, changes)

    def _journal_alarms(self, changes: list[AlarmChange]) -> None:
        ledger = self.line.ledger
        try:
            with ledger.atomic():
                for c in changes:
                    ledger.append_event("alarm.raised" if c.active else "alarm.cleared",
                                        {"source": c.source, "key": c.key, "severity": c.severity.name.lower(),
                                         "detail": c.detail}, at=c.at)
        except (LedgerError, sqlite3.Error) as exc:  # a full disk must not silence the log line above
            log.error("alarms not journaled: %s", exc)

    def write(self, snap: DaemonStatus | None = None) -> None:
        """The status record (`lineagent status` reads it); a fresh snapshot when none is given."""
        line = self.line
        try:
            write_status(line.status_file, snap or line.snapshot())
        except OSError as exc:
            log.warning("status record %s not written: %s", line.status_file, exc)
            line.resources.note(exc)  # beside the ledger: a full disk there stops the line


def summary(st: DaemonStatus) -> str:
    """One line for `systemctl status` (STATUS=)."""
    alarms = len(st.alarms)
    job = f"job {st.job}" if st.job else "no job"
    judged = sum(sum((s.get("verdicts") or {}).values()) for s in st.stations.values()
                 if isinstance(s.get("verdicts"), dict))
    return (f"{st.state}, {job}, light {st.light}, {judged} judged, "
            f"{alarms} alarm{'s' if alarms != 1 else ''}")


def snapshot(line: Line) -> DaemonStatus:
    """The line as the status record, `lineagent status`, STATUS= and the metrics show it."""
    devices: dict[str, dict[str, Any]] = {}
    for p in line.printers.values():
        devices[p.coder] = p.snapshot()
    stations: dict[str, dict[str, Any]] = {n: v.snapshot() for n, v in line.verifiers.items()}
    if line.packline is not None:
        stations.update({f"pack:{k}": v for k, v in line.packline.snapshot().items()})
    sync: dict[str, Any] = {}
    if line.uplink is not None:
        sync = {"link": str(line.uplink.link.state), "alarm": str(line.uplink.alarm.level),
                "acks": line.uplink.stats.acks, "batches_sent": line.uplink.stats.batches_sent}
    alarms = [{"source": a.source, "key": a.key, "severity": a.severity.name.lower(), "detail": a.detail,
               "since": a.since} for a in line.board.active]
    return DaemonStatus(pid=os.getpid(), started_at=line.started_at, beat_at=time.time(), state=str(line.state),
                        light=str(line.board.light(running=line.line_running)),
                        job=line.current.name if line.current else None, devices=devices, stations=stations,
                        alarms=alarms, sync=sync)
