"""Leibinger JET2neo / JET3 in mailing mode, over TCP (port 3000) or serial.

Public facts followed (research/protocols.md, from Leibinger's public interface descriptions):
- frames: `^0` + `!` (action) / `=` (set) / `?` (query) + two-letter command + TAB-separated
  parameters + CR; `^` and `\\` inside data are escaped (here: by a `\\` before them);
- actions `!GO`/`!ST` start/stop printing, `!EQ` acknowledge error, `!FF` flush the FIFO; `=JL` load
  a job; queries `?RS` status (nozzle, machine state 1-6, error, cover, speed) and `?CC` counters;
- mailing: `=MR<index><TAB><data>` stores a record (up to 256), each print-go prints the next, `?SM`
  returns depth, entries and the last printed index; the coder refuses an out-of-order index; errors
  1015 buffer full, 1018 bad/missing index, 1019 index out of sequence, 5043 buffer empty; a print
  stop clears the mailing data.

Not public, so ASSUMED here (and all of it re-describable without code in config/printers/
leibinger.yaml for the generic driver): the answer layout. A query is answered `^0=XX<TAB>fields`, an
action or set by the echo of its kind and command (`^0=MR5`, `^0!GO`), a refusal by
`^0!ER<TAB>code`. `?SM` fields are buffer size, records waiting, last printed index (0: none since
power-on); machine state 4 is "printing", 6 "fault", others "idle"; `?RS` error codes other than the
four mailing ones are site-specific and mapped by `error_faults`. Left out: `!PO`/`!PF`/`!NO`/`!NC`
(jet power and nozzle: an operator's decision, not the agent's), `=ET` external text and `=CM` stop
count, print-complete messages (none publicly described: progress is polled with `?SM`).

Seq mapping: mailing indexes run 1..capacity and wrap; the driver hands out the next index per record
and `FifoTracker` turns "last printed index + records waiting" back into the feeder's seq.
On connect, records already in the coder (from a previous session) are flushed: nobody can tell which
codes they are, so letting them print would put untracked codes on products.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from pydantic import Field

from drivers.framing import EscapeMode, Frame, FrameSpec
from drivers.printers.base import (
    BufferFull,
    Capabilities,
    Fault,
    Nak,
    PrinterError,
    PrinterState,
    PrinterStatus,
    PrintEventKind,
    ProtocolError,
    Record,
)
from drivers.printers.framed import FramedSettings
from drivers.printers.serializing import FifoReport, SerializingPrinter

log = logging.getLogger(__name__)

FRAME_SPEC = FrameSpec(start=b"^0", end=b"\r", escape=b"\\", escape_mode=EscapeMode.PREFIX, escaped=b"^\\")
ERR_BUFFER_FULL, ERR_BAD_INDEX, ERR_OUT_OF_SEQUENCE, ERR_BUFFER_EMPTY = 1015, 1018, 1019, 5043
PUBLIC_ERRORS: dict[int, Fault] = {
    ERR_BUFFER_FULL: Fault.BUFFER_FULL,
    ERR_BAD_INDEX: Fault.SEQUENCE_ERROR,
    ERR_OUT_OF_SEQUENCE: Fault.SEQUENCE_ERROR,
    ERR_BUFFER_EMPTY: Fault.BUFFER_EMPTY,
}
STATE_PRINTING, STATE_FAULT = 4, 6


def request(kind: str, command: str, *params: str, encoding: str = "latin-1") -> bytes:
    """The payload (unframed) of one request, e.g. request("=", "JL", "job1")."""
    return (kind + command + "".join("\t" + p for p in params)).encode(encoding)


def split_reply(payload: bytes, encoding: str = "latin-1") -> tuple[str, list[str]]:
    """`=SM\t256\t3\t17` -> ("=SM", ["256", "3", "17"]); ProtocolError when it is no Leibinger reply."""
    text = payload.decode(encoding, errors="replace")
    if len(text) < 3 or text[0] not in "!=?" or not text[1:3].isalpha():
        raise ProtocolError(f"not a Leibinger reply: {payload[:40]!r}")
    head, *fields = text.split("\t")
    return head[:3], [head[3:], *fields] if head[3:] else fields


def ints(fields: Sequence[str], count: int, what: str) -> list[int]:
    if len(fields) < count:
        raise ProtocolError(f"{what}: expected {count} fields, got {len(fields)}: {list(fields)!r}")
    try:
        return [int(f) for f in fields[:count]]
    except ValueError:
        raise ProtocolError(f"{what}: non-numeric field in {list(fields)!r}") from None


class LeibingerSettings(FramedSettings):
    capacity: int = Field(256, ge=2, le=256, description="mailing buffer size; indexes run 1..capacity")
    encoding: str = Field("latin-1", description="text encoding of records on the wire")
    poll_s: float | None = Field(None, gt=0, description="poll ?SM this often to emit PRINTED events")
    error_faults: dict[int, Fault] = Field(
        default_factory=lambda: dict(PUBLIC_ERRORS), description="?RS/!ER error code -> typed fault"
    )


class Leibinger(SerializingPrinter):
    Settings = LeibingerSettings
    frame_spec = FRAME_SPEC

    def __init__(self, settings: LeibingerSettings, *, name: str = "leibinger") -> None:
        super().__init__(settings, capacity=settings.capacity, name=name)
        self.cfg = settings
        self.capabilities = Capabilities(
            fifo_capacity=settings.capacity, indexed=True, print_complete_events=False, counters=True
        )

    # --- wire helpers ----------------------------------------------------------------------------

    def reply_matches(self, request_payload: bytes, reply: Frame) -> bool:
        """Same command, and for a record the same index: a late answer to an earlier request is dropped."""
        if reply.payload[1:3] == b"ER":
            return True
        if request_payload.startswith(b"=MR"):
            return reply.payload == request_payload.partition(b"\t")[0]
        return reply.payload[1:3] == request_payload[1:3]

    async def _ask(self, kind: str, command: str, *params: str, retry: bool = False) -> list[str]:
        reply = await self.exchange(request(kind, command, *params, encoding=self.cfg.encoding), retry=retry)
        return self._check(command, reply)

    def _check(self, command: str, reply: Frame) -> list[str]:
        head, fields = split_reply(reply.payload, self.cfg.encoding)
        if head == "!ER":
            code = ints(fields, 1, "error reply")[0]
            raise self._refusal(command, code)
        if head[1:] != command:
            raise ProtocolError(f"{self.name}: answer {head!r} to a {command!r} request")
        return fields

    def _refusal(self, command: str, code: int) -> Nak:
        fault = self.cfg.error_faults.get(code)
        text = f"{self.name}: {command} refused with error {code}" + (f" ({fault})" if fault else "")
        return BufferFull(text) if code == ERR_BUFFER_FULL else Nak(text)

    # --- SerializingPrinter hooks ----------------------------------------------------------------

    def record_payload(self, record: Record, index: int) -> bytes:
        self.check_text(record.text, f"record seq {record.seq}", "\t\r", self.cfg.encoding)
        return f"=MR{index}\t{record.text}".encode(self.cfg.encoding)

    def check_push_reply(self, reply: Frame) -> None:
        self._check("MR", reply)

    async def read_fifo(self) -> FifoReport:
        capacity, waiting, last = ints(await self._ask("?", "SM", retry=True), 3, "?SM")
        return FifoReport(capacity, waiting, last)

    # --- Printer API -----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        if self.cfg.job:
            await self.select_job(self.cfg.job)
        fifo = await self.read_fifo()
        if fifo.capacity < self.capacity:
            log.warning("%s: coder buffer holds %d, configured %d", self.name, fifo.capacity, self.capacity)
        self.tracker.last_tag = fifo.last_index
        self.next_index = self.index_after(fifo.last_index or 0)
        waiting = fifo.waiting
        if waiting:
            log.warning("%s: flushing %d records left from an earlier session", self.name, waiting)
            await self._ask("!", "FF")
            self.tracker.fifo_lost = True
            self.emit(PrintEventKind.FIFO_LOST, detail=f"flushed {waiting} untracked records on connect")
        if self.cfg.poll_s:
            self._spawn(self._poll(self.cfg.poll_s), "poll")

    async def on_link_up(self) -> None:
        await self.sync()

    async def identity(self) -> dict[str, str]:
        report = await self.read_fifo()
        return {"protocol": "leibinger", "url": self.cfg.url, "mailing_capacity": str(report.capacity)}

    async def status(self) -> PrinterStatus:
        nozzle, state, error, cover, _speed = ints(await self._ask("?", "RS", retry=True), 5, "?RS")
        capacity, waiting = await self.sync()
        count = ints(await self._ask("?", "CC", retry=True), 1, "?CC")[0]
        faults = set()
        if error:
            faults.add(self.cfg.error_faults.get(error, Fault.OTHER))
        if cover:
            faults.add(Fault.COVER_OPEN)
        printer_state = (
            PrinterState.PRINTING if state == STATE_PRINTING else
            PrinterState.FAULT if state == STATE_FAULT else PrinterState.IDLE
        )
        return PrinterStatus(
            state=printer_state,
            faults=frozenset(faults),
            fifo_depth=waiting,
            fifo_capacity=capacity,
            last_printed=self.tracker.last_printed,
            print_count=count,
            fifo_lost=self.tracker.fifo_lost,
            detail=f"nozzle {'open' if nozzle else 'closed'}, machine state {state}, error {error}",
        )

    async def select_job(self, name: str) -> None:
        self.check_text(name, "job name", "\t\r", self.cfg.encoding)
        await self._ask("=", "JL", name)

    async def clear_fifo(self) -> None:
        await self._ask("!", "FF")
        await self.sync()

    async def start(self) -> None:
        await self._ask("!", "GO")

    async def stop(self) -> None:
        await self._ask("!", "ST")
        await self.sync()  # a stop clears the mailing data: what was not printed is now in doubt

    async def clear_fault(self) -> None:
        await self._ask("!", "EQ")

    async def _poll(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(PrinterError):
                await self.sync()
