"""The line runtime behind `lineagent run`: one asyncio loop, a TaskGroup of named tasks, one per device
and station, built from the line config.

Why this shape (DESIGN.md, Concurrency): every device has its own task so one that hangs or dies
degrades only itself; its station raises an alarm on the board and keeps retrying, while the agent,
the ledger and the other stations go on. The alarm board drives the PLC stack light (green running,
amber warning, red + buzzer for a stop). The MQTT uplink is blocking paho code with its own SQLite
connection, so it gets a thread (agent.sync.uplink.Uplink.run), stopped last so it can still send what
the shutdown committed.

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
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.aggregation.parents import ReadLabel
from agent.config.model import LineConfig
from agent.config.stations import StationKind
from agent.control import pack_commands
from agent.control.protocol import (
    ALREADY_ENDING,
    ALREADY_RUNNING,
    NO_JOB_ARG,
    OTHER_RUNNING,
    Command,
    ControlError,
    ErrorCode,
    Request,
)
from agent.control.server import ControlServer, SocketInUse
from agent.jobs import (
    Job,
    JobError,
    JobNotFound,
    JobState,
    finish_job,
    get_job,
    list_jobs,
    pause_job,
    start_job,
    stop_job,
)
from agent.ledger import Ledger, LedgerError
from agent.line.alarms import AlarmBoard, AlarmChange, Light, Severity
from agent.line.metrics import LineMetrics
from agent.line.notify import Notifier
from agent.line.packing import PackLine
from agent.line.printing import PrintState, PrintStation
from agent.line.resources import ResourceGuard, min_free_mb
from agent.line.status import DaemonStatus, status_path, write_status
from agent.line.verifying import VerifyRunner, VerifyState
from agent.sync.backlog import SyncAlarm
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from agent.verify.tracker import Tracked
from agent.verify.verdict import Judgement
from drivers.plc import PlcError, Signal
from drivers.printers.base import PrinterError

log = logging.getLogger(__name__)

PLC_CYCLE_S = 0.25  # heartbeat and stack light; a PLC watchdog of 1-3 s sees several beats per period


def quiet_pymodbus() -> None:
    """pymodbus messages (and their frame dumps) only when the operator asked for them (-v)."""
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    logging.getLogger("pymodbus").setLevel(logging.NOTSET if verbose else logging.CRITICAL)


IDLE_PROBE_S = 10.0  # while no job runs, every device is probed this often (and at start-up)
PROBE_TIMEOUT_S = 10.0
BELT_STOP_S = 5.0  # any way out of the runtime: how long the belt stop is retried before the watchdog is left to it
FINISH_DRAIN_S = 60.0  # job finish: how long the belt may run for printed items to reach their verdict


class JobEnd(StrEnum):
    """Why a job's run on the line ended."""

    DONE = "done"  # the target is printed and every printed item judged
    SHUTDOWN = "shutdown"  # the daemon stops (signal, crash)
    STOP = "stop"  # an operator stopped the job (`job stop`)
    PAUSE = "pause"  # an operator paused it (`job pause`; `job start` resumes)
    FINISH = "finish"  # an operator finished it: feeding stops, printed items drain, unused codes return
    FAULT = "fault"  # a resource fault stopped the line (agent/line/resources.py); the job is paused
    ELSEWHERE = "elsewhere"  # the job's state was changed in the ledger by another process


class RuntimeState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"  # devices up, no running job
    RUNNING = "running"  # a job is being printed
    DRAINING = "draining"  # the job's codes are printed; the last items are passing the camera
    FAULT = "fault"  # a resource fault stopped the line; no job runs until it clears
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
        status_every_s: float = 0.5, job_poll_s: float = 0.5, drain_s: float = 0.0, control: bool = True,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.board = AlarmBoard()
        self.resources = ResourceGuard.from_config(cfg, ledger, self.board)
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
        self.notifier = Notifier()
        self.control_enabled = control
        self.control_server: ControlServer | None = None
        self._wake = asyncio.Event()  # a job was started: look now, not at the next poll
        self._end_request: JobEnd | None = None
        self._end_event = asyncio.Event()
        self._job_over: asyncio.Future[dict[str, Any]] | None = None
        self._next_probe = 0.0  # monotonic time of the next idle device probe (0: at start-up)
        self.metrics: LineMetrics | None = None
        if cfg.metrics.enabled:
            self.metrics = LineMetrics(cfg.site.id, cfg.line.id)
            self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
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
        await self._open_control()
        await self._belt_off_at_start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._beat(stop), name="status")
                tg.create_task(self._plc_cycle(stop), name="plc-cycle")
                tg.create_task(self.resources.run(stop, self._resource_stop, lambda: self.current is None),
                               name="resources")
                if self.cfg.mqtt is not None:
                    tg.create_task(self._sync(sync_stop), name="sync-uplink")
                await self._jobs(stop)
                self.state = RuntimeState.STOPPING
                await asyncio.to_thread(self.resources.commit)
                await self._drain()
                stop.set()
                sync_stop.set()
        finally:
            # Any way out (stop, an exception in a task, cancellation): the conveyor stops BEFORE the
            # coders do, so no product passes a coder that no longer prints. If even this fails (the
            # PLC is gone), the PLC's heartbeat watchdog stops the line once the beats end.
            await self._stop_belt(BELT_STOP_S)
            sync_stop.set()
            for v in self.verifiers.values():
                await v.close()
            for p in self.printers.values():
                await p.halt()
            await asyncio.to_thread(self.resources.commit)
            self.resources.close()
            if self.control_server is not None:
                await self.control_server.close()
            with contextlib.suppress(Exception):
                await self._report_alarms()
            self.state = RuntimeState.STOPPED
            try:
                self._write_status()
            except Exception:  # the last record must not hide why the runtime ended
                log.exception("final status record not written")
        return self.runs

    async def _jobs(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            if self.resources.active:  # a full or failing disk: no job runs until the guard lets go
                if self.resources.holding:
                    self.state = RuntimeState.FAULT
                await self._wait_any(stop, self.resources.cleared, self.job_poll_s)
                continue
            job = await asyncio.to_thread(self._running_job)
            if job is None:
                self.state = RuntimeState.IDLE
                if time.monotonic() >= self._next_probe:
                    await self._probe_devices()
                    self._next_probe = time.monotonic() + IDLE_PROBE_S
                await self._wait_any(stop, self._wake, self.job_poll_s)
                continue
            run = await self._run_job(job, stop)
            if self.exit_when_done and run.completed:
                return
            if run.completed:  # the target is printed: wait for the operator to start another job
                while not stop.is_set() and (await asyncio.to_thread(self._running_job)) == job:
                    await self._wait_any(stop, self._wake, self.job_poll_s)

    async def _probe_devices(self) -> None:
        """No job runs: is every coder and PLC there? One that is not raises its alarm now (logged and
        journaled by the beat), not when the next job starts; it clears when the device answers."""
        for p in self.printers.values():
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await p.printer.connect()
                self.board.set(p.coder, "communication", False)
            except (PrinterError, TimeoutError) as exc:
                self.board.set(p.coder, "communication", True, Severity.STOP, f"cannot connect: {exc}")
            finally:
                with contextlib.suppress(PrinterError, TimeoutError):
                    async with asyncio.timeout(PROBE_TIMEOUT_S):
                        await p.printer.close()
        for v in self.verifiers.values():
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await v.plc.open()
                    await v.plc.read_many([Signal.COUNTER])
                self.board.set(v.plc_name, "communication", False)
            except (PlcError, TimeoutError) as exc:
                self.board.set(v.plc_name, "communication", True, Severity.STOP, f"PLC does not answer: {exc}")
            finally:
                with contextlib.suppress(PlcError, TimeoutError):
                    async with asyncio.timeout(PROBE_TIMEOUT_S):
                        await v.plc.close()

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
        feed_stop = asyncio.Event()  # the coders stop taking codes (each feeder reconciles)
        job_stop = asyncio.Event()  # the stations stop judging
        self._end_request = None
        self._end_event.clear()
        self._job_over = asyncio.get_running_loop().create_future()
        self.packline = pack = PackLine(self.cfg, self.ledger, job, self.board, self.read_labels)
        end = JobEnd.SHUTDOWN
        report: dict[str, Any] = {"job": job.name, "ended": str(end)}

        def on_verdict(item: Tracked, j: Judgement) -> None:
            run.verdicts[str(j.verdict)] = run.verdicts.get(str(j.verdict), 0) + 1
            if not j.verdict.rejects and item.code is not None:
                pack.verified(item.code)

        for v in self.verifiers.values():
            v.on_verdict[:] = [on_verdict]
        try:
            async with asyncio.TaskGroup() as tg:
                printing = [tg.create_task(p.run(job, feed_stop), name=f"print:{n}")
                            for n, p in self.printers.items()]
                verifying = [tg.create_task(v.run(job.template, job_stop), name=f"verify:{n}")
                             for n, v in self.verifiers.items()]
                tg.create_task(pack.run(), name="packing")
                tg.create_task(self._conveyor(job_stop), name="conveyor")
                end = await self._until_done(job, printing, stop)
                if end is JobEnd.FINISH:
                    # Drain: no new codes; the belt runs until every printed item has its verdict.
                    self.state = RuntimeState.DRAINING
                    feed_stop.set()
                    if printing:
                        await asyncio.wait(printing, timeout=FINISH_DRAIN_S)
                    await self._until_judged(stop, FINISH_DRAIN_S)
                await self._run_line(False)  # the belt stops before the coders are told to stop
                feed_stop.set()
                job_stop.set()
                if verifying:  # their last verdicts are committed and reported before packing ends
                    await asyncio.wait(verifying)
                if end in (JobEnd.DONE, JobEnd.FINISH):
                    pack.finish()
                else:
                    pack.cancel()  # packs left open stay open in the ledger; an operator closes them
            run.completed = end is JobEnd.DONE
            run.packs = pack.snapshot()
            report = await self._settle_job(job, end, run)
        except Exception as exc:  # a task group's exception group too
            if not self.resources.note(exc):  # not a full or failing disk: a bug, as before
                raise
            if self.line_running:  # the guard has stopped it already, unless its PLC write failed
                await self._run_line(False)
            run.packs = pack.snapshot()
            report = {"job": job.name, "ended": str(JobEnd.FAULT),
                      "state": await asyncio.to_thread(self.resources.pause, job.id)}
        finally:
            self.current = None
            if not self._job_over.done():
                self._job_over.set_result(report)
        return run

    async def _until_done(self, job: Job, printing: list[asyncio.Task[None]], stop: asyncio.Event) -> JobEnd:
        """DONE when every code is printed and every printed item judged; else why the run ends."""
        checked = time.monotonic()
        while not stop.is_set():
            if self._end_request is not None:
                return self._end_request
            if all(t.done() for t in printing) and all(p.state is PrintState.DONE for p in self.printers.values()):
                self.state = RuntimeState.DRAINING
                judged = [await asyncio.to_thread(v.all_judged) for v in self.verifiers.values()]
                if all(judged):
                    return JobEnd.DONE
            if time.monotonic() - checked >= 1.0:  # changed by a process that did not ask the daemon
                checked = time.monotonic()
                now = await asyncio.to_thread(get_job, self.ledger, job.id)
                if now.state is not JobState.RUNNING:
                    return JobEnd.ELSEWHERE
            await self._wait_any(stop, self._end_event, 0.02)
        return JobEnd.SHUTDOWN

    async def _until_judged(self, stop: asyncio.Event, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not stop.is_set() and time.monotonic() < deadline:
            if all([await asyncio.to_thread(v.all_judged) for v in self.verifiers.values()]):
                return
            if any(v.state is VerifyState.STOPPED for v in self.verifiers.values()):
                log.warning("finish: a verify station stopped the line; unjudged items stay unjudged")
                return
            await self._wait_any(stop, None, 0.05)

    async def _settle_job(self, job: Job, end: JobEnd, run: JobRun) -> dict[str, Any]:
        """The job's new state in the ledger once its run on the line has ended."""
        out: dict[str, Any] = {"job": job.name, "ended": str(end), "verdicts": dict(run.verdicts)}
        if end is JobEnd.STOP:
            out["state"] = str((await asyncio.to_thread(stop_job, self.ledger, job.id)).state)
        elif end is JobEnd.PAUSE:
            out["state"] = str((await asyncio.to_thread(pause_job, self.ledger, job.id)).state)
        elif end is JobEnd.FINISH:
            rep = await asyncio.to_thread(finish_job, self.ledger, job.id)
            out.update(state="finished", returned=rep.returned, in_doubt=rep.in_doubt)
        elif end is JobEnd.FAULT:
            out["state"] = await asyncio.to_thread(self.resources.pause, job.id)
        return out

    @staticmethod
    async def _wait_any(stop: asyncio.Event, other: asyncio.Event | None, timeout_s: float) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if other is not None:
            waiters.append(asyncio.ensure_future(other.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    # ---- control socket --------------------------------------------------------------------------

    async def _open_control(self) -> None:
        if not self.control_enabled:
            return
        path = self.cfg.control_socket(self.ledger.path)
        server = ControlServer(path, self, mode=self.cfg.control.mode, group=self.cfg.control.group)
        try:
            await server.start()
        except SocketInUse:
            raise
        except (OSError, ValueError) as exc:
            self.board.set("control", "socket", True, Severity.WARNING,
                           f"no control socket at {path}: {exc}; the CLI works on the ledger only")
            log.error("control socket %s not opened: %s", path, exc)
            return
        self.control_server = server
        log.info("control socket %s", path)

    async def control(self, request: Request, user: str) -> dict[str, Any]:
        """One operator request from the control socket; audited with the peer's user name."""
        cmd, args = request.cmd, request.args
        if cmd in pack_commands.COMMANDS:
            return await pack_commands.handle(self, request, user)
        if cmd is Command.STATUS:
            return asdict(self.snapshot())
        if cmd is Command.ALARM_ACK:
            hit = self.board.acknowledge(args.get("source"), args.get("key"))
            result = f"{len(hit)} alarm(s) acknowledged"
            await asyncio.to_thread(self.ledger.audit, "alarm.ack", args, result, user=user)
            return {"acknowledged": [f"{a.source}/{a.key}" for a in hit]}
        ref = args.get("job")
        if not isinstance(ref, str | int) or isinstance(ref, bool) or ref == "":
            raise ControlError(ErrorCode.USAGE, NO_JOB_ARG)
        if cmd is Command.JOB_START and (why := self.resources.refusal()) is not None:
            raise ControlError(ErrorCode.REFUSED, why)  # not audited: the ledger cannot take the write
        try:
            result_d = await self._job_command(cmd, ref)
        except JobNotFound as exc:
            raise ControlError(ErrorCode.NOT_FOUND, str(exc)) from None
        except (JobError, ControlError) as exc:
            await asyncio.to_thread(self.ledger.audit, str(cmd), {"job": ref}, f"refused: {exc}", user=user)
            if isinstance(exc, ControlError):
                raise
            raise ControlError(ErrorCode.REFUSED, str(exc)) from None
        except (LedgerError, sqlite3.Error) as exc:  # a full or failing disk: the guard stops the line
            if not self.resources.note(exc):
                raise
            raise ControlError(ErrorCode.REFUSED, self.resources.refusal() or str(exc)) from None
        await asyncio.to_thread(self.ledger.audit, str(cmd), {"job": ref}, json.dumps(result_d, default=str),
                                user=user)
        return result_d

    def gates(self) -> dict[str, pack_commands.Gate]:
        """Each verify station's reject gate, by its PLC's name (for the gate test)."""
        return {v.plc_name: pack_commands.Gate(v.plc, v.st.verify.gate_at, v.st.verify.confirm_margin)
                for v in self.verifiers.values()}

    async def _job_command(self, cmd: Command, ref: str | int) -> dict[str, Any]:
        job = await asyncio.to_thread(get_job, self.ledger, ref)
        current = self.current
        if cmd is Command.JOB_START:
            if current is not None:
                raise ControlError(ErrorCode.REFUSED, ALREADY_RUNNING.format(job=job.name) if current.id == job.id
                                   else OTHER_RUNNING.format(job=job.name, other=current.name))
            job = await asyncio.to_thread(start_job, self.ledger, job.id)
            self._wake.set()
            return {"job": job.name, "state": str(job.state)}
        end = {Command.JOB_STOP: JobEnd.STOP, Command.JOB_PAUSE: JobEnd.PAUSE, Command.JOB_FINISH: JobEnd.FINISH}[cmd]
        if current is not None and current.id == job.id and self._job_over is not None:
            if self._end_request is not None:
                raise ControlError(ErrorCode.REFUSED, ALREADY_ENDING.format(job=job.name, end=self._end_request))
            self._end_request = end
            self._end_event.set()
            return dict(await asyncio.shield(self._job_over))  # answered once the line has really stopped
        # Not on the line: a ledger change, as the CLI makes it when no daemon runs.
        if end is JobEnd.STOP:
            return {"job": job.name, "state": str((await asyncio.to_thread(stop_job, self.ledger, job.id)).state)}
        if end is JobEnd.PAUSE:
            return {"job": job.name, "state": str((await asyncio.to_thread(pause_job, self.ledger, job.id)).state)}
        rep = await asyncio.to_thread(finish_job, self.ledger, job.id)
        return {"job": job.name, "state": "finished", "returned": rep.returned, "in_doubt": rep.in_doubt}

    async def _conveyor(self, job_stop: asyncio.Event) -> None:
        """Run the line once every coder is primed (items must not pass a coder with an empty FIFO) and
        every PLC has taken the run command (a station may still be opening its PLC). Never faster than
        a coder's link can feed (Capabilities.max_items_per_min): refused, with a stop alarm."""
        refusals = {p.coder: why for p in self.printers.values() if (why := p.rate_refusal()) is not None}
        for coder, why in refusals.items():
            log.error("line not started: %s", why)
            self.board.set(coder, "line_rate", True, Severity.STOP, why)
        if refusals:
            await job_stop.wait()
            return
        while not job_stop.is_set():
            ready = all(p.primed.is_set() for p in self.printers.values()) and all(
                v.state is not VerifyState.STARTING for v in self.verifiers.values())
            if ready and await self._run_line(True):
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await job_stop.wait()

    async def _resource_stop(self) -> None:
        """The guard saw a full or failing disk: the belt stops now, then the job's run ends in order."""
        if self.state not in (RuntimeState.STOPPING, RuntimeState.STOPPED):
            self.state = RuntimeState.FAULT
        if self.current is not None or self.line_running:  # idle, the belt is off and the PLC closed
            await self._run_line(False)
        if self._job_over is not None and not self._job_over.done() and self._end_request is None:
            self._end_request = JobEnd.FAULT
            self._end_event.set()

    async def _belt_off_at_start(self) -> None:
        """A restart can come before the PLC's watchdog has stopped the belt (a restart takes ~1.5 s, the
        watchdog 1-3 s): items would pass the coder while its feeder reconciles, and the first print of
        the new life could land on an item the verify station counts as before its start (the binding one
        item late, found by tests/faults: the coder left to run dry). So the belt stops first; items
        already in flight are settled by the restart plan, and the belt runs again once every coder is
        primed. A PLC that does not answer is left to its watchdog (its alarm comes from the probe)."""
        for v in self.verifiers.values():
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await v.plc.open()
                    await v.plc.run_line(False)
            except (PlcError, TimeoutError) as exc:
                log.warning("%s: belt not stopped at start-up: %s", v.plc_name, exc)

    async def _stop_belt(self, limit_s: float) -> None:
        """The way out's belt stop, retried until every PLC took it or `limit_s` ran out: one write that
        timed out (a PLC slow for 0.5 s, or an answer lost to the cancelled request before it) once left
        the belt running after a crash. Past the limit the PLC's heartbeat watchdog stops it."""
        deadline = time.monotonic() + limit_s
        while True:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    if await self._run_line(False):
                        return
            if time.monotonic() >= deadline:
                log.error("the belt may still run: no PLC took the stop within %.0f s; its heartbeat watchdog "
                          "stops it once the beats end", limit_s)
                return
            await asyncio.sleep(0.1)
            for v in self.verifiers.values():  # a link a timeout closed is opened again for the next try
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                        await v.plc.open()

    async def _run_line(self, run: bool) -> bool:
        """True when every PLC took the command."""
        if run and self.resources.active:
            return False
        ok = True
        for v in self.verifiers.values():
            try:
                if run:  # a fresh beat first: a PLC whose watchdog tripped while we were idle refuses to run
                    await v.plc.heartbeat()
                await v.plc.run_line(run)
            except PlcError as exc:
                ok = False
                self.board.set(v.plc_name, "line_run", True, Severity.STOP, f"cannot {'start' if run else 'stop'}"
                               f" the line: {exc}")
        if ok and run:
            for v in self.verifiers.values():
                self.board.set(v.plc_name, "line_run", False)
        self.line_running = run and ok
        return ok

    # ---- lights, sync, status -------------------------------------------------------------------

    async def _plc_cycle(self, stop: asyncio.Event) -> None:
        """Every PLC_CYCLE_S: the heartbeat (the PLC stops the conveyor when it stops changing: the
        agent dead, hung or restarting) and the stack light when it changed."""
        plcs = {v.plc_name: v.plc for v in self.verifiers.values()}
        shown: tuple[Light, bool] | None = None
        while not stop.is_set():
            for name, plc in plcs.items():
                try:
                    await plc.heartbeat()
                except PlcError as exc:
                    log.debug("%s: heartbeat not written: %s", name, exc)  # its own alarm is on the board
            light = (self.board.light(running=self.line_running), self.board.buzzer())
            if light != shown and plcs:
                try:
                    for plc in plcs.values():
                        await plc.lights(green=light[0] is Light.GREEN, amber=light[0] is Light.AMBER,
                                         red=light[0] is Light.RED, buzzer=light[1])
                    shown = light
                except PlcError as exc:
                    log.debug("stack light not set: %s", exc)  # the PLC's own alarm is on the board
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PLC_CYCLE_S):
                    await stop.wait()

    async def _sync(self, sync_stop: threading.Event) -> None:
        mqtt = self.cfg.mqtt
        assert mqtt is not None
        topics = Topics(mqtt.topic_prefix, self.cfg.site.id, self.cfg.line.id)

        def on_alarm(alarm: SyncAlarm) -> None:
            level = str(alarm.level)
            severity = Severity.STOP if level == "stop" else Severity.WARNING
            self.board.set("sync", "backlog", level != "ok", severity, alarm.message)
            self.resources.sync_alarm(level == "stop", alarm.message)

        mqtt = mqtt.model_copy(update={"min_free_disk_mb": min_free_mb(self.cfg)})  # one floor for the line
        self.uplink = Uplink(Outbox(self.ledger.path), mqtt, topics, client_id=mqtt.client_id, on_alarm=on_alarm,
                             on_fault=self.resources.note)
        await asyncio.to_thread(self.uplink.run, sync_stop)

    async def _beat(self, stop: asyncio.Event) -> None:
        """The status record, systemd's watchdog and the metrics, from one snapshot taken on the loop
        (the runtime's dicts are only read where they are changed; the file is written in a thread)."""
        every = self.status_every_s
        wd = self.notifier.watchdog_interval_s()
        if wd is not None:
            every = min(every, wd)
        ready = False
        while not stop.is_set():
            await self._report_alarms()
            snap = self.snapshot()
            await asyncio.to_thread(self._write_status, snap)
            summary = self.summary(snap)
            if not ready:
                self.notifier.ready(summary)
                ready = True
            self.notifier.beat(summary)
            if self.metrics is not None:
                self.metrics.update(snap, self.line_running)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()
        self.notifier.stopping("stopping: reconciling coders and committing the ledger")

    async def _report_alarms(self) -> None:
        """Every raise and clear on the daemon's output (journald under systemd) and in the journal, so
        a person who never opens the status screen still finds it, with its time."""
        changes = self.board.take_changes()
        for c in changes:
            if c.active:
                level = logging.ERROR if c.severity is Severity.STOP else logging.WARNING
                log.log(level, "ALARM %s/%s (%s): %s", c.source, c.key, c.severity.name.lower(), c.detail)
            else:
                log.info("alarm cleared %s/%s", c.source, c.key)
        if changes:
            await asyncio.to_thread(self._journal_alarms, changes)

    def _journal_alarms(self, changes: list[AlarmChange]) -> None:
        try:
            with self.ledger.atomic():
                for c in changes:
                    self.ledger.append_event("alarm.raised" if c.active else "alarm.cleared",
                                             {"source": c.source, "key": c.key, "severity": c.severity.name.lower(),
                                              "detail": c.detail}, at=c.at)
        except (LedgerError, sqlite3.Error) as exc:  # a full disk must not silence the log line above
            log.error("alarms not journaled: %s", exc)

    @staticmethod
    def summary(st: DaemonStatus) -> str:
        """One line for `systemctl status` (STATUS=)."""
        alarms = len(st.alarms)
        job = f"job {st.job}" if st.job else "no job"
        judged = sum(sum((s.get("verdicts") or {}).values()) for s in st.stations.values()
                     if isinstance(s.get("verdicts"), dict))
        return (f"{st.state}, {job}, light {st.light}, {judged} judged, "
                f"{alarms} alarm{'s' if alarms != 1 else ''}")

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

    def _write_status(self, snap: DaemonStatus | None = None) -> None:
        try:
            write_status(self.status_file, snap or self.snapshot())
        except OSError as exc:
            log.warning("status record %s not written: %s", self.status_file, exc)
            self.resources.note(exc)  # beside the ledger: a full disk there stops the line


def ledger_file(cfg: LineConfig, db: Path | None) -> Path:
    return db if db is not None else cfg.resolve(cfg.storage.ledger)
