"""Videojet 1000-line CIJ over the WSI simple protocol (packets in drivers/printers/videojet_codec.py).

Source: research/protocols.md (public emulators and manuals): packet types M, T, U, D, E, Q, G, O, K, H;
ACK `$8D` / NAK `!51` check sequences. What is not public is a setting, not a guess in code: the
checksum (off by default), which field of the `E` and `G` replies holds the state, faults and product
counter, and the printer's state and error codes (defaults match drivers/sim/videojet.py).

Serialization: WSI has no indexed FIFO. The driver sends one user-field update (`U field LF value`)
per record, up to `window` of them in one write (the check sequences come back in order, so a refusal
is still pinned to its record); the printer holds at most `fifo_depth` of them (a setting, default 4:
set it to what your printer's remote-field buffer holds, 1 if it has none). last_printed is derived from the product
counter (`G`): the k-th count after a push consumed the k-th record pushed. Anything that may clear
the updates (print off, jet stop, a fault, a reconnect, a message change) puts every unconfirmed record
in doubt (fifo_lost + FIFO_LOST). Left out: print-complete messages (WSI has none; PRINTED events come
from counter polls), the 2-head port 3102, fault reset (no public packet: clear faults at the printer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from drivers.printers.base import (
    BufferFull,
    Capabilities,
    Fault,
    Nak,
    PrinterState,
    PrinterStatus,
    ProtocolError,
    Record,
)
from drivers.printers.stream_coder import StreamCoder, StreamSettings
from drivers.printers.videojet_codec import (
    Check,
    Packet,
    PacketType,
    Reply,
    WsiChecksum,
    WsiDeframer,
    command,
    encode_packet,
    field_at,
    int_field,
    user_field_update,
)

# The simulator's codes (drivers/sim/videojet.py); a real printer's state and error codes are not public.
DEFAULT_STATE_CODES = {"0": PrinterState.IDLE, "1": PrinterState.PRINTING, "2": PrinterState.FAULT}
DEFAULT_FAULT_CODES = {
    "IL": Fault.INK_LOW, "IE": Fault.INK_EMPTY, "HF": Fault.HEAD_FAULT,
    "BE": Fault.BUFFER_EMPTY, "CO": Fault.COVER_OPEN, "OT": Fault.OTHER,
}


class VideojetSettings(StreamSettings):
    checksum: WsiChecksum = WsiChecksum.NONE
    user_field: str = Field("SERIAL", min_length=1, description="the message's user field that carries the code")
    fifo_depth: int = Field(4, ge=1, le=64, description="user-field updates the printer can hold")
    window: int = Field(16, ge=1, le=64, description="updates in flight per write (1 = lock-step)")
    counter_field: int = Field(0, ge=0, description="field of the G reply with the product counter")
    state_field: int = Field(0, ge=0, description="field of the E reply with the printer state")
    faults_field: int = Field(1, ge=0, description="field of the E reply with comma-separated error codes")
    state_codes: dict[str, PrinterState] = Field(default_factory=lambda: dict(DEFAULT_STATE_CODES))
    fault_codes: dict[str, Fault] = Field(default_factory=lambda: dict(DEFAULT_FAULT_CODES))


class VideojetWsi(StreamCoder):
    Settings: ClassVar[type[VideojetSettings]] = VideojetSettings

    def __init__(self, settings: VideojetSettings, *, name: str = "videojet") -> None:
        super().__init__(settings, name=name, capacity=settings.fifo_depth)
        self.settings = settings
        self.capabilities = Capabilities(
            fifo_capacity=settings.fifo_depth, indexed=False, print_complete_events=False, counters=True,
            extra={"protocol": "videojet-wsi", "last_printed": "product counter delta"},
        )
        self._deframer = WsiDeframer(settings.checksum)
        self._state: PrinterState | None = None

    # -- exchanges ----------------------------------------------------------------------------
    async def _request(self, packet: Packet) -> Reply:
        """Send one packet and return its one answer (the base resyncs after garbage or silence)."""
        self._deframer.reset()
        await self.link.write(encode_packet(packet, self.settings.checksum))
        while True:
            data = await self.link.read(self.timeout_s, f"answer to WSI {packet.kind.name}")
            replies = self._deframer.feed(data)
            if len(replies) > 1:
                raise ProtocolError(f"{self.name}: {len(replies)} answers to one {packet.kind.name} packet")
            if replies:
                return replies[0]

    def _reset_parser(self) -> None:
        self._deframer.reset()

    async def _command(self, packet: Packet) -> None:
        reply = await self._request(packet)
        if reply == Check(ok=False):
            raise Nak(f"{self.name}: printer refused WSI {packet.kind.name} {packet.fields!r} (NAK !51)")
        if not isinstance(reply, Check):
            raise ProtocolError(f"{self.name}: expected $8D/!51 after {packet.kind.name}, got {reply!r}")

    async def _query(self, kind: PacketType) -> Packet:
        reply = await self._request(command(kind))
        if isinstance(reply, Check):
            if not reply.ok:
                raise Nak(f"{self.name}: printer refused WSI query {kind.name} (NAK !51)")
            raise ProtocolError(f"{self.name}: got $8D where the {kind.name} reply packet was due")
        if reply.kind is not kind:
            raise ProtocolError(f"{self.name}: asked {kind.name}, printer answered {reply.kind.name}")
        return reply

    async def _read_counter(self) -> int:
        reply = await self._query(PacketType.COUNTERS)
        return int_field(reply, self.settings.counter_field, "product counter")

    async def _probe(self) -> None:
        self._publish(self.fifo.observe(await self._read_counter()))

    async def _after_outage(self) -> None:
        """Print off empties whatever the printer kept, so the queue is known empty, not guessed."""
        await self._command(command(PacketType.PRINT_ON_OFF, "0"))
        self._publish(self.fifo.observe(await self._read_counter()))
        self._publish(self.fifo.flushed("link was down; print switched off"))
        self._state = PrinterState.IDLE

    # -- the Printer interface ----------------------------------------------------------------
    async def identity(self) -> dict[str, str]:
        async def op() -> dict[str, str]:
            part = field_at(await self._query(PacketType.PART_NUMBER), 0, "part number")
            message = await self._query(PacketType.SELECTED_MESSAGE)
            return {"model": part, "message": message.fields[0] if message.fields else "",
                    "protocol": "videojet-wsi"}

        return await self._exchange(op, retry=True)

    async def status(self) -> PrinterStatus:
        s = self.settings

        async def op() -> PrinterStatus:
            counter = await self._read_counter()
            self._publish(self.fifo.observe(counter))
            e = await self._query(PacketType.ERROR_STATUS)
            code = field_at(e, s.state_field, "printer state")
            if code not in s.state_codes:
                raise ProtocolError(f"{self.name}: unknown printer state {code!r} in E reply {e.fields!r}")
            state = s.state_codes[code]
            raw = field_at(e, s.faults_field, "error codes") if len(e.fields) > s.faults_field else ""
            faults = frozenset(s.fault_codes.get(c, Fault.OTHER) for c in raw.split(",") if c)
            stopped = self._state is PrinterState.PRINTING and state is not PrinterState.PRINTING
            if state is PrinterState.FAULT or stopped:
                self._publish(self.fifo.lose(f"printer went from printing to {state}"))
            self._state = state
            return PrinterStatus(
                state=state, faults=faults, fifo_depth=self.fifo.depth, fifo_capacity=s.fifo_depth,
                last_printed=self.fifo.last_printed, print_count=counter, fifo_lost=self.fifo.take_lost(),
            )

        return await self._exchange(op, retry=True)

    async def select_job(self, name: str) -> None:
        async def op() -> None:
            await self._command(command(PacketType.SELECT_MESSAGE, name))
            self._publish(self.fifo.flushed(f"message {name!r} selected"))

        await self._exchange(op)

    async def push(self, records: Sequence[Record]) -> None:
        for r in records:  # refuse an unframeable record before any of the batch is sent
            try:
                encode_packet(user_field_update(self.settings.user_field, r.text))
            except ValueError as exc:
                raise Nak(f"{self.name}: record seq {r.seq}: {exc}") from exc

        async def op() -> None:
            if self.fifo.suspect is not None:
                raise Nak(f"{self.name}: the coder's queue may have been cleared ({self.fifo.suspect}); "
                          "clear_fifo() before pushing more")
            if len(records) > self.fifo.room:  # prints since the last poll may have made room
                self._publish(self.fifo.observe(await self._read_counter()))
            if len(records) > self.fifo.room:
                raise BufferFull(f"{self.name}: {len(records)} records pushed, room for {self.fifo.room}")
            w = self.settings.window
            for i in range(0, len(records), w):
                await self._push_window(records[i : i + w])

        await self._exchange(op, stores=True)

    async def _push_window(self, window: Sequence[Record]) -> None:
        """Pipelined: every update in one write, then one check sequence each, in order.

        A refused update may be followed by accepted ones (a print made room meanwhile); those are
        in the printer's queue in that order, so they are recorded so, and the error names the refused.
        """
        self._deframer.reset()
        await self.link.write(b"".join(
            encode_packet(user_field_update(self.settings.user_field, r.text), self.settings.checksum)
            for r in window))
        answers: list[Reply] = []
        while len(answers) < len(window):
            answers += self._deframer.feed(await self.link.read(self.timeout_s, "check sequence for a U packet"))
        if len(answers) > len(window) or not all(isinstance(a, Check) for a in answers):
            raise ProtocolError(f"{self.name}: expected {len(window)} check sequences, got {answers!r}")
        refused = [r.seq for r, a in zip(window, answers, strict=True) if a == Check(ok=False)]
        self.fifo.queued(r.seq for r, a in zip(window, answers, strict=True) if a == Check(ok=True))
        if refused:
            raise BufferFull(f"{self.name}: printer refused seqs {refused} (buffer full or field unknown; NAK !51)")

    async def clear_fifo(self) -> None:
        """WSI has no 'clear buffer' packet: print off then on discards the pending updates."""
        was_printing = self._state is PrinterState.PRINTING
        await self.stop()
        if was_printing:
            await self.start()

    async def start(self) -> None:
        async def op() -> None:
            await self._command(command(PacketType.PRINT_ON_OFF, "1"))
            self._state = PrinterState.PRINTING

        await self._exchange(op)

    async def stop(self) -> None:
        async def op() -> None:
            await self._command(command(PacketType.PRINT_ON_OFF, "0"))
            self._publish(self.fifo.observe(await self._read_counter()))  # confirm what did print
            self._publish(self.fifo.flushed("print off"))
            self._state = PrinterState.IDLE

        await self._exchange(op)

    async def clear_fault(self) -> None:
        """No public WSI packet resets faults; check that the operator has cleared them at the printer."""
        status = await self.status()
        if status.state is PrinterState.FAULT:
            raise Nak(f"{self.name}: WSI has no fault-reset packet; clear {sorted(status.faults)} at the printer")
