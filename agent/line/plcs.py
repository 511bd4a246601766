"""The belt, through the PLCs behind the verify stations: run and stop commands, the heartbeat and the
stack light.

Why here and not in each verify station: the belt is one for the line while each station owns only its
PLC link; starting it waits for every coder and every station (no item may pass a coder with an empty
FIFO, nor a camera whose PLC is not open), and stopping it comes before anything else on every way out.

The heartbeat (PLC_CYCLE_S): the PLC program stops the conveyor when the heartbeat register stops
changing (the agent dead, hung or restarting; docs/technicians.md), so it is written from its own task,
and again just before each run command (a PLC whose watchdog tripped while we were idle refuses to run).

pymodbus logs its own view of every failure our adapter already reports typed (an alarm on the board),
and appends a hex dump of the last frames to it unless its logger is at DEBUG: that is what flooded
stderr during the benchmark (nobody enabled debug). `quiet_pymodbus` keeps it to CRITICAL unless the
root logger is at INFO or below, i.e. `lineagent run -v`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from agent.line.alarms import AlarmBoard, Light, Severity
from agent.line.printing import PrintStation
from agent.line.resources import ResourceGuard
from agent.line.verifying import VerifyRunner, VerifyState
from agent.line.waits import end_if_cancelled
from drivers.plc import PlcError

log = logging.getLogger(__name__)

PLC_CYCLE_S = 0.25  # heartbeat and stack light; a PLC watchdog of 1-3 s sees several beats per period
PROBE_TIMEOUT_S = 10.0  # one device's answer at start-up or in an idle probe


def quiet_pymodbus() -> None:
    """pymodbus messages (and their frame dumps) only when the operator asked for them (-v)."""
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    logging.getLogger("pymodbus").setLevel(logging.NOTSET if verbose else logging.CRITICAL)


class Belt:
    """The conveyor as the runtime drives it; `running` is True only while every PLC took the run."""

    def __init__(self, printers: dict[str, PrintStation], verifiers: dict[str, VerifyRunner], board: AlarmBoard,
                 resources: ResourceGuard) -> None:
        self.printers = printers
        self.verifiers = verifiers
        self.board = board
        self.resources = resources
        self.running = False

    async def off_at_start(self) -> None:
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

    async def run_line(self, run: bool) -> bool:
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
        if ok:  # the belt does what was asked: an earlier "cannot start/stop" no longer holds
            for v in self.verifiers.values():
                self.board.set(v.plc_name, "line_run", False)
        self.running = run and ok
        return ok

    async def stop(self, limit_s: float) -> None:
        """The way out's belt stop, retried until every PLC took it or `limit_s` ran out: one write that
        timed out (a PLC slow for 0.5 s, or an answer lost to the cancelled request before it) once left
        the belt running after a crash. Past the limit the PLC's heartbeat watchdog stops it."""
        deadline = time.monotonic() + limit_s
        last: BaseException | str = "a PLC refused the stop (its alarm names it)"
        tries = 0
        while True:
            tries += 1
            # Any error is kept, not raised: this runs on the way out, and the next try may get through.
            for v in self.verifiers.values():  # idle, the link is closed; a timeout may have closed it too
                try:
                    async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                        await v.plc.open()
                except Exception as exc:  # noqa: BLE001 - kept for the log line below
                    last = exc
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    if await self.run_line(False):
                        return
            except Exception as exc:  # noqa: BLE001 - kept for the log line below
                last = exc
            if time.monotonic() >= deadline:
                log.error("the belt may still run: no PLC took the stop within %.0f s (last: %s); its heartbeat "
                          "watchdog stops it once the beats end", limit_s, last or type(last).__name__)
                return
            if tries == 1:
                log.warning("belt stop not taken, trying again for %.0f s: %s", limit_s, last or type(last).__name__)
            await asyncio.sleep(0.1)

    async def conveyor(self, job_stop: asyncio.Event) -> None:
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
            end_if_cancelled()  # cancelled in a PLC call, and the call dropped it (waits.py)
            ready = all(p.primed.is_set() for p in self.printers.values()) and all(
                v.state is not VerifyState.STARTING for v in self.verifiers.values())
            if ready and await self.run_line(True):
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await job_stop.wait()

    async def cycle(self, stop: asyncio.Event) -> None:
        """Every PLC_CYCLE_S: the heartbeat (the PLC stops the conveyor when it stops changing: the
        agent dead, hung or restarting) and the stack light when it changed."""
        plcs = {v.plc_name: v.plc for v in self.verifiers.values()}
        shown: tuple[Light, bool] | None = None
        while not stop.is_set():
            end_if_cancelled()  # cancelled in a PLC call, and the call dropped it (waits.py)
            for name, plc in plcs.items():
                try:
                    await plc.heartbeat()
                except PlcError as exc:
                    log.debug("%s: heartbeat not written: %s", name, exc)  # its own alarm is on the board
            light = (self.board.light(running=self.running), self.board.buzzer())
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
