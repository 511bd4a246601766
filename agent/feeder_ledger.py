"""The feeder's ledger side: what it confirms, settles and allocates, run in a worker thread.

Why apart from agent/feeder.py: the loop there is about the order of events, polls and reconciles;
this is about what each of them may claim. Every claim errs towards doubt: a report the coder's own
counter contradicts confirms nothing; after a failed push nothing past it is attributed or returned
(a refused or unanswered record may be followed by stored ones); a record goes back to the pool only
when the driver proved it flushed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import StrEnum

from agent import feeder_store as store
from agent.feeder_alarms import Alarm, AlarmSink
from agent.ledger import Ledger, LedgerError
from drivers.printers.base import BadRecord, PrinterStatus
from drivers.printers.fifo import Fates

log = logging.getLogger(__name__)
Texts = list[tuple[str, str]]  # (code, record text) or (code, why it cannot be printed)


class FeederState(StrEnum):
    IDLE = "idle"  # not running
    RECONCILING = "reconciling"
    FEEDING = "feeding"  # FIFO kept at target depth
    WAITING = "waiting"  # coder faulted, unreachable, or unfit to feed: nothing is pushed
    DONE = "done"  # the job's target is printed


class ReconcileReason(StrEnum):
    STARTUP = "startup"
    STOP = "stop"  # the coder stopped printing (a stop clears the FIFO on most coders)
    FIFO_LOST = "fifo_lost"  # the coder reported its FIFO cleared
    FAULT = "fault"
    LINK = "link"  # link lost / reconnected / power loss / a device error
    PUSH_FAILED = "push_failed"
    COUNTER = "counter"  # the coder's counter contradicted the printed report
    SHUTDOWN = "shutdown"  # the feeder is asked to stop


class FeederLedger:
    """State the feeder keeps about its open records, and every ledger write it makes."""

    alarms: AlarmSink

    def __init__(self, ledger: Ledger, coder: str, job: int, level: str) -> None:
        self.ledger = ledger
        self.coder = coder
        self.job = job
        self.level = level
        # Seqs sent since the last reconcile that the coder has not yet reported printed, oldest first.
        # Counted by seq, not by the ledger's `sent` codes: the verify station may prove (or void) a code
        # before the coder's report reaches us, and a count of ledger confirmations then never came down.
        self._open_seqs: deque[int] = deque()
        self.printed_seen = 0  # prints reported since the feeder started: what the line's rate is read from
        self.pending: ReconcileReason | None = None  # a reconcile owed
        self.suspect_from: int | None = None  # first seq of a failed push since the last reconcile
        self.recount_s = 0.5
        self._seq = 0
        self._last_progress: store.Progress | None = None
        self._progress_at = 0.0
        self._confirmed_since_count = 0  # confirmations since the last full progress count
        self.unprintable_streak = 0  # codes (or refused pushes) in a row this coder could not print

    @property
    def open(self) -> int:
        """Records sent to the coder and not yet settled (reported printed, returned or in doubt)."""
        return len(self._open_seqs)

    # ---- confirming ------------------------------------------------------------------------------

    def confirm(self, status: PrinterStatus) -> int:
        """Confirm what the driver reports printed (status.last_printed); a report the coder's own counter
        contradicts confirms nothing and asks for a reconcile (those codes end in doubt, never falsely
        printed). A counter alone confirms nothing here: a single slot counts blank products too, so only
        the driver, which knows what its slot held, may turn a count into a seq."""
        n = 0
        through: int | None = None
        if status.last_printed is not None:
            through = self._trusted(status.last_printed)
            try:
                n = store.confirm_upto(self.ledger, self.coder, through, print_count=status.print_count)
            except store.CounterMismatch as exc:
                log.warning("%s", exc)
                self.pending = self.pending or ReconcileReason.COUNTER
                through = None
        self._confirmed(n, through)
        return n

    def look(self, status: PrinterStatus | None) -> store.Progress:
        """One worker-thread hop per look at the coder: confirm what `status` reports printed (None:
        nothing in it to trust), then the job's progress (read whether or not the look refills: a read
        costs less than a second hop)."""
        if status is not None:
            self.confirm(status)
        return self.progress()

    def confirm_event(self, seq: int) -> int:
        through = self._trusted(seq)
        n = store.confirm_upto(self.ledger, self.coder, through)
        self._confirmed(n, through)
        return n

    def _confirmed(self, n: int, through: int | None) -> None:
        """`n` codes moved to printed in the ledger; the coder printed every seq up to `through`."""
        self.ledger.maybe_commit()
        self._confirmed_since_count += n
        if through is not None:
            while self._open_seqs and self._open_seqs[0] <= through:
                self._open_seqs.popleft()
                self.printed_seen += 1

    def count_open(self) -> None:
        """For a coder that confirms nothing itself: what is open is what the camera has not proven yet."""
        seqs = [seq for seq, _ in store.open_records(self.ledger, self.coder)]
        self.printed_seen += max(0, len(self._open_seqs) - len(seqs))
        self._open_seqs = deque(seqs)

    def _trusted(self, last_printed: int) -> int:
        """After a failed push nobody knows which of its records reached the FIFO, nor in what order,
        so a print the driver puts on one of them cannot be attributed: those go in doubt instead."""
        if self.suspect_from is None:
            return last_printed
        return min(last_printed, self.suspect_from - 1)

    # ---- settling --------------------------------------------------------------------------------

    def settle_ledger(self, reason: ReconcileReason, status: PrinterStatus,
                      fates: Fates) -> tuple[int, store.Settled]:
        """After settle(): confirm through status, return the proven-flushed, put the rest in doubt.
        Seqs print in order, so a record the driver calls UNKNOWN caps what last_printed may confirm."""
        flushed: Sequence[int] = fates.flushed
        cap = min(fates.unknown, default=None)
        if cap is not None and status.last_printed is not None and status.last_printed >= cap:
            log.warning("%s: the driver reports seq %d printed but seq %d in doubt; confirming up to %d",
                        self.coder, status.last_printed, cap, cap - 1)
            status = dataclasses.replace(status, last_printed=cap - 1 if cap > 1 else None)
        printed = self.confirm(status)
        if self.pending is ReconcileReason.COUNTER:
            self.pending = None  # this reconcile is the one the mismatch asked for
        # After a failed push the driver's mirror may not match the coder: nothing from there is returned.
        cut = self.suspect_from
        proven = [s for s in flushed if cut is None or s < cut]
        settled = store.settle(self.ledger, self.coder, reason.value, status.print_count, proven)
        self.suspect_from = None
        self._open_seqs.clear()
        self._seq = store.next_seq(self.ledger, self.coder)
        return printed, settled

    # ---- sending ---------------------------------------------------------------------------------

    render: Callable[[str], str]
    check_record: Callable[[str], None]
    max_unprintable: int
    push_chunk: int

    def stage(self, want: int, progress: store.Progress) -> tuple[Texts, Texts, int | Exception]:
        """One worker-thread hop for a refill: take and screen the codes, then record the first chunk
        `sent` (durable on return). (code, text) to push, (code, why) voided, and the first chunk's first
        seq, or the error that kept it from being recorded (the caller raises it once the voids are
        reported)."""
        batch, bad = self.screen(self.take(want, progress))
        try:
            return batch, bad, self.record_chunk(batch[: self.push_chunk]) if batch else 0
        except Exception as exc:  # noqa: BLE001 - raised again by the caller, on the loop
            return batch, bad, exc

    def record_chunk(self, chunk: Texts) -> int:
        """Fresh seqs for `chunk`, recorded `sent`: durable before a byte of it leaves. Its first seq."""
        first = self.reserve_seqs(len(chunk))
        self.record_sent([(first + i, code) for i, (code, _) in enumerate(chunk)])
        return first

    def screen(self, codes: Sequence[str]) -> tuple[Texts, Texts]:
        """(code, record text) of each code this coder can print, and (code, why) of each it cannot,
        voided on the spot. Why here and not in push: a render error used to escape the feeder task and
        take the runtime down, and a record the driver refuses after `sent` is committed went in doubt,
        then the next code the same way, until the pool was gone. Stops once `max_unprintable` codes in
        a row failed: then it is the job or the coder, not a code, and the rest stay allocated."""
        good: list[tuple[str, str]] = []
        bad: list[tuple[str, str]] = []
        for code in codes:
            if self.unprintable_streak >= self.max_unprintable:
                break
            try:
                text = self.render(code)
                self.check_record(text)
            except (ValueError, BadRecord) as exc:  # GS1Error and UnicodeError are ValueErrors
                why = str(exc) or type(exc).__name__
                store.void_unprintable(self.ledger, code, coder=self.coder, job=self.job, reason=why)
                bad.append((code, why))
                self.unprintable_streak += 1
            else:
                good.append((code, text))
                self.unprintable_streak = 0
        return good, bad

    def reserve_seqs(self, n: int) -> int:
        """The first of `n` fresh seqs (never reused, even across a crash: the ledger knows the highest)."""
        if self._seq == 0:
            self._seq = store.next_seq(self.ledger, self.coder)
        first = self._seq
        self._seq += n
        return first

    def record_sent(self, batch: Sequence[tuple[int, str]]) -> None:
        """Durably `sent` before a byte leaves; from here a crash leaves the codes in doubt."""
        store.record_sent(self.ledger, self.coder, self.job, batch)

    def opened(self, seqs: Sequence[int]) -> None:
        """Counted open on the loop, as their push starts, not in the worker that recorded them: whoever
        watches `open` on the loop (the print station starting a primed coder) then never sees records
        the push has not yet taken the coder's link for (a start that won the link would let the first
        product find an empty buffer)."""
        self._open_seqs.extend(seqs)

    def take(self, want: int, progress: store.Progress) -> list[str]:
        """The next `want` allocated codes of the job, allocating ahead in batches when short."""
        if progress.allocated < want:
            ask = min(max(self.allocate_ahead, want), progress.needed) - progress.allocated
            if ask > 0:
                self._allocate(ask)
        return store.allocated_codes(self.ledger, self.job, want)

    allocate_ahead: int

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

    def progress(self) -> store.Progress:
        """The job's progress; recounted in full every `recount_s`, in between advanced by our own
        confirmations. A full count scans the whole job, which at 100,000 codes would cost more
        than a tick; an estimate that lags other writers by `recount_s` is harmless, because the
        job is only called done on a full count."""
        now = time.monotonic()
        last = self._last_progress
        if last is None or now - self._progress_at >= self.recount_s:
            return self._full_count(now)
        fresh = store.refresh(self.ledger, self.job, last)
        ahead = store.Progress(done=last.done + self._confirmed_since_count, sent=fresh.sent,
                               allocated=fresh.allocated, target=last.target)
        if ahead.needed == 0 and ahead.sent == 0:  # looks done: make sure with a full count
            return self._full_count(now)
        return ahead

    def _full_count(self, now: float) -> store.Progress:
        self._last_progress = store.progress(self.ledger, self.job)
        self._progress_at, self._confirmed_since_count = now, 0
        return self._last_progress
