"""A framed coder fed through a FIFO of records ("mailing", "remote buffer", serialization mode).

Why one class: pushing a batch of records is where a code can be printed twice or silently lost, and
the rules do not depend on the vendor: check every record can be framed before sending any; refuse
what cannot fit (after looking whether prints made room); pipeline the pushes; and when an answer is
refused, garbled or missing, find out from the coder how many records it really holds before raising.
A protocol provides the payload of one record, the check of its answer, and `sync()` (read the
coder's FIFO level and last printed index, reconcile the tracker, emit events).

Indexed coders (Leibinger) refuse an index out of sequence, so what they stored from a pipelined
batch is always a prefix of it; that is what makes "count what is waiting" enough to recover.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.framing import Frame
from drivers.printers.base import (
    BadRecord,
    BufferFull,
    FifoTracker,
    PrinterError,
    PrintEventKind,
    Reconciled,
    Record,
)
from drivers.printers.framed import FramedPrinter, FramedSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FifoReport:
    capacity: int
    waiting: int  # records in the FIFO now
    last_index: int | None  # index of the last record printed (0: none since power-on); None: not reported
    count: int | None = None  # the coder's product counter, when read together


class SerializingPrinter(FramedPrinter):
    def __init__(self, settings: FramedSettings, *, capacity: int, name: str) -> None:
        super().__init__(settings, name=name)
        self.capacity = capacity
        self.tracker = FifoTracker()
        self.next_index = 1  # mailing index of the next record: 1..capacity, wrapping
        self.last_push_accepted = 0  # records of the last push() the coder holds (also after an error)
        self.count_seen: int | None = None  # product counter at the last sync

    @abstractmethod
    def record_payload(self, record: Record, index: int) -> bytes:
        """The request payload that stores `record` under `index`; BadRecord if it cannot be carried."""

    @abstractmethod
    def check_push_reply(self, reply: Frame) -> None:
        """Raise Nak/BufferFull/ProtocolError unless `reply` confirms a stored record."""

    @abstractmethod
    async def read_fifo(self) -> FifoReport:
        """What the coder says about its FIFO now."""

    async def sync(self) -> tuple[int, int]:
        """Read the coder's FIFO and bring the tracker up to date; emits PRINTED and FIFO_LOST."""
        report = await self.read_fifo()
        self._apply(report)
        return report.capacity, report.waiting

    def _apply(self, report: FifoReport) -> None:
        self.report(self._reconcile(report))
        if report.count is not None:
            self.count_seen = report.count
        if not self.tracker and report.waiting == 0 and report.last_index is not None:
            # Empty on both sides: an indexed coder continues after its last print, whatever we had sent.
            self.next_index = self.index_after(report.last_index)

    def _reconcile(self, r: FifoReport) -> Reconciled:
        if r.last_index is not None:
            return self.tracker.reconcile(r.last_index, r.waiting)
        if r.count is not None and self.count_seen is not None:
            # Prints since the last look come from the product counter; a FIFO holding fewer records than
            # are left after those prints was cleared.
            printed = self.tracker.printed_count(max(0, r.count - self.count_seen)).printed
            lost = self.tracker.lose() if r.waiting != len(self.tracker) else ()
            return Reconciled(printed, lost)
        # Depth alone cannot tell a print from a clear: such a coder needs print-complete messages.
        if r.waiting <= len(self.tracker):
            return self.tracker.printed_count(len(self.tracker) - r.waiting)
        return Reconciled((), self.tracker.lose())

    def report(self, result: Reconciled) -> None:
        for seq in result.printed:
            self.emit(PrintEventKind.PRINTED, seq=seq)
        if result.lost:
            self.emit(PrintEventKind.FIFO_LOST, detail=f"{len(result.lost)} records cleared before printing")

    def index_after(self, index: int, n: int = 1) -> int:
        return (index + n - 1) % self.capacity + 1

    async def push(self, records: Sequence[Record]) -> None:
        self.last_push_accepted = 0
        indexes = [self.index_after(self.next_index, i) for i in range(len(records))]
        payloads = [self.record_payload(r, i) for r, i in zip(records, indexes, strict=True)]
        if len(self.tracker) + len(records) > self.capacity:
            await self.sync()  # prints since the last look may have made room
            if len(self.tracker) + len(records) > self.capacity:
                raise BufferFull(
                    f"{self.name}: {len(records)} records do not fit: {len(self.tracker)} of "
                    f"{self.capacity} places in the coder's FIFO are taken"
                )
        results = await self.exchange_many(payloads)
        stored, first_error = 0, None
        for i, result in enumerate(results):
            try:
                if isinstance(result, PrinterError):
                    raise result
                self.check_push_reply(result)
                stored = i + 1
            except PrinterError as exc:
                first_error = first_error or exc
        for r, index in zip(records[:stored], indexes[:stored], strict=True):
            self.tracker.pushed(r.seq, index)
        if first_error is not None:
            stored += await self._held_anyway(records[stored:], indexes[stored:])
        self.last_push_accepted = stored
        if stored:
            self.next_index = self.index_after(indexes[stored - 1])
        if first_error is not None:
            raise first_error

    async def _held_anyway(self, records: Sequence[Record], indexes: Sequence[int]) -> int:
        """After a failed answer the record may still have been stored (a garbled answer to a stored
        record): find the number of them that makes the coder's FIFO report add up, then reconcile."""
        try:
            report = await self.read_fifo()
        except PrinterError as exc:
            log.warning("%s: cannot read the FIFO after a failed push: %s", self.name, exc)
            return 0
        candidates = [(r.seq, index) for r, index in zip(records, indexes, strict=True)]
        if report.last_index is not None:
            extra = self.tracker.held(candidates, report.last_index, report.waiting)
        else:
            extra = max(0, min(report.waiting - len(self.tracker), len(candidates)))
        for seq, index in candidates[:extra]:
            self.tracker.pushed(seq, index)
        self._apply(report)
        return extra

    def check_text(self, text: str, what: str, forbidden: str, encoding: str) -> None:
        bad = sorted({c for c in text if c in forbidden})
        if bad:
            raise BadRecord(f"{self.name}: {what} {text!r} contains {bad!r}, which the protocol cannot carry")
        try:
            text.encode(encoding)
        except UnicodeEncodeError as exc:
            raise BadRecord(f"{self.name}: {what} {text!r} is not {encoding}: {exc.reason}") from None
