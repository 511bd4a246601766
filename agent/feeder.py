"""The FIFO feeder: keeps one coder's FIFO topped up with a job's codes, and never prints one twice.

Why this shape (serialization mode as the coders' own documents describe it; drivers/printers/fifo.py):
- A code is durably `sent` (the ledger commit has returned) before its bytes leave. A crash after
  that commit can only leave the code in doubt; it can never make us send it again.
- Each record pushed gets the next seq of this coder; the seq -> code map is in the ledger
  (agent/feeder_store.py), so a new feeder after a kill -9 of the agent reconciles like the old one.
- ONE task does everything, in order: it takes the driver's events and its own status polls from one
  inbox, so a reconcile and the events it covers can never interleave. The driver's events iterator is
  only forwarded into that inbox (`_pump`); nothing is judged there. An event the driver emitted before
  a reconcile's settle() returned (our own flush's FIFO_LOST among them) is covered by that reconcile.
- Reconcile = `printer.settle()`: the coder's queue is emptied without changing whether it prints, and
  the driver accounts for every record: printed ones through status.last_printed (confirmed), ones it
  PROVES flushed go sent -> returned (back in the pool), every other open one goes in doubt (never
  sent again, voided unless a camera read proves it). It runs on start-up, on a stop/fault/power
  loss/reconnect/failed push, and only when something of ours is open in the coder, so one panel
  stop costs one reconcile and at most the FIFO's depth in doubt. A driver that counts the coder's
  queue at every look (Capabilities.reports_fifo_loss) says itself when a stop lost records: a stop
  that lost none (a coder that ran dry, then got records for its next start) costs nothing.
- Only `Capabilities` steer it: at most `fifo_capacity` records unconfirmed in the coder (an indexed
  ring's capacity is already one less than the ring); a SINGLE_SLOT coder gets the next code only once
  the last one is confirmed printed; a coder whose link cannot feed the line's rate
  (`max_items_per_min`) raises RATE_LIMIT. A coder that can confirm nothing (no counter, no
  print-complete message) is fed, but the feeder never takes a push for a print: its codes stay `sent`
  until the camera's read proves them (agent/verify/station.py moves them to printed) or a reconcile puts
  them in doubt, and what it may keep in the coder is counted from the ledger's open codes, so only those
  proofs make room.
- A code this coder cannot print (its record does not render, or the driver's `check_record` refuses
  it) is voided before it is `sent`, with the reason (feeder_ledger.screen); `max_unprintable` in a row
  mean the job cannot print here: nothing more is pushed, confirming and settling go on.
- A device error (a timeout, a lost reply, a dropped link) is a fault the feeder reconciles from with
  backoff, never an exception that ends it. The feeder never starts or stops the coder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent import feeder_store as store
from agent.feeder_alarms import Alarm, AlarmEvent, AlarmSink
from agent.feeder_ledger import FeederLedger, FeederState, ReconcileReason
from agent.feeder_pace import Pace
from agent.ledger import Ledger
from drivers.printers.base import (
    BadRecord,
    Fault,
    Printer,
    PrinterError,
    PrinterState,
    PrinterStatus,
    PrintEvent,
    PrintEventKind,
    Record,
)
from drivers.printers.fifo import CoderKind

log = logging.getLogger(__name__)

__all__ = ["Alarm", "AlarmEvent", "Feeder", "FeederState", "ReconcileReason", "ReconcileReport",
           "prove_printed", "void_in_doubt"]

void_in_doubt = store.void_in_doubt
prove_printed = store.prove_printed
# What a device may throw at us: the typed family, and (from a driver that lets one slip) the plain
# OS/timeout errors of its transport. Each is a device fault to reconcile from, never the feeder's end.
DEVICE_ERRORS = (PrinterError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    reason: ReconcileReason
    printed: int  # codes confirmed printed by this reconcile
    in_doubt: list[str]  # codes put in doubt by it
    last_printed: int | None
    print_count: int | None
    returned: list[str] = field(default_factory=list)  # proven flushed: back in the pool


class Feeder(FeederLedger):
    """Feeds one coder from one job. `run()` until the job's target is printed or `stop()` is called."""

    def __init__(
        self,
        ledger: Ledger,
        printer: Printer,
        *,
        coder: str,
        job: int,
        level: str,
        render: Callable[[str], str],
        target_depth: int | None = None,
        low_water: int | None = None,
        allocate_ahead: int | None = None,
        push_chunk: int = 64,
        poll_s: float = 0.02,
        max_poll_s: float = 0.25,
        retry_s: float = 0.05,
        max_retry_s: float = 2.0,
        shutdown_s: float = 10.0,
        max_unprintable: int = 3,
        line_rate_per_min: float | None = None,
        on_alarm: Callable[[AlarmEvent], None] | None = None,
        alarms: asyncio.Queue[AlarmEvent] | None = None,
    ) -> None:
        caps = printer.capabilities
        capacity = 1 if caps.kind is CoderKind.SINGLE_SLOT else max(1, caps.fifo_capacity)
        super().__init__(ledger, coder, job, level)
        self.printer = printer
        self.render = render
        self.target_depth = min(target_depth or capacity, capacity)
        self.low_water = low_water if low_water is not None else max(1, self.target_depth // 4)
        self.allocate_ahead = allocate_ahead or 2 * capacity
        self.push_chunk = push_chunk
        self.poll_s = poll_s
        # Looks are paced (agent/feeder_pace.py) only where the driver checks the coder's queue count at
        # every look: there a stop that emptied the FIFO shows whenever the next look comes. Elsewhere the
        # feeder sees a stop only as a change of state between two of its looks, and a stop and restart
        # between two paced looks could go unseen (no reconcile, records left open): those stay at poll_s.
        paced = caps.reports_fifo_loss
        self.pace = Pace(poll_s=poll_s, max_poll_s=max_poll_s if paced else poll_s,
                         line_rate_per_min=line_rate_per_min)
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.shutdown_s = shutdown_s  # how long stop() keeps trying to reconcile with a silent coder
        self.max_unprintable = max_unprintable  # that many unprintable codes in a row: the job cannot print here
        self.check_record = printer.check_record
        self._refused_pushes = 0  # pushes in a row the driver refused as BadRecord (it checks only there)
        self.line_rate_per_min = line_rate_per_min
        self.alarms = AlarmSink(coder, callback=on_alarm, queue=alarms)
        self.state = FeederState.IDLE
        self.reports: list[ReconcileReport] = []
        self.can_confirm = caps.counters or caps.print_complete_events
        self.kind = caps.kind
        self._inbox: asyncio.Queue[PrintEvent | None] = asyncio.Queue()  # None: stop() was called
        self._stopping = False
        self._stop_at = float("inf")
        self._last_state: PrinterState | None = None
        self._primed = False  # a refill has followed the last reconcile
        self._first_push_at: float | None = None  # monotonic time of the first push since the reconcile
        self._settled_at = float("-inf")  # monotonic time the last settle() returned
        self._short = 0  # ticks in a row the coder held fewer records than are open
        self._due = 0.0  # monotonic time the next look is due (agent/feeder_pace.py)
        # Set after every look and reconcile: what a watcher of `state` and `open` waits on instead of polling.
        self.looked = asyncio.Event()

    # ---- public -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile, then keep the FIFO full until the job is done or stop() is called."""
        pump = asyncio.create_task(self._pump(), name=f"feeder-inbox-{self.coder}")
        try:
            await self._reconcile_until_done(ReconcileReason.STARTUP)
            if not self._fit_to_feed():
                await self._idle_until_stopped()
            delay = self.retry_s
            while not self._stopping:
                reason = await self._take_inbox()
                if reason is None:
                    try:
                        if await self._tick():
                            self.state = FeederState.DONE
                            return
                        delay = self.retry_s
                    except DEVICE_ERRORS as exc:
                        self.alarms.set(Alarm.COMMUNICATION, True, f"{self.coder}: {exc}")
                        self.state = FeederState.WAITING
                        reason = ReconcileReason.LINK if self.open else None
                        await self._sleep(delay)
                        delay = min(delay * 2, self.max_retry_s)
                        if reason is None:
                            continue
                    else:
                        reason = self.pending
                        self.pending = None
                if reason is not None:
                    await self._reconcile_until_done(reason)
                    continue
                self._due = time.monotonic() + self.pace.next_delay(self.open, self._low)
                self.looked.set()
                await self._wait_inbox()
            await self._reconcile_until_done(ReconcileReason.SHUTDOWN)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await asyncio.to_thread(self.ledger.commit)
            if self.state is not FeederState.DONE:
                self.state = FeederState.IDLE

    def stop(self) -> None:
        """Ask run() to reconcile once more (settling the coder's FIFO) and return."""
        if not self._stopping:
            self._stopping = True
            self._stop_at = time.monotonic()
        self._inbox.put_nowait(None)

    async def reconcile(self, reason: ReconcileReason) -> ReconcileReport:
        """Settle the coder's FIFO and the ledger with it. Raises PrinterError (nothing settled)."""
        self.state = FeederState.RECONCILING
        settlement = await self.printer.settle()
        # Every event the driver emitted up to here (our own flush's FIFO_LOST among them) is covered.
        self._settled_at = time.monotonic()
        status = settlement.status
        printed, settled = await asyncio.to_thread(self.settle_ledger, reason, status, settlement.fates)
        report = ReconcileReport(reason, printed, settled.in_doubt, status.last_printed, status.print_count,
                                 settled.returned)
        self.reports.append(report)
        self.alarms.set(Alarm.COMMUNICATION, False)
        if report.in_doubt:
            self.alarms.pulse(Alarm.IN_DOUBT, f"{self.coder}: {len(report.in_doubt)} codes in doubt "
                                              f"after {reason} (never sent again; void unless proven)")
        log.info("%s: reconciled after %s: %d printed, %d returned, %d in doubt", self.coder, reason,
                 report.printed, len(report.returned), len(report.in_doubt))
        self._last_state = status.state
        self._primed = False
        self._first_push_at = None
        self._short = 0
        self.pace.reset()
        self.looked.set()
        return report

    # ---- the loop -----------------------------------------------------------------------------

    def _fit_to_feed(self) -> bool:
        """What the capabilities forbid: a line faster than the coder's link can feed."""
        caps = self.printer.capabilities
        limit = caps.max_items_per_min
        if limit is not None and (self.line_rate_per_min is None or self.line_rate_per_min > limit):
            rate = "an undeclared rate" if self.line_rate_per_min is None else f"{self.line_rate_per_min:g}/min"
            self.alarms.set(Alarm.RATE_LIMIT, True,
                            f"{self.coder}: the line runs at {rate}, the coder's link feeds at most "
                            f"{limit:g} items/min; faster, an item would get a stale code (printed twice)")
            return False
        return True

    async def _idle_until_stopped(self) -> None:
        self.state = FeederState.WAITING
        while not self._stopping:
            await self._inbox.get()

    async def _reconcile_until_done(self, reason: ReconcileReason) -> None:
        """A reconcile needs the coder; until it answers, nothing is pushed and nothing is settled."""
        delay = self.retry_s
        while True:
            try:
                await self.reconcile(reason)
                self.pending = None
                return
            except DEVICE_ERRORS as exc:
                self.state = FeederState.WAITING
                self.alarms.set(Alarm.COMMUNICATION, True, f"{self.coder}: cannot reconcile: {exc}")
                if self._stopping and time.monotonic() >= self._stop_at + self.shutdown_s:
                    # The codes stay `sent`: the next feeder's start-up reconcile settles them.
                    log.warning("%s: shut down without reconciling: %s", self.coder, exc)
                    return
                await self._sleep(delay)
                delay = min(delay * 2, self.max_retry_s)

    async def _tick(self) -> bool:
        """One look at the coder and one refill; True when the job's target is printed."""
        status = await self.printer.status()
        # After a loss, last_printed may jump over lost records (seqs no longer print in order): the
        # reconcile it asks for confirms, with what settle() says about each record.
        trusted = not (status.fifo_lost and self.open)
        progress = await asyncio.to_thread(self.look, status if trusted else None)
        self.pace.looked(time.monotonic(), self.printed_seen, printing=status.state is PrinterState.PRINTING)
        self.alarms.set(Alarm.COMMUNICATION, False)
        reason = self._needs_reconcile(status)
        self._last_state = status.state
        if reason is not None:
            self.pending = self.pending or reason
            return False
        # A coder whose only fault is an empty buffer (Leibinger 5043, Videojet BE, Hitachi 0x66) waits for
        # exactly what the feeder does next: refill it, then start printing again. Waiting for that fault
        # to clear before feeding would wait forever (seen after a restart on a Leibinger), and under load
        # records went out only when a poll caught the coder between a restart and its next product.
        starved = status.state is PrinterState.FAULT and status.faults == frozenset({Fault.BUFFER_EMPTY})
        if status.state in (PrinterState.FAULT, PrinterState.OFFLINE) and not starved:
            self.state = FeederState.WAITING
            self.alarms.set(Alarm.CODER_FAULT, True, f"{self.coder}: {status.state} "
                                                     f"{sorted(status.faults)} {status.detail}".strip())
            return False
        self.alarms.set(Alarm.CODER_FAULT, False)
        self.state = FeederState.FEEDING
        if not self.can_confirm:  # only the camera confirms: count what it has not proven yet
            await asyncio.to_thread(self.count_open)
        if progress.needed == 0 and progress.sent == 0:
            self._level_alarms(status, self.open, self.open, done=True)
            return True
        if self._cannot_print:  # confirming and settling go on
            self.state = FeederState.WAITING
            return False
        seen = self.open  # records sent and not yet confirmed: the most the coder can hold of ours
        want = min(self.target_depth - seen, progress.needed)
        pushed = await self._push(want, progress) if want > 0 and self.pending is None else 0
        self._level_alarms(status, seen, seen + pushed, done=progress.needed == 0)
        return False

    def _needs_reconcile(self, status: PrinterStatus) -> ReconcileReason | None:
        """A reconcile is owed only while something of ours is open in the coder: a second look at a
        stop the last reconcile already settled finds nothing open and costs nothing."""
        if self.pending is not None:
            return self.pending
        if not self.open:
            return None
        if status.fifo_lost and self._first_push_at is not None:
            return ReconcileReason.FIFO_LOST
        # A stop or fault clears a FIFO on most coders even where the driver cannot see it; a single slot
        # keeps its code over a stop, and a slot its driver saw emptied is reported as fifo_lost, as is a
        # stop that lost ours on a coder whose driver counts its queue (`reports_fifo_loss`).
        was_printing = (self._last_state is PrinterState.PRINTING and self.kind is not CoderKind.SINGLE_SLOT
                        and not self.printer.capabilities.reports_fifo_loss)
        if was_printing and status.state is PrinterState.FAULT:
            return ReconcileReason.FAULT
        if was_printing and status.state is not PrinterState.PRINTING:
            return ReconcileReason.STOP
        if self._last_state is PrinterState.OFFLINE and status.state is not PrinterState.OFFLINE:
            return ReconcileReason.LINK
        # The coder holds fewer records than are open after every print it counted is confirmed: some
        # vanished unprinted (a stop the driver missed). Twice in a row, so a skew between one
        # reply's counter and depth is not taken for a loss. Only while the coder is not printing: while
        # it prints, its depth and our confirmations race (at 2,000 items/min this fired on every run of
        # the simulated line, and each "loss" flushed a FIFO the belt then ran dry on); a coder that
        # prints has not lost its FIFO to a stop, and a loss while printing shows as a fault or a link loss.
        if (self.printer.capabilities.counters and status.state is not PrinterState.PRINTING
                and status.fifo_depth is not None and status.fifo_depth < self.open):
            self._short += 1
            if self._short >= 2:
                return ReconcileReason.FIFO_LOST
        else:
            self._short = 0
        return None

    def _level_alarms(self, status: PrinterStatus, seen: int, after: int, *, done: bool) -> None:
        """`seen`: our records the coder may still hold before this refill; `after`: once it is in.
        Not judged on the first tick after a reconcile, when an empty FIFO is our own doing."""
        printing = status.state is PrinterState.PRINTING and not done
        if not self._primed and printing:
            self._primed = True
            return
        self.alarms.set(Alarm.FIFO_EMPTY, printing and after == 0,
                        f"{self.coder}: printing with an empty FIFO; items pass unmarked")
        low = min(self.low_water, self.target_depth)
        self.alarms.set(Alarm.SLOW_FEED, printing and self.target_depth > 1 and 0 < seen < low,
                        f"{self.coder}: FIFO drained to {seen}, below low water {self.low_water}")

    async def _push(self, want: int, progress: store.Progress) -> int:
        """Send up to `want` fresh codes; returns how many the coder accepted."""
        batch, bad, staged = await asyncio.to_thread(self.stage, want, progress)
        for code, why in bad:
            self.alarms.pulse(Alarm.UNPRINTABLE_CODE, f"{self.coder}: code {code} voided, it cannot be printed "
                                                      f"on this coder: {why}")
        if isinstance(staged, BaseException):  # the first chunk's `sent` record failed: nothing leaves
            raise staged
        first = staged
        pushed = 0
        for start in range(0, len(batch), self.push_chunk):
            chunk = batch[start : start + self.push_chunk]
            if start:  # the first chunk was recorded with the staging
                first = await asyncio.to_thread(self.record_chunk, chunk)
            records = [Record(first + i, text) for i, (_, text) in enumerate(chunk)]
            if self._first_push_at is None:
                self._first_push_at = time.monotonic()
            self.opened([r.seq for r in records])
            try:
                await self.printer.push(records)
            except DEVICE_ERRORS as exc:
                log.warning("%s: push of seq %d..%d failed: %s", self.coder, records[0].seq,
                            records[-1].seq, exc)
                self.pending = ReconcileReason.PUSH_FAILED
                self.suspect_from = records[0].seq if self.suspect_from is None else self.suspect_from
                if isinstance(exc, BadRecord):  # a driver that checks its records only in push
                    self._refused_pushes += 1
                break
            pushed += len(chunk)
            self._refused_pushes = 0
        if self._cannot_print:
            self.alarms.set(Alarm.UNPRINTABLE_JOB, True, f"{self.coder}: codes in a row cannot be printed on "
                                                         "this coder; feeding stopped")
        return pushed

    @property
    def _low(self) -> int:
        return min(self.low_water, self.target_depth)

    @property
    def _cannot_print(self) -> bool:
        return max(self.unprintable_streak, self._refused_pushes) >= self.max_unprintable

    # ---- the inbox: driver events, in order, between ticks ------------------------------------

    async def _pump(self) -> None:
        """Forwards the driver's events into the inbox; judges nothing (the loop does, in order)."""
        async for event in self.printer.events():
            self._inbox.put_nowait(event)

    async def _take_inbox(self) -> ReconcileReason | None:
        """Handle every event waiting, oldest first; the reconcile they ask for, if any."""
        while not self._inbox.empty():
            event = self._inbox.get_nowait()
            if event is not None:
                await self._on_event(event)
        return self.pending

    async def _on_event(self, event: PrintEvent) -> None:
        if event.kind is PrintEventKind.PRINTED:
            if event.seq is not None and not self.printer.capabilities.counters:
                await asyncio.to_thread(self.confirm_event, event.seq)
            return  # with a counter, the next status confirms (the counter checks the claim)
        if event.kind is PrintEventKind.FAULT:
            # Reported, not reconciled: a fault that stops the coder shows in the next status (and a
            # queue it cleared as FIFO_LOST); one that does not (a repeat or a blank print on a single
            # slot, ink low) loses nothing of ours, and a reconcile would put a good code in doubt.
            self.alarms.pulse(Alarm.CODER_FAULT, f"{self.coder}: {sorted(event.faults)} {event.detail}".strip())
            return
        if event.at <= self._settled_at or not self.open:
            return  # covered by the last settle(), or nothing of ours can be lost
        if event.kind is PrintEventKind.FIFO_LOST:
            if self._first_push_at is not None and event.at >= self._first_push_at:
                self.pending = self.pending or ReconcileReason.FIFO_LOST
        elif event.kind in (PrintEventKind.LINK_DOWN, PrintEventKind.LINK_UP):
            self.pending = self.pending or ReconcileReason.LINK

    async def _wait_inbox(self) -> None:
        """Until the next look is due (agent/feeder_pace.py). Events are handled as they come, in order;
        the wait ends at once on stop(), on an event that asks for a reconcile or may have changed the
        coder's state (a fault, a link or FIFO report), and on a print report that takes the FIFO to low
        water. A print report on a coder with a counter confirms nothing here (the next look does), and
        ending the wait on it would undo the pacing: the driver reports prints at our own looks."""
        while (left := self._due - time.monotonic()) > 0:
            item: PrintEvent | None = None
            try:
                async with asyncio.timeout(left):
                    item = await self._inbox.get()
            except TimeoutError:
                return
            if item is None:  # stop()
                return
            await self._on_event(item)
            if item.kind is not PrintEventKind.PRINTED or self.pending is not None or self.open <= self._low:
                return

    async def _sleep(self, seconds: float) -> None:
        """Back off, handling events as they come, but wake for stop()."""
        deadline = time.monotonic() + (min(seconds, self.retry_s) if self._stopping else seconds)
        while (left := deadline - time.monotonic()) > 0:
            item: PrintEvent | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    item = await self._inbox.get()
            if item is None:
                if self._stopping:
                    return
                continue
            await self._on_event(item)
