"""The generic configurable coder driver: every byte of the protocol comes from a protocol file.

Why: a site with a coder we have no driver for (Domino, KGK, Chinese CIJ/TIJ brands, whose vendors
publish no protocol) describes it in config/printers/<name>.yaml (model and rules in
drivers/printers/generic_spec.py) instead of waiting for code. The proof that the description is rich
enough: the files for the four protocols we know from primary sources (videojet_wsi, hitachi_rx,
leibinger, markem_ngpcl) drive this class through the contract tests against the native simulators.

What the driver does with the file: frames requests, runs the handshake (ENQ before each framed
request, a resend byte before repeating a request whose answer was lost, a device asking for a
retransmit), checks each answer (a regex, or the check sequence computed from the request it answers,
or no answer at all), maps refusals to typed errors, and keeps one FifoMirror (drivers/printers/fifo.py)
of what the coder holds, advanced by the coder's last printed index, its print counter or its
print-complete messages. Capabilities come from the file's `coder` section and the commands it has, so
a coder that reports no counter is never promised one. Where the driver cannot prove what happened to a
record (a reconnect, a stop it did not order, a depth that does not add up), the record is UNKNOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Sequence

from drivers.framing import Frame
from drivers.printers.base import (
    BufferFull,
    Capabilities,
    Fault,
    Nak,
    PrinterError,
    PrinterState,
    PrinterStatus,
    PrintEventKind,
    Record,
    Settlement,
)
from drivers.printers.fifo import CoderKind, Fates, FifoMirror
from drivers.printers.generic_link import GenericLink, GenericSettings
from drivers.printers.generic_spec import CommandModel, Reply

__all__ = ["GenericPrinter", "GenericSettings"]
log = logging.getLogger(__name__)


class GenericPrinter(GenericLink):
    Settings = GenericSettings

    def __init__(self, settings: GenericSettings, *, name: str = "generic") -> None:
        super().__init__(settings, name=name)
        p = self.protocol
        coder = p.coder
        if settings.capacity and coder.kind is not CoderKind.SINGLE_SLOT:
            coder = coder.model_copy(update={"capacity": settings.capacity})
        self.coder = coder
        self.mirror = FifoMirror(coder.kind, coder.feeder_capacity)
        self.capabilities = Capabilities(
            fifo_capacity=coder.feeder_capacity,
            indexed=p.indexed,
            print_complete_events=any(e.kind == "printed" for e in p.events),
            counters=p.commands.counters is not None,
            extra={"protocol": p.name},
            kind=coder.kind,
            status=p.commands.status is not None,
            double_print_guard=coder.double_print_guard,
            proves_flush=coder.proves_flush and p.commands.clear_fifo is not None,
            max_items_per_min=coder.max_items_per_min,
        )
        self._event_rules = [(re.compile(e.match), e.kind) for e in p.events]
        self.next_index = 1
        self.last_index: int | None = None  # the coder's last printed index, as last reported
        self.count_seen: int | None = None  # the coder's print counter, as last read
        self._recent: deque[int] = deque(maxlen=256)  # indexes confirmed printed, newest last
        self._printing = False  # the coder was printing at the last look (a stop empties its queue)
        self._restart_due = False  # a clear_fifo since the last start (Hitachi needs "restart")
        self._flush_due = False  # the coder may hold records the mirror does not: empty it before a push
        self._attempted_next = 1  # the index after the last one ever sent
        # Indexes of an answered push still on the wire, and the last print-complete message that named
        # one of them: a record prints (and its message arrives) before the push's last answer is in.
        self._inflight: frozenset[int] = frozenset()
        self._early: int | None = None

    @property
    def tracker(self) -> FifoMirror:
        """The mirror under the name callers of the old SerializingPrinter use (`len(driver.tracker)`)."""
        return self.mirror

    # --- answers ---------------------------------------------------------------------------------

    def is_unsolicited(self, frame: Frame) -> bool:
        return not frame.token and any(rx.search(self.codec.text(frame)) for rx, _ in self._event_rules)

    def on_unsolicited(self, frame: Frame) -> None:
        for rx, kind in self._event_rules:
            m = rx.search(self.codec.text(frame))
            if m is None or kind != "printed":
                continue
            index = m.groupdict().get("index")
            if index is not None and index.isdigit():
                if int(index) in self._inflight and all(t != int(index) for _, t in self.mirror.pending):
                    self._early = int(index)  # ours, not in the mirror yet: counted once push() adds it
                self._report(self._printed_through(int(index)))
                self.last_index = int(index)
            elif index is None:
                self._report(self.mirror.printed(1))
            return

    # --- the coder's FIFO ------------------------------------------------------------------------

    def _tag(self, k: int) -> int | None:
        if not self.protocol.indexed:
            return None
        wrap = self.coder.index_wraps_at
        return (self.next_index + k - 1) % wrap + 1 if wrap else self.next_index + k

    def _printed_through(self, tag: int) -> Fates:
        """The coder's last started print carries `tag`: it and every record before it printed."""
        tags = [t for _, t in self.mirror.pending]
        if tag not in tags:
            return Fates()
        self._recent.extend(t for t in tags[: tags.index(tag) + 1] if t is not None)
        return self.mirror.printed_through(tag) or Fates()

    def _report(self, fates: Fates) -> None:
        for seq in fates.printed:
            self.emit(PrintEventKind.PRINTED, seq=seq)
        lost = fates.flushed + fates.unknown
        if lost:
            self.emit(PrintEventKind.FIFO_LOST, detail=f"{len(lost)} records cleared before printing")

    async def _progress(self, *, after_clear: bool = False) -> tuple[int | None, int | None, int | None]:
        """Read what the coder says (fifo query, counter), advance the mirror, emit events. A depth
        that does not add up means the queue changed behind our back: the rest is UNKNOWN. Returns
        (depth, capacity, count)."""
        depth = capacity = last = count = None
        if self.protocol.commands.fifo is not None:
            values = await self._run("fifo", retry=True)
            depth, capacity = self.codec.number(values, "depth"), self.codec.number(values, "capacity")
            last = self.codec.number(values, "last_index") if self.protocol.indexed else None
        if self.protocol.commands.counters is not None:
            count = self.codec.number(await self._run("counters", retry=True), "count")
        fates = Fates()
        stale = 0  # prints we already counted (print-complete messages) after the coder took this report
        if last is not None and last != self.last_index:
            if last in self._recent and last != self._recent[-1]:
                stale = len(self._recent) - 1 - max(i for i, tag in enumerate(self._recent) if tag == last)
            else:
                fates += self._printed_through(last)
                self.last_index = last
        # One source of progress only, or a print is counted twice: the last index, else print-complete
        # messages, else the counter.
        counts = last is None and not self.capabilities.print_complete_events and not self.protocol.indexed
        if count is not None and counts and self.count_seen is not None and count >= self.count_seen:
            done = count - self.count_seen
            fates += self.mirror.printed(done)
            if done > len(fates.printed) and self.coder.kind is CoderKind.SINGLE_SLOT:
                self.emit(PrintEventKind.FAULT, faults=frozenset({Fault.OTHER}),
                          detail=f"{done - len(fates.printed)} prints with no new code: a code may repeat")
        if count is not None:
            self.count_seen = count
        held = len(self.mirror) + stale
        fits = depth is None or depth == held or (self.coder.depth_excludes_next and depth == held - 1)
        if not after_clear and not fits:
            fates += self.mirror.lose()
            self._flush_due = True  # the coder may hold records we do not know: never number into them
        if depth is not None and fits and self.mirror and not after_clear:
            depth = len(self.mirror)  # what the coder holds, the loaded record included
        if not depth and not self.mirror and last is not None:  # empty: number on after the last print
            wrap = self.coder.index_wraps_at
            self.next_index = last % wrap + 1 if wrap else max(self.next_index, last + 1)
        self._report(fates)
        return depth, capacity, count

    def check_record(self, text: str) -> None:
        self.codec.record_payload(Record(0, text), None)

    async def push(self, records: Sequence[Record]) -> None:
        if not records:
            return
        push = self.protocol.commands.push
        tags = [self._tag(k) for k in range(len(records))]
        payloads = [self.codec.record_payload(r, t) for r, t in zip(records, tags, strict=True)]
        caps = self.capabilities
        if not (caps.counters or caps.print_complete_events or caps.indexed):
            # No progress source at all (e.g. the Hitachi buffer): only the coder can say it is full (its
            # NAK, a BufferFull). Records it took long ago leave the mirror without a fate; the ledger keeps
            # them `sent` until a camera read proves them or a reconcile puts them in doubt.
            while self.mirror.pending and len(self.mirror) + len(records) > self.mirror.capacity:
                self.mirror.pending.popleft()
        elif len(records) > self.mirror.room:
            await self._progress()
            if len(records) > self.mirror.room:
                raise BufferFull(f"{self.name}: {len(records)} records do not fit: {len(self.mirror)} of "
                                 f"{self.mirror.capacity} places the coder may hold are taken")
        if self._flush_due:
            await self._resync()
            tags = [self._tag(k) for k in range(len(records))]
            payloads = [self.codec.record_payload(r, t) for r, t in zip(records, tags, strict=True)]
        if tags[-1] is not None:
            self._attempted_next = self._after(tags[-1])
        if push.reply is Reply.NONE:
            await self._push_unanswered(push, records, tags, payloads)
            return
        self._inflight, self._early = frozenset(t for t in tags if t is not None), None
        try:
            stored, error = await self._push_answered(push, payloads)
            self._pushed(records[:stored], tags[:stored])
            if error is not None:
                held = await self._held_anyway(len(records) - stored)
                self._pushed(records[stored:stored + held], tags[stored:stored + held])
        finally:
            early, self._inflight, self._early = self._early, frozenset(), None
        if early is not None:
            # Printed before this push was answered (seen under load: left out, the record was later
            # "proven flushed" by a settle and went back to the pool although it was on a product).
            self._report(self._printed_through(early))
        if error is not None:
            if not isinstance(error, Nak) or held:  # no clean refusal: the coder may hold more than we know
                self._flush_due = True
            raise error
        if self.coder.kind is CoderKind.SINGLE_SLOT and self.protocol.commands.counters is not None:
            # The field holds the new code from its acknowledgement on: prints counted before this read
            # were of the previous code (a repeat), never of this one.
            self.count_seen = self.codec.number(await self._run("counters", retry=True), "count")

    def _after(self, tag: int) -> int:
        wrap = self.coder.index_wraps_at
        return tag % wrap + 1 if wrap else tag + 1

    async def _resync(self) -> None:
        """After a push with an unknown outcome or a queue that did not add up: empty the coder before
        the next push, then number on from what it reports, so no index of ours can meet one it holds."""
        self._flush_due = False
        if self.protocol.commands.clear_fifo is None:
            self.next_index = self._attempted_next  # never reuse an index that may be in the coder
            return
        await self._run("clear_fifo")
        self._restart_due = True
        status = await self._look(after_clear=True)
        self._after_clear(status.fifo_depth, cleared=True)
        if status.fifo_depth == 0 and self.last_index is not None:
            wrap = self.coder.index_wraps_at
            self.next_index = self._after(self.last_index) if wrap else max(self._attempted_next, self.last_index + 1)
        else:
            self.next_index = self._attempted_next

    async def _push_unanswered(
        self, push: CommandModel, records: Sequence[Record], tags: Sequence[int | None], payloads: Sequence[bytes]
    ) -> None:
        """Nobody answers a push (Leibinger without echo): every record is in the mirror from the moment
        it is sent (held, printed or in doubt), then the coder's status and FIFO say what it took."""
        self._pushed(records, tags)
        for payload in payloads:
            await self._write_only(payload, raw=push.raw)
        status = await self._look()
        refused = status.faults & {Fault.BUFFER_FULL, Fault.SEQUENCE_ERROR}
        if refused:
            if self.protocol.commands.clear_fault is not None:
                await self._run("clear_fault")  # acknowledge the refusal this push caused
            self._report(self.mirror.lose())
            self._flush_due = True  # what it kept of this push is settled by a flush before the next
            text = f"{self.name}: records refused by the coder ({', '.join(sorted(refused))})"
            raise BufferFull(text) if Fault.BUFFER_FULL in refused else Nak(text)

    def _pushed(self, records: Sequence[Record], tags: Sequence[int | None]) -> None:
        for record, tag in zip(records, tags, strict=True):
            self.mirror.pushed(record.seq, tag)
            if tag is not None:
                self.next_index = tag + 1 if not self.coder.index_wraps_at else tag % self.coder.index_wraps_at + 1

    async def _held_anyway(self, candidates: int) -> int:
        """After a push nobody answered, or whose answer failed: how many more records the coder holds,
        from its depth (a prefix of them: indexed coders refuse an index out of sequence)."""
        if self.protocol.commands.fifo is None or candidates == 0:
            return 0
        try:
            depth, _, _ = await self._progress(after_clear=True)
        except PrinterError as exc:
            log.warning("%s: cannot read the FIFO after a push: %s", self.name, exc)
            return 0
        return max(0, min(candidates, (depth or 0) - len(self.mirror)))

    # --- Printer API -----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        if self.cfg.job:
            await self.select_job(self.cfg.job)
        first = await self._look(after_clear=True)
        left = first.fifo_depth or self.coder.depth_excludes_next  # a depth that leaves one out may hide one
        if left and self.protocol.commands.clear_fifo is not None:
            await self._run("clear_fifo")  # untracked records from an earlier session: never print them
            self._restart_due = True
            if first.fifo_depth:
                self.emit(PrintEventKind.FIFO_LOST, detail=f"flushed {first.fifo_depth} untracked records on connect")
            await self._look(after_clear=True)
        if self.protocol.indexed and self.coder.flush_may_keep_next and not self.coder.index_wraps_at:
            # A record an earlier session left may still print under an index after the last one:
            # number ours beyond any such, so its print is never taken for one of ours.
            self.next_index = max(self.next_index, (self.last_index or 0) + self.coder.capacity + 1)
        if self.cfg.poll_s:
            self._spawn(self._poll(self.cfg.poll_s), "poll")

    async def on_link_up(self) -> None:
        """After a reconnect or a silence: what the coder holds is only known if it can say so."""
        self._flush_due = True  # answers lost in the outage may hide records the coder took
        if self.protocol.commands.fifo is None and self.protocol.commands.counters is None:
            self._report(self.mirror.lose())
            return
        await self._progress()
        if self.protocol.commands.fifo is None:
            self._report(self.mirror.lose())

    async def identity(self) -> dict[str, str]:
        ident = {"protocol": self.protocol.name, "url": self.cfg.url}
        if self.protocol.commands.identity is not None:
            ident.update(await self._run("identity", retry=True))
        return ident

    async def status(self) -> PrinterStatus:
        return await self._look()

    async def _look(self, *, after_clear: bool = False) -> PrinterStatus:
        """Status, then the FIFO: a coder seen to stop printing (at its panel, on an error) emptied a
        queue that clears on stop, after the prints its last index or counter still counts."""
        state, faults, values = await self._state()
        stopped = self._printing and state is not None and state is not PrinterState.PRINTING
        if state is not None:
            self._printing = state is PrinterState.PRINTING
        depth, capacity, count = await self._progress(after_clear=after_clear or stopped)
        if stopped and self.coder.clear_on_stop and not after_clear:
            self._report(self.mirror.lose())
            depth = 0 if depth is not None else None
        if depth is None and self.coder.kind is CoderKind.SINGLE_SLOT:
            depth = len(self.mirror)  # the field holds the code sent last until the counter shows it printed
        return PrinterStatus(
            state=state or PrinterState.IDLE,
            faults=faults,
            fifo_depth=depth,
            fifo_capacity=capacity or self.coder.capacity,
            last_printed=self.mirror.last_printed,
            print_count=count,
            fifo_lost=self.mirror.lost,
            detail=", ".join(f"{k}={v}" for k, v in sorted(values.items())),
        )

    async def settle(self) -> Settlement:
        """Empty the queue (if the file says how), count every print before that, then: proven
        flushed where the coder can prove it, in doubt otherwise."""
        if self.protocol.commands.clear_fifo is not None:
            await self._run("clear_fifo")
            self._restart_due = True
        status = await self._look(after_clear=True)
        fates = self._after_clear(status.fifo_depth, cleared=self.protocol.commands.clear_fifo is not None)
        return Settlement(status, fates)

    def _after_clear(self, depth: int | None, *, cleared: bool) -> Fates:
        """FLUSHED only if the file says the coder proves it AND the coder now reports an empty queue
        (a clear nobody acknowledges may have been lost); UNKNOWN otherwise. Where a clear may keep the
        record loaded for the next print, that one stays in doubt."""
        empty = depth == 0 if self._has_depth else True
        proven = cleared and self.capabilities.proves_flush and empty
        fates = Fates()
        if proven and self.coder.flush_may_keep_next and self.mirror:
            fates = Fates(unknown=(self.mirror.pending.popleft()[0],))
            self.mirror.lost = True
        fates += self.mirror.flushed() if proven else self.mirror.lose()
        self._report(fates)
        return fates

    @property
    def _has_depth(self) -> bool:
        return self.protocol.commands.fifo is not None

    async def select_job(self, name: str) -> None:
        await self._run("select_job", job=name)

    async def clear_fifo(self) -> None:
        depth = None
        if self.protocol.commands.clear_fifo is not None:
            await self._run("clear_fifo")
            self._restart_due = True
            depth = (await self._look(after_clear=True)).fifo_depth
        self._after_clear(depth, cleared=self.protocol.commands.clear_fifo is not None)

    async def start(self) -> None:
        if self._restart_due and self.protocol.commands.restart is not None:
            await self._run("restart")  # Hitachi 5.9.3-2: "restart printing" after "clear buffer"
            await asyncio.sleep(self.coder.restart_settle_s)
        self._restart_due = False
        await self._run("start")
        self._printing = self._printing or self.protocol.commands.start is not None

    async def stop(self) -> None:
        await self._run("stop")
        self._printing = False
        if self.coder.clear_on_stop:  # the stop emptied the queue: what it held never printed, or did
            await self._look(after_clear=True)
            self._report(self.mirror.lose())

    async def clear_fault(self) -> None:
        await self._run("clear_fault")

    async def _poll(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(PrinterError):
                await self._progress()
