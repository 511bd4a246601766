"""The line runtime behind `lineagent run`: one asyncio loop, a TaskGroup of named tasks, one per device
and station, built from the line config.

Why this shape (DESIGN.md, Concurrency): every device has its own task so one that hangs or dies
degrades only itself; its station raises an alarm on the board and keeps retrying, while the agent,
the ledger and the other stations go on. The alarm board drives the PLC stack light (green running,
amber warning, red + buzzer for a stop). The MQTT uplink is blocking paho code with its own SQLite
connection, so it gets a thread (agent.sync.uplink.Uplink.run), stopped last so it can still send what
the shutdown committed.

Why the runtime shortens the interpreter's thread switch interval (5 ms -> 0.5 ms) while it runs: the
loop thread does many short syscalls per item (Modbus, the coder's link, SQLite reads) and gives up the
GIL in each; with decode, packing and uplink threads running Python, taking it back cost up to a full
switch interval every time ("convoy effect"), tens to hundreds of milliseconds per item at 2,000/min.

pymodbus logs its own view of every failure our adapter already reports typed (an alarm on the board),
and appends a hex dump of the last frames to it unless its logger is at DEBUG: that is what flooded
stderr during the benchmark (nobody enabled debug). `quiet_pymodbus` keeps it to CRITICAL unless the
root logger is at INFO or below, i.e. `lineagent run -v`.

Shutdown (SIGTERM/SIGINT set `stop`): stop the conveyor, stop feeding and let each feeder reconcile
with its coder (printed codes confirmed, the rest in doubt, never sent again), commit the ledger, close
every device, write the final status record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.aggregation.parents import ReadLabel
from agent.config.model import LineConfig
from agent.config.stations import StationKind
from agent.jobs import Job, JobState, list_jobs
from agent.ledger import Ledger
from agent.line.alarms import AlarmBoard, Light, Severity
from agent.line.packing import PackLine
from agent.line.printing import PrintState, PrintStation
from agent.line.status import DaemonStatus, status_path, write_status
from agent.line.verifying import VerifyRunner
from agent.sync.backlog import SyncAlarm
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from agent.verify.tracker import Tracked
from agent.verify.verdict import Judgement
from drivers.plc import PlcError

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005


def quiet_pymodbus() -> None:
    """pymodbus messages (and their frame dumps) only when the operator asked for them (-v)."""
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    logging.getLogger("pymodbus").setLevel(logging.NOTSET if verbose else logging.CRITICAL)


class RuntimeState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"  # devices up, no running job
    RUNNING = "running"  # a job is being printed
    DRAINING = "draining"  # the job's codes are printed; the last items are passing the camera
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class JobRun:
    """What one job's run did, for the demo and the tests."""

    job: str
    verdicts: dict[str, int] = field(default_factory=dict)
    packs: dict[str, Any] = field(default_factory=dict)
    completed: bool = False  # the target was printed and every item judged (not cut short by stop)


class LineRuntime:
    def __init__(
        self, cfg: LineConfig, ledger: Ledger, *, overrides: dict[tuple[str, str], Any] | None = None,
        read_labels: dict[str, ReadLabel] | None = None, exit_when_done: bool = False,
        status_every_s: float = 0.5, job_poll_s: float = 0.5, drain_s: float = 0.0,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.board = AlarmBoard()
        self.state = RuntimeState.STARTING
        self.exit_when_done = exit_when_done
        self.status_every_s = status_every_s
        self.job_poll_s = job_poll_s
        self.drain_s = drain_s  # on exit, wait this long for the receiver to ack every event
        self.read_labels = read_labels or {}
        self.status_file = status_path(ledger.path)
        self.started_at = time.time()
        self.runs: list[JobRun] = []
        self.line_running = False
        self.current: Job | None = None
        self.packline: PackLine | None = None
        self.uplink: Uplink | None = None
        ov = overrides or {}
        self.printers: dict[str, PrintStation] = {}
        self.verifiers: dict[str, VerifyRunner] = {}
        for name, st in cfg.stations.items():
            if st.type is StationKind.PRINT and st.coder:
                self.printers[name] = PrintStation(name, st, cfg, ledger, self.board, ov.get(("coders", st.coder)))
        for name, st in cfg.stations.items():
            if st.type is StationKind.VERIFY:
                source = st.print_station or (next(iter(self.printers)) if len(self.printers) == 1 else None)
                if source is None or source not in self.printers:
                    raise ValueError(f"stations.{name}: name the print station it verifies (print_station:)")
                self.verifiers[name] = VerifyRunner(
                    name, st, cfg, ledger, self.board, self.printers[source],
                    camera=ov.get(("cameras", st.camera or "")), plc=ov.get(("plcs", st.plc or "")))

    # ---- the daemon -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> list[JobRun]:
        """Run until `stop` is set (or, with exit_when_done, until the running job is complete)."""
        sync_stop = threading.Event()
        self.state = RuntimeState.IDLE
        quiet_pymodbus()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL_S))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._beat(stop), name="status")
                tg.create_task(self._lights(stop), name="lights")
                if self.cfg.mqtt is not None:
                    tg.create_task(self._sync(sync_stop), name="sync-uplink")
                await self._jobs(stop)
                self.state = RuntimeState.STOPPING
                await asyncio.to_thread(self.ledger.commit)
                await self._drain()
                stop.set()
                sync_stop.set()
        finally:
            sync_stop.set()
            for v in self.verifiers.values():
                await v.close()
            for p in self.printers.values():
                await p.halt()
            await asyncio.to_thread(self.ledger.commit)
            self.state = RuntimeState.STOPPED
            self._write_status()
            sys.setswitchinterval(switch)
        return self.runs

    async def _jobs(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            job = await asyncio.to_thread(self._running_job)
            if job is None:
                self.state = RuntimeState.IDLE
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.job_poll_s):
                        await stop.wait()
                continue
            run = await self._run_job(job, stop)
            if self.exit_when_done and run.completed:
                return
            if run.completed:  # the target is printed: wait for the operator to start another job
                while not stop.is_set() and (await asyncio.to_thread(self._running_job)) == job:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.job_poll_s):
                            await stop.wait()

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_s
        while self.uplink is not None and time.monotonic() < deadline:
            if await asyncio.to_thread(self.uplink.drained):
                return
            await asyncio.sleep(0.05)

    def _running_job(self) -> Job | None:
        running = [j for j in list_jobs(self.ledger) if j.state is JobState.RUNNING]
        return running[0] if running else None

    async def _run_job(self, job: Job, stop: asyncio.Event) -> JobRun:
        self.state = RuntimeState.RUNNING
        self.current = job
        run = JobRun(job.name)
        self.runs.append(run)
        job_stop = asyncio.Event()
        self.packline = pack = PackLine(self.cfg, self.ledger, job, self.board, self.read_labels)

        def on_verdict(item: Tracked, j: Judgement) -> None:
            run.verdicts[str(j.verdict)] = run.verdicts.get(str(j.verdict), 0) + 1
            if not j.verdict.rejects and item.code is not None:
                pack.verified(item.code)

        for v in self.verifiers.values():
            v.on_verdict[:] = [on_verdict]
        async with asyncio.TaskGroup() as tg:
            printing = [tg.create_task(p.run(job, job_stop), name=f"print:{n}") for n, p in self.printers.items()]
            verifying = [tg.create_task(v.run(job.template, job_stop), name=f"verify:{n}")
                         for n, v in self.verifiers.items()]
            tg.create_task(pack.run_threaded(), name="packing")
            tg.create_task(self._conveyor(job_stop), name="conveyor")
            done = await self._until_done(printing, stop)
            await self._run_line(False)
            job_stop.set()
            if verifying:  # their last verdicts are committed and reported before packing ends
                await asyncio.wait(verifying)
            if done:
                pack.finish()
            else:
                pack.cancel()  # packs left open stay open in the ledger; an operator closes them
        run.completed = done
        run.packs = pack.snapshot()
        self.current = None
        return run

    async def _until_done(self, printing: list[asyncio.Task[None]], stop: asyncio.Event) -> bool:
        """True when every code is printed and every printed item judged; False when stopped first."""
        while not stop.is_set():
            if all(t.done() for t in printing) and all(p.state is PrintState.DONE for p in self.printers.values()):
                self.state = RuntimeState.DRAINING
                judged = [await asyncio.to_thread(v.all_judged) for v in self.verifiers.values()]
                if all(judged):
                    return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await stop.wait()
        return False

    async def _conveyor(self, job_stop: asyncio.Event) -> None:
        """Run the line once every coder is primed: items must not pass a coder with an empty FIFO.
        Never faster than a coder's link can feed (Capabilities.max_items_per_min): refused, with a stop alarm."""
        refusals = {p.coder: why for p in self.printers.values() if (why := p.rate_refusal()) is not None}
        for coder, why in refusals.items():
            log.error("line not started: %s", why)
            self.board.set(coder, "line_rate", True, Severity.STOP, why)
        if refusals:
            await job_stop.wait()
            return
        while not job_stop.is_set():
            if all(p.primed.is_set() for p in self.printers.values()):
                await self._run_line(True)
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await job_stop.wait()

    async def _run_line(self, run: bool) -> None:
        for v in self.verifiers.values():
            try:
                await v.plc.run_line(run)
            except PlcError as exc:
                self.board.set(v.plc_name, "line_run", True, Severity.STOP, f"cannot {'start' if run else 'stop'}"
                               f" the line: {exc}")
        self.line_running = run

    # ---- lights, sync, status -------------------------------------------------------------------

    async def _lights(self, stop: asyncio.Event) -> None:
        plcs = {v.plc_name: v.plc for v in self.verifiers.values()}
        shown: Light | None = None
        while not stop.is_set():
            light = self.board.light(running=self.line_running)
            if light is not shown and plcs:
                try:
                    for plc in plcs.values():
                        await plc.lights(green=light is Light.GREEN, amber=light is Light.AMBER,
                                         red=light is Light.RED, buzzer=light is Light.RED)
                    shown = light
                except PlcError as exc:
                    log.debug("stack light not set: %s", exc)  # the PLC's own alarm is on the board
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.25):
                    await stop.wait()

    async def _sync(self, sync_stop: threading.Event) -> None:
        mqtt = self.cfg.mqtt
        assert mqtt is not None
        topics = Topics(mqtt.topic_prefix, self.cfg.site.id, self.cfg.line.id)

        def on_alarm(alarm: SyncAlarm) -> None:
            level = str(alarm.level)
            severity = Severity.STOP if level == "stop" else Severity.WARNING
            self.board.set("sync", "backlog", level != "ok", severity, alarm.message)

        self.uplink = Uplink(Outbox(self.ledger.path), mqtt, topics, client_id=mqtt.client_id, on_alarm=on_alarm)
        await asyncio.to_thread(self.uplink.run, sync_stop)

    async def _beat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self._write_status)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.status_every_s):
                    await stop.wait()

    def snapshot(self) -> DaemonStatus:
        devices: dict[str, dict[str, Any]] = {}
        for p in self.printers.values():
            devices[p.coder] = p.snapshot()
        stations: dict[str, dict[str, Any]] = {n: v.snapshot() for n, v in self.verifiers.items()}
        if self.packline is not None:
            stations.update({f"pack:{k}": v for k, v in self.packline.snapshot().items()})
        sync: dict[str, Any] = {}
        if self.uplink is not None:
            sync = {"link": str(self.uplink.link.state), "alarm": str(self.uplink.alarm.level),
                    "acks": self.uplink.stats.acks, "batches_sent": self.uplink.stats.batches_sent}
        alarms = [{"source": a.source, "key": a.key, "severity": a.severity.name.lower(), "detail": a.detail,
                   "since": a.since} for a in self.board.active]
        return DaemonStatus(pid=os.getpid(), started_at=self.started_at, beat_at=time.time(), state=str(self.state),
                            light=str(self.board.light(running=self.line_running)),
                            job=self.current.name if self.current else None, devices=devices, stations=stations,
                            alarms=alarms, sync=sync)

    def _write_status(self) -> None:
        try:
            write_status(self.status_file, self.snapshot())
        except OSError as exc:
            log.warning("status record %s not written: %s", self.status_file, exc)


def ledger_file(cfg: LineConfig, db: Path | None) -> Path:
    return db if db is not None else cfg.resolve(cfg.storage.ledger)
