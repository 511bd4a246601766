"""Hitachi IJ printers (RX / RX2 / UX, and PH / PX / PXR with ESC headers) fed through the communication buffer.

Sources (bytes and their sections are in drivers/printers/hitachi_codec.py): Hitachi "Technical Manual,
Model RX" rev D, 5.3 (transmission sequences), 5.4 (code and header tables), 5.5 (timing) and 5.9
(communication buffer); the C# client Hitachi_Protocol_DLL (INNOVATIVE-PROBLEM-SOLVERS-LLC/
HitachiEtherNetIP) for the status query `ESC #` and its reply, and the PX/PXR buffer texts.

What the public protocol can and cannot tell, and what this driver makes of it:
- The buffer (5.9.2 (2)) is a queue: one data set is fetched per print. Nothing reports how many data
  sets remain or were consumed, and nothing announces a print: no counter, no print-complete. So
  `last_printed`, `fifo_depth` and `print_count` stay None, Capabilities say counters=False,
  print_complete_events=False, proves_flush=False, and prints are confirmed by the camera only.
- The status query (not in the RX manual; the C# client marks it "PX, PXR, RX -- SOP-04": an option.
  `status_query` None (default) tries it on every (re)connect and, if the coder does not answer it
  while it does answer DC2, uses DC2, which only tells on/off-line) gives on/off-line, "reception possible", the
  operation state (Ready = printing, standby, stop, faults including "Communication Buffer Fault")
  and the alarm (ink low).
- The coder setup 5.9.2 (1) requires (buffer function enabled, overwrite-enabled, t=fixed, buffer
  repeat count 1, empty buffer fault at print start) cannot be read back: neither source documents a
  reply that holds it. What the driver checks is the coder's status, and a refusal of the first data
  sets (an overwrite-protected coder takes one text, then refuses until it printed) names that setup.
- A push answered NAK means the buffer is full (5.9.4 (1)) unless the coder is off-line; the status
  query (or DC2 without it) tells which.
- Going off-line clears the buffer and the coder prints its current content on every product in
  "standard mode", also once back on-line, until the buffer function is set up again at the coder
  (5.9.2 (2), example 3). That is a duplicate on the line. Seeing the coder off-line (status, an
  unsolicited status, a NAK checked with status), or a link outage (the coder may have been power
  cycled or switched off-line meanwhile; `latch_after_outage`), latches a fault: FIFO_LOST and FAULT
  events, state FAULT, every push refused, until an operator has re-armed the coder and calls
  clear_fault(). Back on-line, the driver erases its print items (a DLE + item number with no text,
  5.3.2-1 (2)) so a coder repeating in standard mode prints no code (`blank_after_mode_loss`).
- stop() puts the coder on standby and then clears the buffer (a stop at the panel keeps it).
- "Clear buffer" and "restart printing" are sent only while the coder is not printing (5.9.3-2 (2)):
  clear_fifo()/settle() refuse (Nak) while it is Ready. After a clear, the data set already fetched
  for the next print may still print, so nothing is proven flushed: every pending record is UNKNOWN.
  With N ("data number at fault") = 0 the restart follows the clear at once, else it is sent by
  start() once the buffer is refilled. start() does not return before `restart_settle_s` (the manual's
  500 ms) after the restart's ACK, so the line cannot trigger a print too early.
- A text whose answer never came is not re-sent (a second copy could print the code twice): the
  push fails and what the coder holds is in doubt.

GS1 codes: the RX manual's print contents (5.3.2) are printable ASCII and show no FNC1 code. Hitachi's
"EtherNet/IP Communication Users Manual" for the UX (7th edition, 8.3.5 "Special keys for barcode")
writes it `{FNC1}` in a print character string; that is the EtherNet/IP path, not proven for the
communication buffer, so `gs1_fnc1` (CoderSettings) has no default: a technician sets `{FNC1}` after a
test print reads back as GS1 (docs/technicians.md). A code spread over several items (`item_chars`)
could cut the spelling in two: keep a GS1 code in one item.

Left out: 2-byte character modes, message layout and print specification texts, the BCC range (a
guess, off by default), job call-up on ESC models (sources disagree), the undocumented retrieve texts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from pydantic import Field, field_validator

from drivers.printers.base import (
    BadRecord,
    BufferFull,
    Capabilities,
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
from drivers.printers.hitachi_codec import (
    ACK,
    BUFFER_ITEMS,
    DC2,
    ENQ,
    ETX,
    MAX_TEXT,
    NAK,
    STATUS_LEN,
    STATUS_QUERY,
    STX,
    Bcc,
    Commands,
    Model,
    Remote,
    Status,
    frame,
    parse_answer,
    parse_status,
    parse_time,
    print_contents,
    recall,
    split_items,
)
from drivers.printers.stream_coder import StreamCoder, StreamSettings

log = logging.getLogger(__name__)
MIRROR_MAX = BUFFER_ITEMS + 1  # at most 100 data sets in the buffer plus the one fetched for the next print
UNSOLICITED_MAX = 8  # ENQs and status texts taken while waiting for one ACK/NAK


class HitachiSettings(StreamSettings):
    model: Model = Field(Model.RX, description="RX/RX2/UX/TwinNozzle use ESC2 (1FH) headers, PH/PX/PXR(H) ESC")
    bcc: Bcc = Bcc.NONE
    use_enq: bool = Field(True, description="open each text with ENQ (5.3.1: it may be omitted)")
    buffer_size: int = Field(8, ge=1, le=BUFFER_ITEMS, description="data sets the feeder keeps in the buffer")
    data_number_at_fault: int = Field(0, ge=0, le=9, description="the coder's 'Data number at Fault' N")
    first_item: int = Field(1, ge=1, le=100, description="print item that takes the code (5.3.2-2)")
    item_chars: int | None = Field(None, ge=1, le=80, description="chars per item; None: 10 on ESC models, "
                                                                   "one item per code on RX-class")
    status_query: bool | None = Field(None, description="ESC # status query (C#: PX, PXR, RX with option "
                                                        "SOP-04); None: used when the coder answers it")
    restart_settle_s: float = Field(0.5, ge=0, le=10, description="wait after restart's ACK (5.9.3-2: 500 ms)")
    legacy_restart_header: int = Field(0x5A, ge=0x20, le=0x7F, description="ESC model restart header (C#: 5AH)")
    latch_after_outage: bool = Field(True, description="a link outage latches the off-line fault")
    blank_after_mode_loss: bool = Field(True, description="erase the code items once back on-line")

    @field_validator("gs1_fnc1")
    @classmethod
    def _fnc1(cls, v: str | None) -> str | None:
        """5.3.2-1: print contents in 1-byte mode are printable ASCII; no control byte such as GS."""
        if v is not None and not all(0x20 <= ord(c) <= 0x7E for c in v):
            raise ValueError(f"{v!r}: print contents are printable ASCII in 1-byte mode (5.3.2-1); GS cannot be sent")
        return v


class HitachiBuffer(StreamCoder):
    Settings: ClassVar[type[HitachiSettings]] = HitachiSettings

    def __init__(self, settings: HitachiSettings, *, name: str = "hitachi") -> None:
        super().__init__(settings, name=name, capacity=settings.buffer_size)
        self.settings = settings
        self.cmd = Commands.for_model(settings.model, legacy_restart=settings.legacy_restart_header)
        self.item_chars = settings.item_chars or (80 if settings.model.esc2 else 10)
        self.capabilities = Capabilities(
            fifo_capacity=settings.buffer_size, indexed=False, print_complete_events=False, counters=False,
            kind=CoderKind.COUNTED_FIFO, status=settings.status_query is not False, double_print_guard=False,
            proves_flush=False,
            extra={"protocol": "hitachi-buffer", "model": settings.model.value,
                   "confirmation": "none from the coder: prints are confirmed by the camera"},
        )
        self.mirror = FifoMirror(CoderKind.COUNTED_FIFO, MIRROR_MAX)
        self._rx = bytearray()
        self._mode_lost: str | None = None  # latched: the coder may be repeating in standard mode
        self._blanked = False
        self._restart_pending = False
        self._restart_at: float | None = None  # monotonic time of the last restart's ACK
        self._items_used = 1
        self._started = False  # what start()/stop() last commanded (the state without a status query)
        self._use_status = settings.status_query is not False

    # -- reading the stream -------------------------------------------------------------------
    def _reset_parser(self) -> None:
        self._rx.clear()

    async def _byte(self, what: str) -> int:
        if not self._rx:
            self._rx += await self.link.read(self.timeout_s, what)
        return self._rx.pop(0)

    async def _rest_of_text(self, what: str) -> bytes:
        """The bytes after an STX up to and including ETX."""
        out = bytearray([STX])
        while out[-1] != ETX:
            if len(out) > MAX_TEXT:
                raise ProtocolError(f"{self.name}: text of over {MAX_TEXT} bytes without ETX ({what})")
            out.append(await self._byte(what))
        return bytes(out)

    async def _answer(self, what: str) -> bool:
        """ACK/NAK; an unsolicited status text (SOP-04) or ENQ on the way is acknowledged and noted."""
        answer: bool | None = None
        for _ in range(UNSOLICITED_MAX):
            if answer is not None and not self._rx:  # unsolicited traffic may also follow the answer
                return answer
            b = await self._byte(what)
            if b == ENQ:
                await self.link.write(bytes([ACK]))
            elif b == STX:
                self._note(parse_status(await self._rest_of_text(what)))
                await self.link.write(bytes([ACK]))
            elif answer is not None:
                raise ProtocolError(f"{self.name}: 0x{b:02X} after the {what}")
            else:
                try:
                    answer = parse_answer(b)
                except ProtocolError as exc:
                    raise ProtocolError(f"{self.name}: {exc} ({what})") from exc
        raise ProtocolError(f"{self.name}: unsolicited ENQ/status without end while waiting for the {what}")

    async def _control(self, byte: int, what: str) -> bool:
        await self.link.write(bytes([byte]))
        return await self._answer(what)

    async def _send(self, text: bytes, what: str, *, data: bool = False) -> bool:
        """One text: [ENQ -> ACK,] STX text ETX [BCC] -> ACK/NAK. False: refused (NAK to ENQ or text).
        A data set is not sent once the coder is known off-line (an unsolicited status before the ACK)."""
        if self.settings.use_enq and not await self._control(ENQ, f"answer to ENQ before {what}"):
            return False
        if data and self._mode_lost is not None:
            raise Nak(f"{self.name}: {what} not sent: {self._mode_lost}")
        await self.link.write(frame(text, self.settings.bcc))
        return await self._answer(f"answer to {what}")

    async def _must(self, text: bytes, what: str) -> None:
        if not await self._send(text, what):
            raise Nak(f"{self.name}: the coder refused {what} (NAK)")

    async def _query(self) -> Status:
        await self.link.write(STATUS_QUERY)
        b = await self._byte("status reply to ESC #")
        if b == NAK:
            raise Nak(f"{self.name}: status query ESC # refused (NAK)")
        if b != STX:
            raise ProtocolError(f"{self.name}: status reply starts with 0x{b:02X}, not STX")
        rest = bytearray()
        while len(rest) < STATUS_LEN - 1:
            rest.append(await self._byte("status reply to ESC #"))
        status = parse_status(bytes([STX]) + rest)
        self._note(status)
        return status

    async def _online(self) -> bool:
        """Whether the coder is on-line: the status query, or DC2 (ACK on-line, NAK off-line: 5.4.1)."""
        if self._use_status:
            return (await self._query()).online
        online = await self._control(DC2, "answer to DC2")
        if not online:
            self._latch("DC2 answered NAK: the coder is off-line")
        return online

    # -- the off-line latch -------------------------------------------------------------------
    def _note(self, status: Status) -> None:
        if not status.online:
            self._latch("the coder is off-line: its buffer is cleared and it repeats its current content "
                        "in standard mode (RX manual 5.9.2 (2))")

    def _latch(self, why: str) -> None:
        lost = self.mirror.lose()
        self.mirror.lost = True
        if self._mode_lost is None:
            self._mode_lost, self._blanked = why, False
            now = time.monotonic()
            self._publish([PrintEvent(PrintEventKind.FIFO_LOST, now, detail=f"{why}; {len(lost.unknown)} "
                                                                              f"records in doubt"),
                           PrintEvent(PrintEventKind.FAULT, now, faults=frozenset({Fault.OTHER}), detail=why)])

    def _doubt(self, why: str) -> None:
        """A lost or garbled answer does not clear the coder's buffer: the failed call tells its caller
        (a failed push is reconciled by the feeder), and a coder that lost power goes silent until the
        link is declared down, after which `_after_outage` latches the fault."""

    async def _probe(self) -> None:
        if self.settings.status_query is None:
            try:
                await self._query()
            except (DeviceTimeout, Nak, ProtocolError) as exc:
                await self._resync()
                if self._use_status:
                    log.warning("%s: no answer to the status query ESC # (%s); trying DC2 (on/off-line only)",
                                self.name, exc)
                self._use_status = False
                self.capabilities = replace(self.capabilities, status=False)
                await self._online()  # DC2; silence here too: no coder there at all
                return
            self._use_status = True
            self.capabilities = replace(self.capabilities, status=True)
            return
        await self._online()

    async def _after_outage(self) -> None:
        if self.settings.latch_after_outage:
            self._latch("the link was down: the coder may have been power-cycled or off-line, and may be "
                        "repeating in standard mode")
        else:
            self._doubt("the link was down")

    async def _blank(self) -> None:
        """Erase the code's items, so a coder repeating in standard mode prints no code."""
        items = [(self.settings.first_item + i, "") for i in range(self._items_used)]
        if await self._send(print_contents(items), "erasing the code items"):
            self._blanked = True

    # -- the Printer interface ----------------------------------------------------------------
    async def identity(self) -> dict[str, str]:
        async def op() -> dict[str, str]:
            await self.link.write(self.cmd.time_query)
            if (b := await self._byte("reply to the time inquiry")) != STX:
                raise ProtocolError(f"{self.name}: time reply starts with 0x{b:02X}")
            clock = parse_time(await self._rest_of_text("time reply"), self.cmd.esc2)
            await self.link.write(bytes([ACK]))  # 5.3.10-1 (2): the host acknowledges the reply
            return {"model": f"Hitachi {self.settings.model.value}", "protocol": "hitachi-buffer", "clock": clock}

        return await self._exchange(op, retry=True)

    async def status(self) -> PrinterStatus:
        async def op() -> PrinterStatus:
            if self._use_status:
                st = await self._query()
                state, faults, detail = st.state, set(st.faults), st.detail
                online = st.online
            else:
                online = await self._online()
                state = PrinterState.PRINTING if self._started else PrinterState.IDLE
                faults, detail = set(), "no status query: the state is what this driver last commanded"
            if self._mode_lost is not None:
                if online and self.settings.blank_after_mode_loss and not self._blanked:
                    await self._blank()
                state = PrinterState.FAULT
                faults.add(Fault.OTHER)
                detail = f"{self._mode_lost}; re-arm the buffer at the coder, then clear the fault; {detail}"
            return PrinterStatus(state=state, faults=frozenset(faults), fifo_capacity=self.settings.buffer_size,
                                 fifo_lost=self.mirror.lost, detail=detail)

        return await self._exchange(op, retry=True)

    async def select_job(self, name: str) -> None:
        if not self.cmd.esc2:
            raise Nak(f"{self.name}: print data call-up on {self.settings.model.value} is not settled by the "
                      f"sources (ESC 55H or 56H); select {name!r} at the coder")
        try:
            text = recall(int(name))
        except ValueError as exc:
            raise Nak(f"{self.name}: job {name!r}: the coder calls up print data by number 1..2000") from exc
        if len(self.mirror):
            raise Nak(f"{self.name}: call up print data before codes are queued (RX manual 5.9.3-3); "
                      f"{len(self.mirror)} are in the buffer: clear it first")
        await self._exchange(lambda: self._must(text, f"call-up of print data {name}"))

    async def push(self, records: Sequence[Record]) -> None:
        texts: list[tuple[int, bytes, int]] = []
        for r in records:
            try:
                items = split_items(r.text, self.settings.first_item, self.item_chars)
                texts.append((r.seq, print_contents(items), len(items)))
            except ValueError as exc:
                raise BadRecord(f"{self.name}: record seq {r.seq}: {exc}") from exc

        async def op() -> None:
            for seq, text, n_items in texts:
                if self._mode_lost is not None:
                    raise Nak(f"{self.name}: refused: {self._mode_lost}")
                if not await self._send(text, f"data set for seq {seq}", data=True):
                    if not await self._online():
                        raise Nak(f"{self.name}: seq {seq} refused: the coder is off-line")
                    hint = ("" if len(self.mirror) > 1 else "; so early a refusal suggests the coder is not "
                            "set up for the buffer (buffer function enabled, overwrite-enabled, t=fixed: 5.9.2 (1))")
                    raise BufferFull(f"{self.name}: seq {seq} refused: the communication buffer is full{hint}")
                if len(self.mirror) >= MIRROR_MAX:
                    self.mirror.pending.popleft()  # provably consumed by a print; no claim that it printed
                self.mirror.pushed(seq)
                self._items_used = max(self._items_used, n_items)

        await self._exchange(op, stores=True)

    async def _clear_locked(self) -> Fates:
        st = await self._query() if self._use_status else None
        if st is not None and not st.online:
            return self.mirror.lose()  # the coder cleared its buffer itself when it went off-line
        if st.state is PrinterState.PRINTING if st is not None else self._started:
            raise Nak(f"{self.name}: 'clear buffer' only while not printing (RX manual 5.9.3-2 (2)); stop first")
        await self._must(self.cmd.clear_buffer, "clear buffer")
        self._restart_pending = True
        if self.settings.data_number_at_fault == 0:
            await self._restart()
        fates = self.mirror.lose()
        self.mirror.lost = True
        self._publish([PrintEvent(PrintEventKind.FIFO_LOST, time.monotonic(), detail="buffer cleared")])
        return fates

    async def _restart(self) -> None:
        await self._must(self.cmd.restart_printing, "restart printing")
        self._restart_pending, self._restart_at = False, time.monotonic()

    async def clear_fifo(self) -> None:
        await self._exchange(self._clear_locked)

    async def settle(self) -> Settlement:
        fates = await self._exchange(self._clear_locked)
        return Settlement(await self.status(), fates)

    async def start(self) -> None:
        async def op() -> None:
            if self._mode_lost is not None:
                raise Nak(f"{self.name}: {self._mode_lost}; re-arm the coder and clear the fault first")
            st = await self._query() if self._use_status else None
            if self._restart_pending:
                if st is not None and st.state is PrinterState.PRINTING:
                    raise Nak(f"{self.name}: 'restart printing' only while not printing (5.9.3-2 (2))")
                await self._restart()
            if st is None or st.state is not PrinterState.PRINTING:
                await self._must(self.cmd.remote(Remote.READY), "ready (deflection voltage on)")
            if self._restart_at is not None:
                wait = self._restart_at + self.settings.restart_settle_s - time.monotonic()
                await asyncio.sleep(max(0.0, wait))
            if self._use_status and (st := await self._query()).state is not PrinterState.PRINTING:
                raise Nak(f"{self.name}: the coder did not become ready: {st.detail}")
            self._started = True

        await self._exchange(op)

    async def stop(self) -> None:
        """Standby (deflection voltage off), then clear the buffer: the coder itself keeps its buffer over
        a stop (5.9.2 (2)), but nothing queued by a stopped host may land on a product later."""

        async def op() -> None:
            await self._must(self.cmd.remote(Remote.STANDBY), "standby")
            self._started = False
            await self._clear_locked()

        await self._exchange(op)

    async def clear_fault(self) -> None:
        async def op() -> None:
            st = await self._query() if self._use_status else None
            online = st.online if st is not None else await self._online()
            if not online:
                raise Nak(f"{self.name}: the coder is still off-line; switch it on-line and re-arm its buffer")
            if st is not None and st.state is PrinterState.FAULT:
                await self._must(self.cmd.remote(Remote.FAULT_CLEAR), "fault clear")
            if self._mode_lost is not None:
                await self._clear_locked()
                self._mode_lost = None

        await self._exchange(op)
