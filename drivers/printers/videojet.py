"""Videojet 1000-line CIJ over WSI: a SINGLE-SLOT coder (packets in drivers/printers/videojet_codec.py).

Source: "Videojet 1000 Line Series WSI Communications Protocol", P/N 462115-01 Rev AD (2013): section 3
(packets, `$XX`/`!XX` check sequences summing the host's own packet), 3.5 `D`, 3.6 `U`, 3.10 `H`,
3.11 `E`, 3.13 `Q`, 3.14 `O`, 3.15 `G`, appendix 5 (per-model support). Left out: T/C/P/L/B/Z/R/K
(message editing, clock, counter reset, jet stop: nothing a feed needs; a counter reset would break
confirmation) and the head-2 port 3102.

Why single slot: 3.6 "deletes the current user field content before the new text is inserted". The
coder has no queue; it prints whatever the field holds on every product. So:
- one record at a time: push() refuses (BufferFull) while the field's record is not proven printed;
- proof is the print counter (`G A`; `G B`, the product counter, is a setting: the manual does not tie
  it to prints), read before the `U` and again after it. If it moved meanwhile, a product passed while
  the field was replaced and nobody can say which code it got: the record goes in doubt, the field is
  voided. Then the first advance proves the record printed; an advance of more than one means several
  products got it (a FAULT event; it stays PRINTED); later advances while the field still holds it are
  repeats (FAULT). `void_after_print` voids the field as soon as a print is seen (also just before the
  next `U`), so a late code costs a product without a code, never a repeat;
- settle()/clear_fifo(): read the counter, void the field (`D`, or `U` with `void_text`), read it again:
  printed before the void -> PRINTED; no product at all -> FLUSHED; a product only during the void ->
  in doubt. Whatever leaves the field's content unproven (silence, a garbled or missing answer to a
  `U`/`D` or to the count that must follow it, a counter going back, a reconnect: the coder may have
  lost power) puts the record in doubt, voids the field and refuses pushes until settle();
- the 1710 and 1610DH have no G (nor O, Q, R, Z, `!`): nothing is ever confirmed, `$XX` only means
  "received"; capabilities say so (counters=False, proves_flush=False, max_items_per_min=0).

GS1 codes: section 3 carries 20h-7Fh only, so FNC1 cannot travel as GS (1Dh), and neither the WSI manual
nor any public Videojet document read for this driver says how a user field writes FNC1 for a GS1
DataMatrix: `gs1_fnc1` (drivers/printers/base.py CoderSettings) has no default; a GS1 job is refused
until a technician sets it from the printer's barcode setup (docs/technicians.md).

Not in the manual, settings with the safe default: whether a query's data packet also carries a
check sequence before or after it (`query_check`, detected at connect: section 3 says every packet is
answered with one, the 3.15 examples show none); the coder's turnaround (20 ms); what lights the
trafficators: green is read as "printing", red as fault (the traffic light is all 3.11 gives).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, field_validator

from drivers.printers.base import (
    BadRecord,
    BufferFull,
    DeviceTimeout,
    Fault,
    Nak,
    PrinterState,
    PrinterStatus,
    PrintEvent,
    PrintEventKind,
    ProtocolError,
    Record,
    Settlement,
)
from drivers.printers.fifo import CoderKind, Fates, FifoMirror
from drivers.printers.stream_coder import StreamCoder, StreamSettings
from drivers.printers.videojet_codec import (
    CHECK_LEN,
    CheckSeq,
    Cmd,
    Counter,
    DataPacket,
    QueryCheck,
    Reply,
    ReplyReader,
    VideojetModel,
    body,
    check_name,
    check_user_data,
    counter_value,
    error_status,
    frame,
    model_rules,
    part_number,
    slot_capabilities,
)

log = logging.getLogger(__name__)

# Kept for drivers/printers/markem.py, which imported them from the old WSI driver; WSI has no such codes.
DEFAULT_STATE_CODES = {"0": PrinterState.IDLE, "1": PrinterState.PRINTING, "2": PrinterState.FAULT}
DEFAULT_FAULT_CODES = {"IL": Fault.INK_LOW, "IE": Fault.INK_EMPTY, "HF": Fault.HEAD_FAULT,
                       "BE": Fault.BUFFER_EMPTY, "CO": Fault.COVER_OPEN, "OT": Fault.OTHER}


class Holds(StrEnum):
    """What the user field holds, as far as the driver can prove."""

    UNKNOWN = "unknown"  # not since a connect, a reconnect or silence
    VOID = "void"
    RECORD = "record"  # the pending record, not yet printed
    PRINTED = "printed"  # a record already printed: every further print is a repeat


class VideojetSettings(StreamSettings):
    model: VideojetModel = Field(description="printer model (appendix 5: the 1710/1610DH lack G, O, Q, R, !)")
    user_field: str = Field("SERIAL", description="the message's text user field that carries the code")
    counter: Counter = Field(Counter.PRINT, description="A print counter (proof of a print), B product counter")
    void_text: str = Field("", max_length=50, description="text that voids the field; empty: clear it with D")
    void_after_print: bool = Field(True, description="void the field as soon as status() sees its code printed")
    query_check: QueryCheck = Field(QueryCheck.AUTO, description="check sequence around query replies")
    turnaround_s: float = Field(0.020, gt=0, le=5, description="coder time to answer one packet (manual: none)")
    rate_code_len: int = Field(50, ge=1, le=50, description="code length max_items_per_min is computed for")

    # The codec's checks raise BadRecord (a push refused); in a settings model they must be ValueErrors,
    # which pydantic turns into a validation error naming the key (`config check`: file, line, key),
    # where any other exception left the model as a traceback.
    @field_validator("user_field")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_name(v, "user field name")
        except BadRecord as exc:
            raise ValueError(str(exc)) from None

    @field_validator("void_text")
    @classmethod
    def _void(cls, v: str) -> str:
        try:
            return check_user_data(v) if v else v
        except BadRecord as exc:
            raise ValueError(str(exc)) from None

    @field_validator("gs1_fnc1")
    @classmethod
    def _fnc1(cls, v: str | None) -> str | None:
        """Section 3: a user field carries 20h-7Fh only, so a raw GS (1Dh) cannot be sent."""
        if v is not None and not all(0x20 <= ord(c) <= 0x7F for c in v):
            raise ValueError(f"{v!r}: WSI data is characters 20h-7Fh only (section 3); GS (1Dh) cannot be sent")
        return v


class VideojetWsi(StreamCoder):
    Settings: ClassVar[type[VideojetSettings]] = VideojetSettings

    def __init__(self, settings: VideojetSettings, *, name: str = "videojet") -> None:
        super().__init__(settings, name=name, capacity=1)
        self.settings = settings
        self.rules = model_rules(settings.model)
        self.counters = self.rules.has(Cmd.GET_COUNTER)
        self.slot = FifoMirror(CoderKind.SINGLE_SLOT, 1)
        self._reader = ReplyReader()
        self._replies: deque[Reply] = deque()
        self._mode = settings.query_check
        self._count: int | None = None  # the counter's last reading while the field content was known
        self._holds = Holds.UNKNOWN
        self._fates = Fates()  # facts not yet handed out by settle()
        self._needs_settle: str | None = None  # why pushes wait for settle()
        self._stale: int | None = None  # a printed seq the field may still hold while its content is unknown
        self._print_on: bool | None = None  # the last O this driver sent
        self.capabilities = slot_capabilities(
            settings.model, settings.counter, baud=None if settings.url.startswith("tcp://") else settings.baud,
            turnaround_s=settings.turnaround_s, field_name_len=len(settings.user_field),
            code_len=settings.rate_code_len, void_after_print=settings.void_after_print,
            query_check_len=CHECK_LEN if settings.query_check in (QueryCheck.BEFORE, QueryCheck.AFTER) else 0)

    # -- exchanges ----------------------------------------------------------------------------------
    async def _send(self, wire: bytes) -> None:
        self._reader.reset()
        self._replies.clear()
        await self.link.write(wire)

    async def _reply(self, what: str) -> Reply:
        while not self._replies:
            self._replies.extend(self._reader.feed(await self.link.read(self.timeout_s, what)))
        return self._replies.popleft()

    def _check(self, reply: Reply, sent: bytes) -> CheckSeq:
        name = chr(sent[0])
        if not isinstance(reply, CheckSeq):
            raise ProtocolError(f"{self.name}: data packet {reply.data!r} where the check sequence for {name} was due")
        if not reply.matches(sent):
            raise ProtocolError(f"{self.name}: check sequence {reply} does not sum our {name} packet "
                                f"({CheckSeq(reply.ok, sum(sent) & 0xFF)} expected): line error")
        if not reply.ok:
            raise Nak(f"{self.name}: printer refused WSI {sent!r} ({reply}: unknown command or failed)")
        return reply

    def _in_step(self) -> None:
        if self._replies:
            raise ProtocolError(f"{self.name}: more answers than packets sent: {list(self._replies)!r}")

    async def _command(self, cmd: Cmd, *fields: str) -> None:
        sent = body(cmd, *fields)
        await self._send(frame(sent))
        self._check(await self._reply(f"check sequence for WSI {cmd.name}"), sent)
        self._in_step()

    async def _query(self, cmd: Cmd, *fields: str) -> DataPacket:
        """The data packet, with or without a check sequence (query_check; AUTO settles on the first)."""
        sent = body(cmd, *fields)
        await self._send(frame(sent))
        first = await self._reply(f"answer to WSI {cmd.name}")
        if isinstance(first, CheckSeq):  # `!XX`, or a `$XX` before the data
            self._check(first, sent)
            first = await self._reply(f"data packet for WSI {cmd.name}")
            self._mode = QueryCheck.BEFORE if self._mode is QueryCheck.AUTO else self._mode
        if not isinstance(first, DataPacket):
            raise ProtocolError(f"{self.name}: two check sequences and no data for WSI {cmd.name}")
        if self._mode is QueryCheck.AFTER:
            self._check(await self._reply(f"check sequence after the {cmd.name} data"), sent)
        elif self._mode is QueryCheck.AUTO:
            try:
                self._check(await self._reply(f"a check sequence after the {cmd.name} data (none is normal)"), sent)
                self._mode = QueryCheck.AFTER
            except DeviceTimeout:
                self._mode = QueryCheck.NONE
            log.info("%s: query replies come as %s", self.name, self._mode.value)
        self._in_step()
        return first

    async def _read_counter(self) -> int:
        return counter_value(await self._query(Cmd.GET_COUNTER, self.settings.counter.value))

    async def _void(self) -> None:
        """Without a clear `$XX` the field may be void or not: whatever it held is then in doubt."""
        try:
            if self.settings.void_text:
                await self._command(Cmd.UPDATE_USER_FIELD, self.settings.user_field, self.settings.void_text)
            else:
                await self._command(Cmd.CLEAR_USER_FIELD, self.settings.user_field)
        except Nak:
            raise  # `!XX`: not executed, the field is as it was
        except BaseException:
            self._lose("no clear answer to the void")
            raise
        self._holds = Holds.VOID

    async def _count_after(self, what: str) -> int:
        """The reading that proves a change of the field; without it the pending record is in doubt."""
        try:
            return await self._read_counter()
        except BaseException:
            self._lose(f"the counter after the {what} was not read")
            raise

    # -- the field and the counter --------------------------------------------------------------------
    def _event(self, kind: PrintEventKind, seq: int | None = None, detail: str = "") -> None:
        self._publish([PrintEvent(kind, time.monotonic(), seq=seq, detail=detail)])

    def _pending(self) -> int | None:
        return self.slot.pending[0][0] if self.slot.pending else None

    def _observe(self, count: int) -> None:
        """A fresh counter reading: attribute the products counted since the last one to the field."""
        prev, self._count = self._count, count
        if prev is None or count == prev:
            return
        if count < prev:
            self._lose(f"counter {self.settings.counter.value} went back from {prev} to {count} (reset?)")
            return
        n = count - prev
        seq = self._pending()
        if self._holds is Holds.RECORD and seq is not None:
            self._fates += self.slot.printed(1)
            self._holds = Holds.PRINTED
            self._event(PrintEventKind.PRINTED, seq)
            if n > 1:
                self._event(PrintEventKind.FAULT, seq, f"seq {seq} printed on {n} products (the counter advanced "
                            f"by {n} for one code): a duplicate print, remove those products")
        elif self._holds is Holds.PRINTED:
            self._event(PrintEventKind.FAULT, self.slot.last_printed, f"seq {self.slot.last_printed} printed "
                        f"again on {n} more product(s): no new code reached the field in time")
        else:
            log.warning("%s: %d product(s) printed with the field %s", self.name, n, self._holds.value)

    def _lose(self, why: str) -> None:
        """The field's record may or may not be on a product: in doubt; pushes wait for settle()."""
        if self._holds is Holds.PRINTED:  # a printed code may stay in the field until _repair voids it
            self._stale = self.slot.last_printed
        fates = self.slot.lose()
        self._holds = Holds.UNKNOWN
        if fates.unknown:
            self._fates += fates
            self._needs_settle = why
            log.warning("%s: seq %s in doubt: %s", self.name, fates.unknown, why)
            self._event(PrintEventKind.FIFO_LOST, fates.unknown[0], f"seq {fates.unknown[0]} in doubt: {why}")

    _doubt = _lose  # StreamCoder: silence or a garbled answer to a store

    async def _repair(self) -> None:
        """A field of unknown content may hold a code that prints on every product: void it, re-base."""
        if self._holds is not Holds.UNKNOWN:
            return
        self._lose("the field's content is unknown")  # a record still listed cannot be proven either way
        await self._void()
        try:
            count = await self._read_counter() if self.counters else None
        except BaseException:
            self._holds = Holds.UNKNOWN  # void, but nothing re-based: the next call repairs again
            raise
        if self._stale is not None and (count is None or count != self._count):
            self._event(PrintEventKind.FAULT, self._stale, f"seq {self._stale} may have been printed again: "
                        "products passed while the field's content was unknown")
        self._count, self._stale = count, None

    async def _flush(self) -> None:
        """Read, void, read: every print before the void is counted, so what did not print is FLUSHED."""
        if not self.counters or self._holds is Holds.UNKNOWN:
            self._holds = Holds.UNKNOWN  # no G: whether the record printed cannot be known
            await self._repair()
            self._needs_settle = None
            return
        self._observe(await self._read_counter())
        before, held = self._count, self._holds
        await self._void()
        after = await self._count_after("void")
        seq = self._pending()
        if seq is not None and after == before:
            self._fates += self.slot.flushed()
        elif seq is not None:
            self._lose("a product passed while the field was voided")
        elif held is Holds.PRINTED and after != before:
            self._event(PrintEventKind.FAULT, self.slot.last_printed, f"seq {self.slot.last_printed} may have "
                        "been printed again: products passed while the field was voided")
        self._count, self._holds, self._needs_settle = after, Holds.VOID, None

    # -- connection -----------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Then void the field: it may hold a code of an earlier run that would print on every product."""
        await super().connect()
        await self._exchange(self._repair)

    async def _probe(self) -> None:
        """`H`, which every model answers; the first query also settles query_check=auto."""
        part_number(await self._query(Cmd.PART_NUMBER))

    async def _after_outage(self) -> None:
        """The coder may have lost power: its counter is no proof across it. Doubt, then void."""
        self._lose("link was down (power loss?)")
        self._print_on = None
        await self._repair()

    # -- the Printer interface ------------------------------------------------------------------------
    async def identity(self) -> dict[str, str]:
        async def op() -> dict[str, str]:
            out = {"protocol": "videojet-wsi", "model": self.settings.model.value,
                   "part_number": part_number(await self._query(Cmd.PART_NUMBER)),
                   "query_check": self._mode.value}
            if self.rules.has(Cmd.SELECTED_MESSAGE):
                out["message"] = (await self._query(Cmd.SELECTED_MESSAGE)).data
            return out

        return await self._exchange(op, retry=True)

    async def status(self) -> PrinterStatus:
        async def op() -> PrinterStatus:
            await self._repair()
            count = None
            if self.counters:
                count = await self._read_counter()
                self._observe(count)
                await self._repair()  # a counter that went back leaves nothing provable: void, re-base
                if self._holds is Holds.PRINTED and self.settings.void_after_print:
                    await self._void()
            e = error_status(await self._query(Cmd.ERROR_STATUS))
            state = e.state if self._print_on is not False or e.state is PrinterState.FAULT else PrinterState.IDLE
            return PrinterStatus(
                state=state, faults=e.faults, fifo_depth=len(self.slot), fifo_capacity=1,
                last_printed=self.slot.last_printed, print_count=count, fifo_lost=self.slot.lost, detail=e.detail,
            )

        return await self._exchange(op, retry=True)

    async def select_job(self, name: str) -> None:
        check_name(name, "message name")

        async def op() -> None:
            if self.slot.pending:  # the new message may not hold the field: settle the record first
                await self._flush()
            await self._command(Cmd.SELECT_MESSAGE, name)
            if self.rules.has(Cmd.SELECTED_MESSAGE):  # 3.1: an unknown message leaves the old one selected
                got = (await self._query(Cmd.SELECTED_MESSAGE)).data
                if got.rstrip(" ") != name:
                    raise Nak(f"{self.name}: asked for message {name!r}, printer has {got!r} selected")

        await self._exchange(op)

    async def push(self, records: Sequence[Record]) -> None:
        for r in records:  # nothing is sent for a batch holding a record WSI cannot carry
            check_user_data(r.text)
        if len(records) > 1:
            raise BufferFull(f"{self.name}: {len(records)} records pushed; a WSI user field holds one")
        if not records:
            return
        record = records[0]

        async def op() -> None:
            if self.counters:
                await self._repair()
                self._observe(await self._read_counter())
                await self._repair()  # a counter that went back re-bases here
            if self._needs_settle is not None:
                raise Nak(f"{self.name}: a record is in doubt ({self._needs_settle}); settle() before pushing")
            seq = self._pending()
            if seq is not None:
                why = "not yet counted" if self.counters else f"never provable on a {self.settings.model.value}"
                raise BufferFull(f"{self.name}: seq {seq} holds the field, {why}; seq {record.seq} must wait")
            prev = self.slot.last_printed if self._holds is Holds.PRINTED else None
            if prev is not None and self.settings.void_after_print:
                await self._void()  # should the update fail, the field holds nothing that printed already
            self.slot.pushed(record.seq)  # from here a lost answer leaves it in doubt (_doubt)
            try:
                await self._command(Cmd.UPDATE_USER_FIELD, self.settings.user_field, record.text)
            except Nak:
                self.slot.pending.pop()  # `!XX`: not executed, the field is unchanged
                raise
            except BaseException:  # silence, garbage, cancelled: stored or not, nobody knows
                self._lose("no clear answer to the update")
                raise
            self._holds = Holds.RECORD
            if self.counters:
                before, after = self._count, await self._count_after("update")
                if after != before:
                    self._event(PrintEventKind.FAULT, record.seq, f"a product passed while seq {record.seq} was "
                                "being written: it got this code, the previous one again, or a void print")
                    if prev is not None:
                        self._event(PrintEventKind.FAULT, prev, f"seq {prev} may have been printed again")
                    self._lose("a product passed while the field was being replaced")
                    await self._repair()

        await self._exchange(op, stores=True)

    async def clear_fifo(self) -> None:
        """Void the field (never touches print on/off); the record's fate goes to the next settle()."""
        await self._exchange(self._flush, stores=True)

    async def settle(self) -> Settlement:
        await self.clear_fifo()
        status = await self.status()
        fates, self._fates = self._fates, Fates()
        return Settlement(status, fates)

    async def start(self) -> None:
        await self._print_switch(True)

    async def stop(self) -> None:
        """Print off (3.14); the field keeps its record and the counter still tells whether it printed."""
        await self._print_switch(False)

    async def _print_switch(self, on: bool) -> None:
        if not self.rules.has(Cmd.PRINT_ON_OFF):
            if not on:
                await self.clear_fifo()
            raise Nak(f"{self.name}: the {self.settings.model.value} has no print on/off over WSI (Rev AD appendix)"
                      + (": switch printing on at the printer" if on else "; the field was voided instead"))

        async def op() -> None:
            await self._command(Cmd.PRINT_ON_OFF, "1" if on else "0")
            self._print_on = on

        await self._exchange(op)

    async def clear_fault(self) -> None:
        """WSI has no fault-reset packet (section 2): check that the operator cleared it at the printer."""
        status = await self.status()
        if status.state is PrinterState.FAULT:
            raise Nak(f"{self.name}: WSI has no fault reset; clear {status.detail} at the printer")
