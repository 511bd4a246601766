"""Markem-Imaje NextGen coders (SmartDate and other NGPCL adopters) as a SINGLE-SLOT coder.

Primary source: "NGPCL Usage Guide" v25, Markem Technologies Ltd, 15 Oct 2014 (public as
`docs/X30通信协议NGPCL Users Guide v25.pdf` in the repository cxzhe/JunSheng); message layout in
drivers/printers/markem_codec.py. Status strings of real coders: GlenCashen/videojet-message-manager,
emulator/emulator.py `NGPCL_DS` ("captured during real testing") and server/ngpcl-status.js.

Why a single slot: a Job Update (5.5) writes the field of the current job; there is no queue. Section
10.2 says the host must not "submit fresh data ... immediately, as we may overwrite the previous image
before it is printed", and Clear to Send (5.12) exists to learn "whether the last job selection or
update has been printed (or started printing)". A field keeps its value (5.6 reads it back), so every
trigger prints it again until the next update: one code per print, the next update only after the
last is proven printed (Capabilities: kind SINGLE_SLOT, fifo_capacity 1, a line-rate limit).

How a print is proven: the Total Print Count (5.14 Counts Request `~CR|`, 5.15 `~CV0|TOTAL|n|BATCH|n|`,
counts "the NextGen core ... shall always" send). A push reads the count, sends `~JU1||0|F|V|` (timing 1:
the reply comes once the job is imaged, section 10.2), reads the field back (`~FR|F|` -> `~FC0|F|V|`,
as the public client GlenCashen server/message-store.js does) and reads the count again: unchanged,
every later print is this code; changed, a product was marked while the field changed, so the code is
in doubt. A count rising by more than one since the code was imaged means it was printed twice: a FAULT
event says so (the camera and reject gate must catch that product). `confirm="none"` (a coder that
refuses `~CR`) confirms nothing: counters False, the feeder must confirm from elsewhere.
Whatever may still sit in the field with an uncertain fate (a lost answer, a power loss, a job select
that may restore stored values) is overwritten with `void_text` so it cannot print again.

Status: Device Status (5.11) `~DS0|producing|aborted|warning|imaged|result|alloc|remaining|SS|M|`
(real coders send one more field first: codec `device_status_core`), PackML state SS, mode M (6).
PRINTING only in PRODUCING (06 with the producing flag); ABORTING/ABORTED (08/09, the captured "beam
stop") is FAULT; every other state is IDLE. A stop at the panel loses nothing (the field keeps its
code, which prints on after a restart: the count tells); stop() voids the field after READY.
start/stop are State Change (5.22) `~ST|06|` / `~ST|04|` (SmartDate targets READY, PRODUCING, HELD
only); clear_fault asks READY from ABORTED, the PackML way out if permitted (no fault-reset message).

GS1 codes: the NGPCL Usage Guide v25 does not say how a field writes FNC1 for a GS1 DataMatrix, so
`gs1_fnc1` (CoderSettings) has no default and a GS1 job is refused until it is set; its spelling may
not use { } | ~ (section 4), so `~1` cannot be sent to this coder.

Left out / settings with the safe default: the checkfield, Unicode and traditional-vs-printable are
device settings (codec docstring; `delimiters` here); the reply status field is a device setting
(4.4.3), on in every capture (`reply_status`; the counts reply shows which, and wins); how long
imaging takes is not published (`imaging_s`, conservative); when the count counts a print (start or
end) is not published, so nothing is ever proven FLUSHED (proves_flush False): a code whose print is
not counted goes in doubt. Clear to Send (5.12, `~DC`/`~DV`) and Print Status (5.20, `~PS`/`~PR`) are
requests, not unsolicited messages (4.4.3: "There are no unsolicited responses"); the driver does not
need them. Multi-head line references and the 5600/5800 print queue (11.1.3) are not covered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from drivers.printers.base import (
    BadRecord,
    BufferFull,
    Capabilities,
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
from drivers.printers.markem_codec import (
    COUNTS_REQUEST,
    DEVICE_STATUS,
    JOB_REQUEST,
    LAST_UPDATE,
    PACKML,
    PACKML_MODES,
    VERSION_REQUEST,
    Deframer,
    Delimiters,
    Message,
    check_text,
    device_status_core,
    encode,
    field_value,
    read_field,
    select_job,
    state_change,
    update_fields,
)
from drivers.printers.stream_coder import StreamCoder, StreamSettings

log = logging.getLogger(__name__)

PRODUCING, READY = "06", "04"


class Unparsed(Nak):
    """`~NK1|` (5.1): the coder could not parse the packet, so nothing in it was carried out."""


class MarkemSettings(StreamSettings):
    field_name: str = Field("SERIAL", min_length=1, description="the job's user-input field that carries the code")
    delimiters: Delimiters = Field(Delimiters.PRINTABLE, description="the coder's packet delimiter setting")
    reply_status: bool = Field(True, description="the coder's 'status field' setting (on in every capture)")
    confirm: Literal["counter", "none"] = Field(
        "counter", description="counter: prints proven by the Total Print Count; none: the coder proves nothing")
    update_timing: Literal[0, 1] = Field(1, description="Job Update reply timing: 1 = once imaged (section 10.2)")
    read_back: bool = Field(True, description="read the field back after each update (~FR)")
    void_text: str = Field("", description="written into the field so a code in doubt cannot print again")
    imaging_s: float = Field(0.25, gt=0, le=10, description="time the coder takes to image an update (unpublished)")
    code_length: int = Field(40, ge=1, le=500, description="typical code length, for the line-rate limit")

    @field_validator("gs1_fnc1", "void_text")
    @classmethod
    def _fnc1(cls, v: str | None) -> str | None:
        """Section 4: { } | ~ delimit NGPCL packets and fields and have no escape (a void text holding one
        would garble every void, found only at the first code in doubt)."""
        why = check_text(v) if v is not None else None
        if why:
            raise ValueError(f"{v!r} {why}")
        return v


class MarkemNgpcl(StreamCoder):
    Settings: ClassVar[type[MarkemSettings]] = MarkemSettings

    def __init__(self, settings: MarkemSettings, *, name: str = "markem") -> None:
        super().__init__(settings, name=name, capacity=1)
        self.settings = settings
        self.mirror = FifoMirror(CoderKind.SINGLE_SLOT, 1)
        counting = settings.confirm == "counter"
        self.capabilities = Capabilities(
            fifo_capacity=1, indexed=False, print_complete_events=False, counters=counting,
            kind=CoderKind.SINGLE_SLOT, status=True, double_print_guard=False, proves_flush=False,
            max_items_per_min=self.line_rate_limit(settings),
            extra={"protocol": "markem-ngpcl",
                   "last_printed": "Total Print Count (~CR)" if counting else "not reported by the coder"},
        )
        self._deframer = Deframer()
        self._inbox: list[Message] = []
        self._count: int | None = None  # the last Total Print Count read
        self._baseline: int | None = None  # the count when the field's code was cleanly imaged
        self._slot_seq: int | None = None  # seq of the code the field holds (None: void or unknown)
        self._must_void = False  # the field may hold a code in doubt: overwrite it first
        self._status_field = settings.reply_status  # what the coder does, once its ~CV showed it
        self._job = ""

    @staticmethod
    def line_rate_limit(s: MarkemSettings) -> float:
        """Items/min one code per print allows: count, update, read-back, count and a status poll per
        item, at the link's byte time, plus the imaging time; halved so the next update lands mid-gap."""
        code = "0" * s.code_length
        sent = [update_fields([(s.field_name, code)]), read_field(s.field_name), COUNTS_REQUEST,
                COUNTS_REQUEST, DEVICE_STATUS]
        nbytes = sum(len(encode(m)) for m in sent) + 9 + (14 + len(s.field_name) + len(code)) + 2 * 42 + 39
        wire_s = 0.0 if s.url.startswith("tcp://") else nbytes * 10 / s.baud
        return round(60.0 / (2 * (wire_s + s.imaging_s)), 1)

    # -- one request, one reply ---------------------------------------------------------------
    def _reset_parser(self) -> None:
        self._deframer.reset()
        self._inbox.clear()

    async def _request(self, message: Message, expect: str, what: str) -> Message:
        if self._inbox:
            log.warning("%s: dropping unexpected NGPCL messages %s", self.name, [m.ident for m in self._inbox])
            self._inbox.clear()
        await self.link.write(encode(message, self.settings.delimiters))
        while not self._inbox:
            self._inbox.extend(self._deframer.feed(await self.link.read(self.timeout_s, f"~{expect} ({what})")))
        reply = self._inbox.pop(0)
        if reply.is_nak:
            raise Unparsed(f"{self.name}: coder could not parse ~{message.ident} ({what}): ~NK{''.join(reply.fields)}")
        if reply.ident != expect:
            raise ProtocolError(f"{self.name}: asked ~{message.ident} ({what}), got ~{reply.ident} {reply.fields!r}")
        return reply

    async def _command(self, message: Message, what: str) -> None:
        """4.4.1: a command's reply is its identifier and a success code, 0 done, 1 failed."""
        reply = await self._request(message, message.ident, what)
        code = reply.fields[0] if reply.fields else ""
        if code == "1":
            raise Nak(f"{self.name}: coder refused {what} (~{reply.ident}1|)")
        if code != "0":
            raise ProtocolError(f"{self.name}: {what}: success code {code!r} in ~{reply.ident}")

    def _body(self, reply: Message, what: str) -> tuple[str, ...]:
        """A response's fields without the optional status character (4.4.3)."""
        if not self._status_field:
            return reply.fields
        if not reply.fields or reply.fields[0] not in ("0", "1"):
            raise ProtocolError(f"{self.name}: {what}: ~{reply.ident} {reply.fields!r} has no status character "
                                "(is the coder's status field setting off? set reply_status)")
        if reply.fields[0] == "1":
            raise Nak(f"{self.name}: coder could not answer {what} (~{reply.ident}1)")
        return reply.fields[1:]

    async def _read_count(self) -> int:
        reply = await self._request(COUNTS_REQUEST, "CV", "counts")
        if reply.fields[:1] == ("TOTAL",) or reply.fields[1:2] == ("TOTAL",):
            # 5.15 always sends TOTAL first: whether a status character precedes it shows the setting
            seen = reply.fields[:1] != ("TOTAL",)
            if seen != self._status_field:
                log.warning("%s: the coder's status field is %s; following it", self.name, "on" if seen else "off")
                self._status_field = seen
        body = self._body(reply, "counts")
        counts = dict(zip(body[0::2], body[1::2], strict=False))
        raw = counts.get("TOTAL", "").strip(" \x00")
        if not (raw.isascii() and raw.isdigit()):
            raise ProtocolError(f"{self.name}: no TOTAL count in ~CV {body!r}")
        return int(raw)

    async def _field_value(self) -> str | None:
        """5.7: the field's value, None when the job has no such field."""
        fc = (await self._request(read_field(self.settings.field_name), "FC", "read back")).fields
        return field_value(fc, self.settings.field_name, status_field=self._status_field)

    async def _device_status(self) -> tuple[str, ...]:
        body = self._body(await self._request(DEVICE_STATUS, "DS", "device status"), "device status")
        return device_status_core(body)

    # -- the slot -----------------------------------------------------------------------------
    def _publish_fates(self, fates: Fates, why: str) -> None:
        now = time.monotonic()
        for seq in fates.printed:
            self._events.put_nowait(PrintEvent(PrintEventKind.PRINTED, now, seq=seq))
        if fates.unknown:
            log.warning("%s: seqs %s in doubt (%s)", self.name, list(fates.unknown), why)
            self._events.put_nowait(PrintEvent(PrintEventKind.FIFO_LOST, now, detail=why))

    def _account(self, count: int) -> None:
        """A fresh Total Print Count: the field's code printed, or printed again."""
        previous, self._count = self._count, count
        if previous is not None and count < previous:
            log.warning("%s: print count went back from %d to %d", self.name, previous, count)
            self._baseline = None
            self._publish_fates(self.mirror.lose(), "print count went back")
            self._must_void = True
            return
        if self._baseline is None or count <= self._baseline:
            return
        prints, self._baseline = count - self._baseline, count
        if self.mirror.pending:
            self._publish_fates(self.mirror.printed(1), "printed")
            prints -= 1
        if prints and self._slot_seq is not None:
            why = f"seq {self._slot_seq} printed {prints} more time(s): the line outran the link"
            log.error("%s: %s", self.name, why)
            self._events.put_nowait(PrintEvent(PrintEventKind.FAULT, time.monotonic(), seq=self._slot_seq,
                                               faults=frozenset({Fault.SEQUENCE_ERROR}), detail=why))

    def _doubt(self, why: str) -> None:
        self._publish_fates(self.mirror.lose(), why)
        self._baseline = None
        self._slot_seq = None
        self._must_void = True

    async def _void(self) -> None:
        """Overwrite the field so a code in doubt cannot print again; what was pending goes in doubt."""
        if self.settings.confirm == "counter":
            self._account(await self._read_count())
        self._publish_fates(self.mirror.lose(), "field overwritten")
        self._slot_seq = None
        self._baseline = None
        self._must_void = True
        try:
            await self._command(update_fields([(self.settings.field_name, self.settings.void_text)],
                                              self.settings.update_timing), "void the field")
        except Unparsed:
            raise
        except Nak as exc:  # refused: fine only if the job has no such field (nothing can print from it)
            value = await self._field_value()
            if value not in (None, "", self.settings.void_text):
                raise Nak(f"{exc}: the field holds {value!r}, a code in doubt that may print again; set "
                          "void_text to a value the field's data mask accepts") from exc
        self._must_void = False
        if self.settings.confirm == "counter":
            self._baseline = self._count = await self._read_count()

    # -- StreamCoder hooks --------------------------------------------------------------------
    async def _probe(self) -> None:
        await self._device_status()
        if self.settings.confirm == "counter":
            try:
                self._count = await self._read_count()
            except Nak as exc:
                raise Nak(f"{exc}; a coder without counts needs confirm='none'") from exc

    async def _after_outage(self) -> None:
        """The field may still hold a code whose fate is unknown: void it (status() retries if refused)."""
        try:
            await self._void()
        except Nak as exc:
            log.warning("%s: %s", self.name, exc)

    # -- the Printer interface ----------------------------------------------------------------
    async def identity(self) -> dict[str, str]:
        async def op() -> dict[str, str]:
            try:
                vv = self._body(await self._request(VERSION_REQUEST, "VV", "version"), "version")
                version = ".".join(vv[:3])
            except Nak:
                version = "not reported (~VR refused)"
            jn = await self._request(JOB_REQUEST, "JN", "current job")
            job = jn.fields[-1] if jn.fields else ""
            ds = await self._device_status()
            return {"model": "Markem-Imaje NextGen (NGPCL)", "protocol": "markem-ngpcl", "version": version,
                    "job": job, "state": PACKML[ds[7]][0], "field": self.settings.field_name,
                    "kind": "single slot", "max items/min": f"{self.capabilities.max_items_per_min:g}"}

        return await self._exchange(op, retry=True)

    async def status(self) -> PrinterStatus:
        async def op() -> PrinterStatus:
            if self._must_void:
                await self._void()
            ds = await self._device_status()
            count = None
            if self.settings.confirm == "counter":
                count = await self._read_count()
                self._account(count)
            name, state = PACKML[ds[7]]
            if state is PrinterState.PRINTING and ds[0] != "1":
                state = PrinterState.IDLE  # flag and state disagree: not proven printing
            if ds[1] == "1":
                state = PrinterState.FAULT
            notes = [f"PackML {ds[7]} {name}", f"mode {PACKML_MODES.get(ds[8], ds[8])}",
                     f"last update {LAST_UPDATE.get(ds[4], ds[4])}"]
            if ds[2] == "1":
                notes.append("warning active")
            return PrinterStatus(
                state=state, faults=frozenset({Fault.OTHER}) if state is PrinterState.FAULT else frozenset(),
                fifo_depth=len(self.mirror), fifo_capacity=1, last_printed=self.mirror.last_printed,
                print_count=count, fifo_lost=self.mirror.lost, detail="; ".join(notes),
            )

        return await self._exchange(op, retry=True)

    async def select_job(self, name: str) -> None:
        why = check_text(name)
        if why is not None:
            raise BadRecord(f"{self.name}: job name {name!r} {why}")

        async def op() -> None:
            self._publish_fates(self.mirror.lose(), f"job {name!r} selected")
            self._must_void = True  # a job may bring its stored field values back
            await self._command(select_job(name), f"job {name!r}")
            self._job = name
            await self._void()

        await self._exchange(op, stores=True)

    async def push(self, records: Sequence[Record]) -> None:
        if not records:
            return
        for r in records:
            why = check_text(r.text)
            if why is not None:
                raise BadRecord(f"{self.name}: record seq {r.seq} {why}")
        counting = self.settings.confirm == "counter"

        async def op() -> None:
            if self._must_void:
                await self._void()
            before = await self._read_count() if counting else None
            if before is not None:
                self._account(before)
            if len(records) > self.mirror.room:
                waiting = f"seq {self.mirror.pending[0][0]} is not proven printed yet" if self.mirror.pending else \
                    f"{len(records)} records pushed"
                raise BufferFull(f"{self.name}: a single-slot coder holds one code; {waiting}")
            record = records[0]
            self.mirror.pushed(record.seq)  # from here a lost answer leaves it in doubt (_doubt)
            self._slot_seq, self._baseline = None, None
            try:
                await self._command(update_fields([(self.settings.field_name, record.text)],
                                                  self.settings.update_timing), f"update seq {record.seq}")
            except Nak:
                self.mirror.pending.pop()  # refused: the field was not updated (5.5, 10.2)
                self._must_void = True  # what the field holds now is not worth a guess
                raise
            try:
                await self._taken(record, before)
            except Unparsed as exc:  # the update WAS taken; what followed was not understood
                self._doubt(f"seq {record.seq} stored, then {exc}")
                raise ProtocolError(f"{self.name}: seq {record.seq} stored, then {exc}: in doubt") from exc

        await self._exchange(op, stores=True)

    async def _taken(self, record: Record, before: int | None) -> None:
        """After an accepted update: prove the field holds the code, and that no print crossed it."""
        if self.settings.read_back:
            value = await self._field_value()
            if value != record.text:  # not there, or another value: this code cannot print
                self.mirror.pending.pop()
                self._must_void = True
                raise Nak(f"{self.name}: field {self.settings.field_name!r} reads {value!r} after the update "
                          f"of seq {record.seq}: not taken (is it a user-input field of the job?)")
        self._slot_seq = record.seq
        if before is not None:
            after = await self._read_count()
            self._count = after
            if after != before:
                self._doubt(f"{after - before} print(s) while seq {record.seq} was imaged")
                return
            self._baseline = after

    async def clear_fifo(self) -> None:
        """A field cannot be emptied, only overwritten: the void text replaces the code."""
        await self._exchange(self._void, stores=True)

    async def settle(self) -> Settlement:
        pending = tuple(seq for seq, _ in self.mirror.pending)
        await self.clear_fifo()
        status = await self.status()
        done = status.last_printed
        unknown = tuple(s for s in pending if done is None or s > done)
        return Settlement(status, Fates(unknown=unknown))

    async def start(self) -> None:
        await self._exchange(lambda: self._command(state_change(PRODUCING), "print start (PRODUCING)"))

    async def stop(self) -> None:
        """READY, then void the field: it would keep its code and print it again on the first product
        after a restart. A code not yet counted goes in doubt (one at most)."""

        async def op() -> None:
            await self._command(state_change(READY), "print stop (READY)")
            await self._void()

        await self._exchange(op, stores=True)

    async def clear_fault(self) -> None:
        async def op() -> None:
            ds = await self._device_status()
            if ds[1] == "1" or ds[7] in ("08", "09"):
                await self._command(state_change(READY), "leave ABORTED (READY)")

        await self._exchange(op)
