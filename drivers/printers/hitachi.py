"""Hitachi IJ (PH / RX / RX2 / UX) printers fed through the communication buffer.

Source and left-outs: see drivers/printers/hitachi_codec.py (Hitachi's public manual pages). Each
record is one data set sent in its own ENQ/ACK, STX text ETX [BCC], ACK/NAK exchange; the code is
spread over consecutive print items of 10 characters from `first_item`. The buffer's refusal of a
well-formed data set (NAK) is its only "full" signal, so it is reported as BufferFull.

What the public protocol cannot tell, this driver does not pretend to know: there is no status,
counter or print-complete reply, so last_printed, fifo_depth and print_count stay None and prints must
be confirmed by the camera or the PLC's trigger count. Link health is probed with DC2, which the
printer answers ACK when on-line and NAK when off-line (the only fault it can express).
A text whose answer never comes is not re-sent (a second copy could sit in the buffer and print the
code twice); the push fails with DeviceTimeout and the feeder treats that record as in doubt. ENQ
alone is retried with DC2 (nothing is stored by an ENQ).

stop() and clear_fifo() send "clear buffer"; start() sends "restart printing", which the printer
refuses until `refill_n` data sets are in the buffer. Job selection (print data call-up) is not
implemented: its bytes are not in the public pages we follow.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from drivers.printers.base import (
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
)
from drivers.printers.hitachi_codec import (
    CLEAR_BUFFER_DEFAULT,
    DC2,
    ENQ,
    RESTART_DEFAULT,
    Bcc,
    encode_print_contents,
    frame_text,
    parse_answer,
    split_items,
)
from drivers.printers.stream_coder import StreamCoder, StreamSettings


class HitachiSettings(StreamSettings):
    bcc: Bcc = Bcc.NONE
    use_enq: bool = Field(True, description="open each exchange with ENQ (the printer also accepts none)")
    buffer_size: int = Field(20, ge=1, le=1000, description="data sets the communication buffer holds")
    refill_n: int = Field(2, ge=1, description="'data number at fault': sets needed before restart")
    first_item: int = Field(1, ge=1, le=100, description="print item that takes the code's first 10 chars")
    clear_text_hex: str = Field(CLEAR_BUFFER_DEFAULT.hex(), pattern=r"^([0-9a-fA-F]{2})+$")
    restart_text_hex: str = Field(RESTART_DEFAULT.hex(), pattern=r"^([0-9a-fA-F]{2})+$")


class HitachiBuffer(StreamCoder):
    Settings: ClassVar[type[HitachiSettings]] = HitachiSettings

    def __init__(self, settings: HitachiSettings, *, name: str = "hitachi") -> None:
        super().__init__(settings, name=name, capacity=settings.buffer_size)
        self.settings = settings
        self.capabilities = Capabilities(
            fifo_capacity=settings.buffer_size, indexed=False, print_complete_events=False, counters=False,
            extra={"protocol": "hitachi-buffer", "last_printed": "not reported by the protocol"},
        )
        self._clear = bytes.fromhex(settings.clear_text_hex)
        self._restart = bytes.fromhex(settings.restart_text_hex)
        self._started = False
        self._unconfirmed = 0  # data sets sent since the last clear; the printer never confirms prints
        self._lost = False

    # -- exchanges ----------------------------------------------------------------------------
    async def _answer(self, what: str) -> bool:
        data = await self.link.read(self.timeout_s, what)
        if len(data) > 1:
            raise ProtocolError(f"{self.name}: {len(data)} bytes {data[:8]!r} where one ACK/NAK ({what}) was due")
        try:
            return parse_answer(data[0])
        except ProtocolError as exc:
            raise ProtocolError(f"{self.name}: {exc} ({what})") from exc

    async def _control(self, byte: int, what: str) -> bool:
        await self.link.write(bytes([byte]))
        return await self._answer(what)

    async def _send_text(self, text: bytes, what: str) -> None:
        if self.settings.use_enq:
            try:
                ready = await self._control(ENQ, f"ACK to ENQ before {what}")
            except DeviceTimeout:
                ready = await self._control(DC2, f"ACK to DC2 (retransmit) before {what}")
            if not ready:
                raise Nak(f"{self.name}: printer not ready for {what} (ENQ answered NAK: off-line or busy)")
        await self.link.write(frame_text(text, self.settings.bcc))
        if not await self._answer(f"ACK to {what}"):
            raise Nak(f"{self.name}: printer refused {what} (NAK)")

    async def _probe(self) -> None:
        await self._control(DC2, "answer to DC2 (link probe)")

    def _doubt(self, why: str) -> None:
        self._lose(why)

    async def _after_outage(self) -> None:
        """Clear the buffer: after a power loss it is empty anyway, after a blip it must not be guessed."""
        await self._send_text(self._clear, "clear buffer")
        self._started = False
        self._lose("link was down; buffer cleared")

    def _lose(self, why: str) -> None:
        if self._unconfirmed:
            self._unconfirmed = 0
            self._lost = True
            self._publish([PrintEvent(PrintEventKind.FIFO_LOST, time.monotonic(), detail=why)])

    # -- the Printer interface ----------------------------------------------------------------
    async def identity(self) -> dict[str, str]:
        async def op() -> dict[str, str]:
            online = await self._control(DC2, "answer to DC2")
            return {"model": "Hitachi IJ (no identity query in the public protocol)",
                    "protocol": "hitachi-buffer", "online": "yes" if online else "no"}

        return await self._exchange(op, retry=True)

    async def status(self) -> PrinterStatus:
        async def op() -> PrinterStatus:
            online = await self._control(DC2, "answer to DC2 (status probe)")
            if online:
                state = PrinterState.PRINTING if self._started else PrinterState.IDLE
                faults: frozenset[Fault] = frozenset()
            else:
                state, faults = PrinterState.FAULT, frozenset({Fault.OTHER})
                self._lose("printer off-line")
            lost, self._lost = self._lost, False
            return PrinterStatus(
                state=state, faults=faults, fifo_capacity=self.settings.buffer_size, fifo_lost=lost,
                detail="" if online else "printer off-line (the protocol does not say why)",
            )

        return await self._exchange(op, retry=True)

    async def select_job(self, name: str) -> None:
        raise Nak(f"{self.name}: job selection (print data call-up) is not in the public protocol; "
                  f"select {name!r} at the printer")

    async def push(self, records: Sequence[Record]) -> None:
        texts = []
        for r in records:
            try:
                texts.append((r.seq, encode_print_contents(split_items(r.text, self.settings.first_item))))
            except ValueError as exc:
                raise Nak(f"{self.name}: record seq {r.seq}: {exc}") from exc

        async def op() -> None:
            for seq, text in texts:
                try:
                    await self._send_text(text, f"data set for seq {seq}")
                except Nak as exc:
                    raise BufferFull(f"{self.name}: seq {seq} refused: buffer full or off-line ({exc})") from exc
                self._unconfirmed += 1

        await self._exchange(op, stores=True)

    async def clear_fifo(self) -> None:
        await self.stop()

    async def start(self) -> None:
        async def op() -> None:
            try:
                await self._send_text(self._restart, "restart printing")
            except Nak as exc:
                raise Nak(f"{exc}: fewer than {self.settings.refill_n} data sets in the buffer, or off-line") \
                    from exc
            self._started = True

        await self._exchange(op)

    async def stop(self) -> None:
        async def op() -> None:
            await self._send_text(self._clear, "clear buffer")
            self._started = False
            self._lose("buffer cleared")

        await self._exchange(op)

    async def clear_fault(self) -> None:
        """Nothing to send: the protocol has no fault reset. Confirm the printer is on-line again."""
        if (await self.status()).state is PrinterState.FAULT:
            raise Nak(f"{self.name}: printer still off-line; clear the fault at the printer")
