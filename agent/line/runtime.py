"""The line runtime behind `lineagent run`: one asyncio loop, a TaskGroup of named tasks, one per device
and station, built from the line config.

Why this shape (DESIGN.md, Concurrency): every device has its own task so one that hangs or dies
degrades only itself; its station raises an alarm on the board and keeps retrying, while the agent,
the ledger and the other stations go on. The alarm board drives the PLC stack light (green running,
amber warning, red + buzzer for a stop). The MQTT uplink is blocking paho code with its own SQLite
connection, so it gets a thread (agent.sync.uplink.Uplink.run), stopped last so it can still send what
the shutdown committed.

LineRuntime is the daemon's life (start-up, the idle loop that waits for a job and probes the devices,
shutdown) and the facade the CLI, the demo and the tests use; its parts live beside it: a job's run
(agent/line/jobrun.py), the belt and the PLC cycle (plcs.py), the beat (beat.py: status record,
sd_notify, metrics, alarms on the log and in the journal) and the control socket's requests
(agent/control/dispatch.py).

Shutdown (SIGTERM/SIGINT set `stop`): stop the conveyor, stop feeding and let each feeder reconcile
with its coder (printed codes confirmed, the rest in doubt, never sent again), commit the ledger, close
every device, write the final status record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from agent.aggregation.parents import ReadLabel
from agent.config.model import LineConfig
from agent.config.stations import StationKind
from agent.control import dispatch, pack_commands
from agent.control.protocol import Request
from agent.control.server import ControlServer, SocketInUse
from agent.jobs import Job, JobState, list_jobs
from agent.ledger import Ledger
from agent.line import beat
from agent.line.alarms import AlarmBoard, Severity
from agent.line.beat import Beat
from agent.line.jobrun import JobControl, JobEnd, JobRun, RuntimeState, run_job
from agent.line.metrics import LineMetrics
from agent.line.notify import Notifier
from agent.line.packing import PackLine
from agent.line.plcs import PROBE_TIMEOUT_S, Belt, quiet_pymodbus
from agent.line.printing import PrintStation
from agent.line.resources import ResourceGuard, min_free_mb
from agent.line.status import DaemonStatus, status_path
from agent.line.verifying import VerifyRunner
from agent.line.waits import Teardown, bounded, end_if_cancelled, wait_any
from agent.sync.backlog import SyncAlarm
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from agent.sync.wakeup import Wakeup
from drivers.plc import PlcError, Signal
from drivers.printers.base import PrinterError

log = logging.getLogger(__name__)

IDLE_PROBE_S = 10.0  # while no job runs, every device is probed this often (and at start-up)
BELT_STOP_S = 5.0  # any way out of the runtime: how long the belt stop is retried before the watchdog is left to it
CLOSE_S = 10.0  # on the way out, each device's close (a coder's stop first); then it is left behind


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
        self.current: Job | None = None
        self.packline: PackLine | None = None
        self.uplink: Uplink | None = None
        self.notifier = Notifier()
        self.control_enabled = control
        self.control_server: ControlServer | None = None
        self.job_control = JobControl()
        self._next_probe = 0.0  # monotonic time of the next idle device probe (0: at start-up)
        self.devices_checked = asyncio.Event()  # a probe found every device: systemd may hear READY (beat.py)
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
        self.belt = Belt(self.printers, self.verifiers, self.board, self.resources)
        self.beat = Beat(self)

    @property
    def line_running(self) -> bool:
        """Every PLC took the run command and no stop since."""
        return self.belt.running

    # ---- the daemon -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> list[JobRun]:
        """Run until `stop` is set (or, with exit_when_done, until the running job is complete)."""
        sync_stop = threading.Event()
        self.state = RuntimeState.IDLE
        quiet_pymodbus()
        await self._open_control()
        await self.belt.off_at_start()
        teardown = Teardown("runtime")
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.beat.run(stop), name="status"),
                         tg.create_task(self.belt.cycle(stop), name="plc-cycle"),
                         tg.create_task(self.resources.run(stop, self._resource_stop, lambda: self.current is None),
                                        name="resources")]
                if self.cfg.mqtt is not None:
                    tasks.append(tg.create_task(self._sync(sync_stop), name="sync-uplink"))
                try:
                    await self._jobs(stop)
                    self.state = RuntimeState.STOPPING
                    await asyncio.to_thread(self.resources.commit)
                    await self._drain()
                except BaseException:  # a task's crash cancels this body, as does a cancellation of run()
                    teardown.begin(tasks)
                    raise
                finally:  # every task ends on these too, even one whose cancellation was lost (waits.py)
                    stop.set()
                    self._stop_sync(sync_stop)
        finally:
            teardown.end()
            # Any way out (stop, an exception in a task, cancellation): the conveyor stops BEFORE the
            # coders do, so no product passes a coder that no longer prints. If even this fails (the
            # PLC is gone), the PLC's heartbeat watchdog stops the line once the beats end.
            await self.belt.stop(BELT_STOP_S)
            self._stop_sync(sync_stop)
            for v in self.verifiers.values():
                await bounded(v.close(), CLOSE_S, f"verify station {v.name}: closing its camera and PLC")
            for p in self.printers.values():
                await bounded(p.halt(), CLOSE_S, f"print station {p.name}: stopping and closing coder {p.coder}")
            await asyncio.to_thread(self.resources.commit)
            self.resources.close()
            if self.control_server is not None:
                await bounded(self.control_server.close(), CLOSE_S, "control socket: closing")
            with contextlib.suppress(Exception):
                await self.beat.report_alarms()
            self.state = RuntimeState.STOPPED
            try:
                self.beat.write()
            except Exception:  # the last record must not hide why the runtime ended
                log.exception("final status record not written")
        return self.runs

    async def _jobs(self, stop: asyncio.Event) -> None:
        started = self.job_control.started
        while not stop.is_set():
            end_if_cancelled()  # no new job's run once a crash or a cancellation has asked for the end
            started.clear()
            if self.resources.active:  # a full or failing disk: no job runs until the guard lets go
                if self.resources.holding:
                    self.state = RuntimeState.FAULT
                await wait_any(stop, self.resources.cleared, self.job_poll_s)
                continue
            job = await asyncio.to_thread(self._running_job)
            if job is None:
                self.state = RuntimeState.IDLE
                if time.monotonic() >= self._next_probe:
                    if await self._probe_devices():
                        self.devices_checked.set()
                    self._next_probe = time.monotonic() + IDLE_PROBE_S
                await wait_any(stop, started, self.job_poll_s)
                continue
            run = await run_job(self, job, stop)
            if self.exit_when_done and run.completed:
                return
            if run.completed:  # the target is printed: wait for the operator to start another job
                while not stop.is_set() and (await asyncio.to_thread(self._running_job)) == job:
                    await wait_any(stop, started, self.job_poll_s)

    async def _probe_devices(self) -> bool:
        """No job runs: is every coder and PLC there (True)? One that is not raises its alarm now (logged
        and journaled by the beat), not when the next job starts; it clears when the device answers."""
        up = True
        for p in self.printers.values():
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await p.printer.connect()
                self.board.set(p.coder, "communication", False)
            except (PrinterError, TimeoutError) as exc:
                up = False
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
                up = False
                self.board.set(v.plc_name, "communication", True, Severity.STOP, f"PLC does not answer: {exc}")
            finally:
                with contextlib.suppress(PlcError, TimeoutError):
                    async with asyncio.timeout(PROBE_TIMEOUT_S):
                        await v.plc.close()
        return up

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_s
        while self.uplink is not None and time.monotonic() < deadline:
            if await asyncio.to_thread(self.uplink.drained):
                return
            await asyncio.sleep(0.05)

    def _running_job(self) -> Job | None:
        running = [j for j in list_jobs(self.ledger) if j.state is JobState.RUNNING]
        return running[0] if running else None

    async def _resource_stop(self) -> None:
        """The guard saw a full or failing disk: the belt stops now, then the job's run ends in order."""
        if self.state not in (RuntimeState.STOPPING, RuntimeState.STOPPED):
            self.state = RuntimeState.FAULT
        if self.current is not None or self.line_running:  # idle, the belt is off and the PLC closed
            await self.belt.run_line(False)
        if self.job_control.running and self.job_control.end is None:
            self.job_control.ask(JobEnd.FAULT)

    def _stop_sync(self, sync_stop: threading.Event) -> None:
        sync_stop.set()
        if self.uplink is not None:
            self.uplink.wake()  # out of its select() now, not at its next deadline

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
        wakeup = Wakeup()  # the line's commits of outbox rows wake the uplink (agent/sync/wakeup.py)
        self.ledger.on_outbox(wakeup.added)
        self.uplink = Uplink(Outbox(self.ledger.path), mqtt, topics, client_id=mqtt.client_id, on_alarm=on_alarm,
                             on_fault=self.resources.note, wakeup=wakeup)
        await asyncio.to_thread(self.uplink.run, sync_stop)

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
        """One operator request from the control socket (agent/control/dispatch.py)."""
        return await dispatch.control(self, request, user)

    def gates(self) -> dict[str, pack_commands.Gate]:
        """Each verify station's reject gate, by its PLC's name (for the gate test)."""
        return dispatch.gates(self.verifiers.values())

    # ---- status ----------------------------------------------------------------------------------

    summary = staticmethod(beat.summary)

    def snapshot(self) -> DaemonStatus:
        return beat.snapshot(self)


def ledger_file(cfg: LineConfig, db: Path | None) -> Path:
    return db if db is not None else cfg.resolve(cfg.storage.ledger)
