"""The FIFO feeder: keeps one coder's FIFO topped up with a job's codes, and never prints one twice.

Why this shape (see research/protocols.md, serialization mode):
- A code is durably `sent` (the ledger commit has returned) before its bytes leave. A crash after
  that commit can only leave the code in doubt; it can never make us send it again.
- Each record pushed gets the next seq of this coder; the seq -> code map is in the ledger
  (agent/feeder_store.py), so a new feeder after a kill -9 of the agent reconciles like the old one.
- Reconcile = flush the coder's FIFO first (so no old record can print any more), then ask what it
  printed (last_printed seq, else its counter against the last mark), confirm those codes, and put
  every other sent code in doubt. In-doubt codes are never sent again; the FIFO is primed from fresh
  codes. It runs on start-up, on a stop/fault/power loss/reconnect, and after any failed push,
  because after a failed push we cannot know what the coder kept.
- The feeder never starts or stops the coder: the line decides when to print.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from agent import feeder_store as store
from agent.feeder_alarms import Alarm, AlarmEvent, AlarmSink
from agent.ledger import Ledger, LedgerError
from drivers.printers.base import (
    Printer,
    PrinterError,
    PrinterState,
    PrinterStatus,
    PrintEvent,
    PrintEventKind,
    Record,
)

log = logging.getLogger(__name__)

__all__ = ["Alarm", "AlarmEvent", "Feeder", "FeederState", "ReconcileReason", "ReconcileReport",
           "prove_printed", "void_in_doubt"]

void_in_doubt = store.void_in_doubt
prove_printed = store.prove_printed


class FeederState(StrEnum):
    IDLE = "idle"  # not running
    RECONCILING = "reconciling"
    FEEDING = "feeding"  # FIFO kept at target depth
    WAITING = "waiting"  # coder faulted or unreachable: nothing is pushed
    DONE = "done"  # the job's target is printed


class ReconcileReason(StrEnum):
    STARTUP = "startup"
    STOP = "stop"  # the coder stopped printing (a stop clears the FIFO on most coders)
    FIFO_LOST = "fifo_lost"  # the coder reported its FIFO cleared
    FAULT = "fault"
    LINK = "link"  # link lost / reconnected / power loss
    PUSH_FAILED = "push_failed"
    SHUTDOWN = "shutdown"  # the feeder is asked to stop


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    reason: ReconcileReason
    printed: int  # codes confirmed printed by this reconcile
    in_doubt: list[str]  # codes put in doubt by it
    last_printed: int | None
    print_count: int | None


class Feeder:
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
        retry_s: float = 0.05,
        max_retry_s: float = 2.0,
        shutdown_s: float = 10.0,
        on_alarm: Callable[[AlarmEvent], None] | None = None,
        alarms: asyncio.Queue[AlarmEvent] | None = None,
    ) -> None:
        capacity = printer.capabilities.fifo_capacity
        self.ledger = ledger
        self.printer = printer
        self.coder = coder
        self.job = job
        self.level = level
        self.render = render
        self.target_depth = min(target_depth or capacity, capacity)
        self.low_water = low_water if low_water is not None else max(1, self.target_depth // 4)
        self.allocate_ahead = allocate_ahead or 2 * capacity
        self.push_chunk = push_chunk
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.shutdown_s = shutdown_s  # how long stop() keeps trying to reconcile with a silent coder
        self.alarms = AlarmSink(coder, callback=on_alarm, queue=alarms)
        self.state = FeederState.IDLE
        self.reports: list[ReconcileReport] = []
        self._wake = asyncio.Event()
        self._pending_reason: ReconcileReason | None = None
        self._stopping = False
        self._last_state: PrinterState | None = None
        self._seq = 0
        self._primed = False  # a refill has followed the last reconcile
        self._distrust = False  # the driver's last printed report contradicted the counter
        self._pushed_since_reconcile = False
        self._suspect_from: int | None = None  # first seq of a failed push since the last reconcile
        self.recount_s = 0.5
        self._last_progress: store.Progress | None = None
        self._progress_at = 0.0
        self._confirmed_since_count = 0  # confirmations since the last full progress count
        self._reconciled_at = float("-inf")  # monotonic time of the last reconcile's status read

    # ---- public -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile, then keep the FIFO full until the job is done or stop() is called."""
        events = asyncio.create_task(self._consume_events(), name=f"feeder-events-{self.coder}")
        try:
            await self._reconcile_until_done(ReconcileReason.STARTUP)
            delay = self.retry_s
            while not self._stopping:
                try:
                    if await self._tick():
                        self.state = FeederState.DONE
                        return
                    delay = self.retry_s
                except PrinterError as exc:
                    self.alarms.set(Alarm.COMMUNICATION, True, f"{self.coder}: {exc}")
                    self._pending_reason = self._pending_reason or ReconcileReason.LINK
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_s)
                    continue
                if self._pending_reason is not None:
                    reason, self._pending_reason = self._pending_reason, None
                    await self._reconcile_until_done(reason)
                    continue
                await self._wait(self.poll_s)
            await self._reconcile_until_done(ReconcileReason.SHUTDOWN)
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events
            await asyncio.to_thread(self.ledger.commit)
            if self.state is not FeederState.DONE:
                self.state = FeederState.IDLE

    def stop(self) -> None:
        """Ask run() to reconcile once more (flushing the coder's FIFO) and return."""
        self._stopping = True
        self._wake.set()

    async def reconcile(self, reason: ReconcileReason) -> ReconcileReport:
        """Flush the FIFO, confirm what the coder printed, put the rest in doubt. Raises PrinterError."""
        self.state = FeederState.RECONCILING
        await self.printer.clear_fifo()
        status = await self.printer.status()
        # Anything the driver saw up to now (including the FIFO_LOST our own flush causes) is
        # covered by this status; only later events may ask for another reconcile.
        self._reconciled_at = time.monotonic()
        report = await asyncio.to_thread(self._settle, reason, status)
        self.reports.append(report)
        self.alarms.set(Alarm.COMMUNICATION, False)
        if report.in_doubt:
            self.alarms.pulse(Alarm.IN_DOUBT, f"{self.coder}: {len(report.in_doubt)} codes in doubt "
                                              f"after {reason} (never sent again; void unless proven)")
        log.info("%s: reconciled after %s: %d printed, %d in doubt", self.coder, reason,
                 report.printed, len(report.in_doubt))
        self._last_state = status.state
        self._primed = False
        self._pushed_since_reconcile = False
        return report

    # ---- the loop -----------------------------------------------------------------------------

    async def _reconcile_until_done(self, reason: ReconcileReason) -> None:
        """A reconcile needs the coder; until it answers, nothing is pushed and nothing is settled."""
        delay = self.retry_s
        give_up = time.monotonic() + self.shutdown_s
        while True:
            try:
                await self.reconcile(reason)
                return
            except PrinterError as exc:
                self.state = FeederState.WAITING
                self.alarms.set(Alarm.COMMUNICATION, True, f"{self.coder}: cannot reconcile: {exc}")
                if reason is ReconcileReason.SHUTDOWN and time.monotonic() >= give_up:
                    # The codes stay `sent`: the next feeder's start-up reconcile settles them.
                    log.warning("%s: shut down without reconciling: %s", self.coder, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_s)

    async def _tick(self) -> bool:
        """One look at the coder and one refill; True when the job's target is printed."""
        status = await self.printer.status()
        await asyncio.to_thread(self._confirm, status)
        self.alarms.set(Alarm.COMMUNICATION, False)
        reason = self._needs_reconcile(status)
        self._last_state = status.state
        if reason is not None:
            self._pending_reason = reason
            return False
        if status.state in (PrinterState.FAULT, PrinterState.OFFLINE):
            self.state = FeederState.WAITING
            self.alarms.set(Alarm.CODER_FAULT, True, f"{self.coder}: {status.state} "
                                                     f"{sorted(status.faults)} {status.detail}".strip())
            return False
        self.alarms.set(Alarm.CODER_FAULT, False)
        self.state = FeederState.FEEDING
        progress = await asyncio.to_thread(self._progress)
        if status.fifo_depth is not None:
            depth = status.fifo_depth
        else:
            depth = len(await asyncio.to_thread(store.open_records, self.ledger, self.coder))
        if progress.needed == 0 and progress.sent == 0:
            self._level_alarms(status, depth, depth, done=True)
            return True
        want = min(self.target_depth - depth, progress.needed)
        pushed = await self._push(want, progress) if want > 0 else 0
        self._level_alarms(status, depth, depth + pushed, done=progress.needed == 0)
        return False

    def _needs_reconcile(self, status: PrinterStatus) -> ReconcileReason | None:
        # fifo_lost means "cleared since the last push": before our first push after a reconcile,
        # the FIFO held nothing of ours, so there is nothing to reconcile (and the flag may still
        # show the flush that reconcile itself did).
        if status.fifo_lost and self._pushed_since_reconcile:
            return ReconcileReason.FIFO_LOST
        was_printing = self._last_state is PrinterState.PRINTING
        if was_printing and status.state is PrinterState.FAULT:
            return ReconcileReason.FAULT
        if was_printing and status.state is not PrinterState.PRINTING:
            return ReconcileReason.STOP
        if self._last_state is PrinterState.OFFLINE and status.state is not PrinterState.OFFLINE:
            return ReconcileReason.LINK
        return None

    def _level_alarms(self, status: PrinterStatus, seen: int, after: int, *, done: bool) -> None:
        """`seen`: the depth the coder reported (what it drained to since the last refill); `after`:
        the depth once this tick's refill is in. Not judged on the first tick after a reconcile,
        when an empty FIFO is the feeder's own doing and is being primed."""
        printing = status.state is PrinterState.PRINTING and not done
        if not self._primed and printing:
            self._primed = True
            return
        self.alarms.set(Alarm.FIFO_EMPTY, printing and after == 0,
                        f"{self.coder}: printing with an empty FIFO; items pass unmarked")
        self.alarms.set(Alarm.SLOW_FEED, printing and 0 < seen < self.low_water,
                        f"{self.coder}: FIFO drained to {seen}, below low water {self.low_water}")

    async def _push(self, want: int, progress: store.Progress) -> int:
        """Send up to `want` fresh codes; returns how many the coder accepted."""
        codes = await asyncio.to_thread(self._take, want, progress)
        pushed = 0
        if not codes:
            return pushed
        if self._seq == 0:
            self._seq = await asyncio.to_thread(store.next_seq, self.ledger, self.coder)
        for start in range(0, len(codes), self.push_chunk):
            chunk = codes[start : start + self.push_chunk]
            records = [Record(self._seq + i, self.render(code)) for i, code in enumerate(chunk)]
            batch = [(r.seq, code) for r, code in zip(records, chunk, strict=True)]
            await asyncio.to_thread(store.record_sent, self.ledger, self.coder, self.job, batch)
            self._seq += len(chunk)
            self._pushed_since_reconcile = True
            try:
                await self.printer.push(records)
            except PrinterError as exc:
                log.warning("%s: push of seq %d..%d failed: %s", self.coder, records[0].seq,
                            records[-1].seq, exc)
                self._pending_reason = ReconcileReason.PUSH_FAILED
                self._suspect_from = records[0].seq
                return pushed
            pushed += len(chunk)
        return pushed

    def _take(self, want: int, progress: store.Progress) -> list[str]:
        """The next `want` allocated codes of the job, allocating ahead in batches when short."""
        if progress.allocated < want:
            ask = min(max(self.allocate_ahead, want), progress.needed) - progress.allocated
            if ask > 0:
                self._allocate(ask)
        return store.allocated_codes(self.ledger, self.job, want)

    def _allocate(self, ask: int) -> None:
        try:
            self.ledger.allocate(self.job, self.level, ask)
            self.alarms.set(Alarm.CODES_SHORT, False)
            return
        except LedgerError as exc:
            self.alarms.set(Alarm.CODES_SHORT, True, f"{self.coder}: {exc}")
        left = store.available_count(self.ledger, self.level)
        if left > 0:
            self.ledger.allocate(self.job, self.level, min(left, ask))

    # ---- ledger side (worker thread) ----------------------------------------------------------

    def _confirm(self, status: PrinterStatus) -> int:
        """Confirm what the coder reports printed; a report its own counter contradicts confirms
        nothing and asks for a reconcile (the codes concerned end in doubt, never falsely printed)."""
        if status.last_printed is not None:
            try:
                n = store.confirm_upto(self.ledger, self.coder, self._trusted(status.last_printed),
                                       print_count=status.print_count)
            except store.CounterMismatch as exc:
                log.warning("%s", exc)
                self._pending_reason = ReconcileReason.FIFO_LOST
                self._distrust = True
                n = 0
        elif status.print_count is not None and (mark := store.get_mark(self.ledger, self.coder)):
            n = store.confirm_by_count(self.ledger, self.coder, mark, status.print_count)
        else:
            n = 0
        self.ledger.maybe_commit()
        self._confirmed_since_count += n
        return n

    def _progress(self) -> store.Progress:
        """The job's progress; recounted in full every `recount_s`, in between advanced by our own
        confirmations. A full count scans the whole job, which at 100,000 codes would cost more
        than a tick; an estimate that lags other writers by `recount_s` is harmless, because the
        job is only called done on a full count."""
        now = time.monotonic()
        last = self._last_progress
        if last is None or now - self._progress_at >= self.recount_s:
            self._last_progress, self._progress_at, self._confirmed_since_count = (
                store.progress(self.ledger, self.job), now, 0)
            return self._last_progress
        fresh = store.refresh(self.ledger, self.job, last)
        ahead = store.Progress(done=last.done + self._confirmed_since_count, sent=fresh.sent,
                               allocated=fresh.allocated, target=last.target)
        if ahead.needed == 0 and ahead.sent == 0:  # looks done: make sure with a full count
            self._last_progress, self._progress_at, self._confirmed_since_count = (
                store.progress(self.ledger, self.job), now, 0)
            return self._last_progress
        return ahead

    def _confirm_event(self, seq: int) -> None:
        self._confirmed_since_count += store.confirm_upto(self.ledger, self.coder, self._trusted(seq))

    def _trusted(self, last_printed: int) -> int:
        """After a failed push nobody knows which of its records reached the FIFO, nor in what order
        (a refused or unanswered record may be followed by stored ones), so a print the driver puts
        on one of them cannot be attributed: those codes go in doubt rather than printed."""
        if self._suspect_from is None:
            return last_printed
        return min(last_printed, self._suspect_from - 1)

    def _settle(self, reason: ReconcileReason, status: PrinterStatus) -> ReconcileReport:
        self._distrust = False
        printed = self._confirm(status)
        if self._distrust:
            self._pending_reason = None  # this reconcile is the one the mismatch asked for
        doubt = store.settle_in_doubt(self.ledger, self.coder, reason.value, status.print_count)
        self._suspect_from = None
        self._seq = store.next_seq(self.ledger, self.coder)
        return ReconcileReport(reason, printed, doubt, status.last_printed, status.print_count)

    # ---- events -------------------------------------------------------------------------------

    async def _consume_events(self) -> None:
        """Print-complete events confirm at once; a FIFO loss or fault wakes the loop to reconcile."""
        async for event in self.printer.events():
            await self._on_event(event)

    async def _on_event(self, event: PrintEvent) -> None:
        if event.kind is PrintEventKind.PRINTED and event.seq is not None:
            if self.printer.capabilities.counters:
                self._wake.set()  # confirm from the next status, where the counter can check it
            else:
                await asyncio.to_thread(self._confirm_event, event.seq)
            return
        if event.at < self._reconciled_at:
            return  # seen before the last reconcile read the coder: that reconcile covered it
        if event.kind is PrintEventKind.FIFO_LOST:
            self._pending_reason = self._pending_reason or ReconcileReason.FIFO_LOST
        elif event.kind is PrintEventKind.FAULT:
            self._pending_reason = self._pending_reason or ReconcileReason.FAULT
        elif event.kind is PrintEventKind.LINK_DOWN:
            self._pending_reason = self._pending_reason or ReconcileReason.LINK
        self._wake.set()

    async def _wait(self, seconds: float) -> None:
        """Sleep until the next poll, or less when an event wants a reconcile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()
