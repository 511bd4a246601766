"""A print station: one coder, kept connected, fed from the running job by the FIFO feeder.

Why a wrapper around the feeder: the feeder assumes a connected printer and never starts or stops the
coder (the line decides when to print). This station is that decision for one coder: connect (and
keep retrying with an alarm while the coder is absent, without taking the agent down), select the
job's message, feed, start printing once the FIFO is primed, and at the end stop feeding and let the
feeder reconcile, so every code ends printed or in doubt, never silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from enum import StrEnum
from typing import Any

from agent.codes.templates import Fnc1NotSet, coder_renderer, renderer
from agent.config.model import LineConfig
from agent.config.stations import StationConfig
from agent.feeder import AlarmEvent, Feeder, FeederState
from agent.i18n import _
from agent.jobs import Job
from agent.ledger import Ledger
from agent.line.alarms import AlarmBoard, Severity
from drivers.printers.base import Printer, PrinterError
from drivers.registry import DeviceKind, load

log = logging.getLogger(__name__)


class PrintState(StrEnum):
    CONNECTING = "connecting"
    READY = "ready"  # connected, no job
    FEEDING = "feeding"  # FIFO being primed or kept full
    PRINTING = "printing"  # primed and started: items get codes
    DONE = "done"  # the job's target is on products
    DEGRADED = "degraded"  # the coder does not answer; the station keeps trying
    STOPPED = "stopped"


# Feeder alarms that stop production (red) rather than warn (amber).
STOPPING_ALARMS = frozenset({"coder_fault", "communication", "fifo_empty", "codes_short", "rate_limit",
                             "unprintable_job"})
PROBE_CODE = "1"  # a serial every template takes (GS1 AI character set 82): what fails with it is the job's
START_RETRY_S, MAX_START_RETRY_S = 0.05, 2.0  # a start the coder refused is tried again, with backoff


async def _first(task: asyncio.Task[None], other: Coroutine[Any, Any, object]) -> None:
    """Until `other` is done or `task` ends, whichever comes first; `other` is cancelled if still waiting."""
    waiter = asyncio.ensure_future(other)
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


class PrintStation:
    def __init__(self, name: str, st: StationConfig, cfg: LineConfig, ledger: Ledger, board: AlarmBoard,
                 printer: Printer | None = None) -> None:
        assert st.coder is not None  # StationConfig refuses a print station without one
        self.name = name
        self.coder = st.coder
        self.feed = st.feed
        self.cfg = cfg
        self.ledger = ledger
        self.board = board
        if printer is None:
            cls = load(DeviceKind.CODER, cfg.devices.coders[st.coder].type)
            printer = cls(cfg.device_settings("coders", st.coder), name=st.coder)
        self.printer: Printer = printer
        self.state = PrintState.CONNECTING
        self.feeder: Feeder | None = None
        self.primed = asyncio.Event()  # the FIFO holds codes and the coder prints: the line may run
        self.render: Any = None  # the job's renderer (code -> printed text, as read back), once a job runs

    async def connect(self, stop: asyncio.Event) -> bool:
        """Connect, retrying with backoff and an alarm; False when asked to stop first."""
        delay = 0.1
        while not stop.is_set():
            try:
                await self.printer.connect()
                self.board.set(self.coder, "communication", False)
                self.state = PrintState.READY
                return True
            except PrinterError as exc:
                self.state = PrintState.DEGRADED
                self.board.set(self.coder, "communication", True, Severity.STOP,
                               _("cannot connect: {error}").format(error=exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                delay = min(delay * 2, 5.0)
        return False

    async def run(self, job: Job, stop: asyncio.Event) -> None:
        """Feed `job` until its target is printed or `stop` is set; always reconciles before returning."""
        self.primed.clear()  # primed for THIS run: a resumed job primes its coder again
        template = self.cfg.templates[job.template]
        self.render = renderer(template, gtin=job.gtin, lot=job.lot, expiry=job.expiry)
        fnc1, first = self._gs1_settings()
        try:
            to_coder = coder_renderer(template, self.render, coder=self.coder, fnc1=fnc1, fnc1_first=first)
            # The job's own data (its lot, this coder's FNC1 spelling) must render with a plain serial:
            # if it does not, no code of the job can be printed here, and the job is refused at start
            # rather than code by code (the feeder voids single codes that do not render).
            self.printer.check_record(to_coder(PROBE_CODE))
        except Fnc1NotSet as exc:  # refused, not guessed: the line is never primed, so it does not run
            await self._refuse("gs1_fnc1", str(exc), stop)
            return
        except (ValueError, PrinterError) as exc:  # GS1Error (a ValueError), BadRecord
            await self._refuse("unprintable_job", _("coder {coder}: the job {job} cannot be printed on it: {error}; "
                                                    "the job is not printed").format(coder=self.coder, job=job.name,
                                                                                     error=exc), stop)
            return
        self.board.set(self.coder, "gs1_fnc1", False)
        self.board.set(self.coder, "unprintable_job", False)
        if not await self.connect(stop):
            return
        f = self.feed
        self.feeder = feeder = Feeder(
            self.ledger, self.printer, coder=self.coder, job=job.id, level=job.level, render=to_coder,
            target_depth=f.target_depth, low_water=f.low_water, allocate_ahead=f.allocate_ahead,
            push_chunk=f.push_chunk, poll_s=f.poll_ms / 1000, max_poll_s=f.max_poll_ms / 1000,
            line_rate_per_min=f.line_rate_per_min,
            on_alarm=self._on_alarm,
        )
        self.state = PrintState.FEEDING
        async with asyncio.TaskGroup() as tg:
            feeding = tg.create_task(feeder.run(), name=f"feeder:{self.coder}")
            tg.create_task(self._start_when_primed(feeding), name=f"start:{self.coder}")
            stopper = tg.create_task(stop.wait(), name=f"stop-wait:{self.coder}")
            await asyncio.wait([feeding, stopper], return_when=asyncio.FIRST_COMPLETED)
            feeder.stop()  # no-op when the job is done; else: flush, reconcile, return
            stopper.cancel()
        self.state = PrintState.DONE if feeder.state is FeederState.DONE else PrintState.STOPPED

    async def _refuse(self, key: str, why: str, stop: asyncio.Event) -> None:
        log.error("%s", why)
        self.state = PrintState.STOPPED
        self.board.set(self.coder, key, True, Severity.STOP, why)
        await stop.wait()

    def _gs1_settings(self) -> tuple[str | None, bool]:
        """The coder's FNC1 spelling (drivers/printers/base.py CoderSettings): from the loaded config, or
        from the printer handed in when the config was built without the loader."""
        try:
            settings = self.cfg.device_settings("coders", self.coder)
        except KeyError:
            settings = getattr(self.printer, "settings", None) or getattr(self.printer, "cfg", None)
        return getattr(settings, "gs1_fnc1", None), bool(getattr(settings, "gs1_fnc1_first", False))

    async def _start_when_primed(self, feeding: asyncio.Task[None]) -> None:
        """Start the coder once the feeder, after its reconcile, has put records in it. Woken by the
        feeder's looks and reconciles (Feeder.looked), which are what change its state and its FIFO."""
        feeder = self.feeder
        assert feeder is not None
        retry = START_RETRY_S
        while not feeding.done():
            feeder.looked.clear()
            if feeder.state is FeederState.FEEDING and feeder.open > 0:
                try:
                    await self.printer.start()
                except PrinterError as exc:
                    self.board.set(self.coder, "start", True, Severity.STOP,
                                   _("cannot start printing: {error}").format(error=exc))
                    await _first(feeding, asyncio.sleep(retry))  # a retry, not a poll: with backoff
                    retry = min(retry * 2, MAX_START_RETRY_S)
                    continue
                self.board.set(self.coder, "start", False)
                self.state = PrintState.PRINTING
                self.primed.set()
                return
            await _first(feeding, feeder.looked.wait())

    def rate_refusal(self) -> str | None:
        """Why the conveyor must not start for this coder, or None. A coder whose link cannot feed one
        code per item at the line's rate would print a stale code on the next item (a duplicate)."""
        limit = self.printer.capabilities.max_items_per_min
        rate = self.feed.line_rate_per_min
        if limit is None:
            return None
        if rate is None:
            return (f"{self.coder}: its link feeds at most {limit:g} items/min; set "
                    f"stations.{self.name}.feed.line_rate_per_min to the line's highest rate to start the line")
        if rate > limit:
            return (f"{self.coder}: the line runs at {rate:g} items/min, faster than the {limit:g}/min its link "
                    "can feed one code per item; the conveyor is not started (a stale code would print twice)")
        return None

    async def halt(self) -> None:
        """Stop printing and close the link (after the feeder has reconciled)."""
        with contextlib.suppress(PrinterError):
            await self.printer.stop()
        with contextlib.suppress(PrinterError):
            await self.printer.close()

    def _on_alarm(self, ev: AlarmEvent) -> None:
        key = str(ev.alarm)
        severity = Severity.STOP if key in STOPPING_ALARMS else Severity.WARNING
        self.board.set(self.coder, key, ev.active, severity, ev.detail)
        if key == "communication":
            if ev.active:
                self.state = PrintState.DEGRADED
            elif self.state is PrintState.DEGRADED:
                self.state = PrintState.PRINTING if self.primed.is_set() else PrintState.FEEDING

    def snapshot(self) -> dict[str, Any]:
        feeder = self.feeder
        return {"kind": "coder", "station": self.name, "state": str(self.state),
                "feeder": str(feeder.state) if feeder else None,
                "fifo_target": feeder.target_depth if feeder else None,
                "in_doubt_reconciles": sum(len(r.in_doubt) for r in feeder.reports) if feeder else 0}
