"""Markem-Imaje SmartDate / NextGen coders over NGPCL (messages in drivers/printers/markem_codec.py).

Source and left-outs: see markem_codec.py. No positive acknowledgement is public, so every command is
followed by `{~DR}` in the same write: the `{~DS0|...}` answer closes that command's window, and an
`{~NK1|}` inside the window means the command was refused. Pushes are pipelined as `JU DR JU DR ...`,
which keeps the link busy and still tells exactly which record was refused.

Serialization works as for Videojet WSI: one field update per print, at most `fifo_depth` held
(a setting), last_printed from the product counter in `DS0`. Which `DS0` field holds the state, error
codes and counter is a setting (defaults: our simulator's layout). Print start/stop and fault reset
have no public NGPCL bytes: `start_code`/`clear_faults_code` name same-shaped messages (`PS0`, `EC0`
in the simulator); left unset, start/stop/clear_fault raise Nak saying so. A job selection may reset
the field queue, so it puts every unconfirmed record in doubt.
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
from drivers.printers.markem_codec import STATUS_REQUEST, Deframer, Message, encode, select_job, update_field
from drivers.printers.stream_coder import StreamCoder, StreamSettings
from drivers.printers.videojet import DEFAULT_FAULT_CODES, DEFAULT_STATE_CODES

DR = encode(STATUS_REQUEST)


class MarkemSettings(StreamSettings):
    field_name: str = Field("SERIAL", min_length=1, description="job field that carries the code")
    fifo_depth: int = Field(4, ge=1, le=64, description="field updates the coder can hold")
    state_field: int = Field(0, ge=0)
    faults_field: int = Field(1, ge=0)
    counter_field: int = Field(2, ge=0)
    state_codes: dict[str, PrinterState] = Field(default_factory=lambda: dict(DEFAULT_STATE_CODES))
    fault_codes: dict[str, Fault] = Field(default_factory=lambda: dict(DEFAULT_FAULT_CODES))
    start_code: str | None = Field(None, description="message code for print start (1) / stop (0), e.g. PS0")
    clear_faults_code: str | None = Field(None, description="message code that resets faults, e.g. EC0")


class MarkemNgpcl(StreamCoder):
    Settings: ClassVar[type[MarkemSettings]] = MarkemSettings

    def __init__(self, settings: MarkemSettings, *, name: str = "markem") -> None:
        super().__init__(settings, name=name, capacity=settings.fifo_depth)
        self.settings = settings
        self.capabilities = Capabilities(
            fifo_capacity=settings.fifo_depth, indexed=False, print_complete_events=False, counters=True,
            extra={"protocol": "markem-ngpcl", "last_printed": "product counter delta"},
        )
        self._deframer = Deframer()
        self._state: PrinterState | None = None
        self._job = ""

    # -- exchanges ----------------------------------------------------------------------------
    def _reset_parser(self) -> None:
        self._deframer.reset()

    async def _windows(self, commands: Sequence[Message], what: str) -> list[tuple[bool, Message]]:
        """Send each command followed by {~DR}; per command: (accepted, the DS0 that closed it)."""
        self._deframer.reset()
        await self.link.write(b"".join(encode(c) + DR for c in commands))
        out: list[tuple[bool, Message]] = []
        refused = False
        while len(out) < len(commands):
            for msg in self._deframer.feed(await self.link.read(self.timeout_s, f"DS0 answer ({what})")):
                if msg.is_nak:
                    refused = True
                elif msg.code == "DS0" and msg.fields is not None:
                    out.append((not refused, msg))
                    refused = False
                else:
                    raise ProtocolError(f"{self.name}: unexpected NGPCL message {msg.code} ({what})")
        return out

    async def _status_message(self) -> Message:
        self._deframer.reset()
        await self.link.write(DR)
        while True:
            for msg in self._deframer.feed(await self.link.read(self.timeout_s, "DS0 status answer")):
                if msg.code == "DS0" and msg.fields is not None:
                    return msg
                raise ProtocolError(f"{self.name}: asked DR, got {msg.code} {msg.fields!r}")

    async def _command(self, message: Message, what: str) -> Message:
        ((ok, ds),) = await self._windows([message], what)
        if not ok:
            raise Nak(f"{self.name}: coder refused {what} ({{~NK1|}})")
        return ds

    def _field(self, ds: Message, index: int, what: str) -> str:
        fields = ds.fields or ()
        if index >= len(fields):
            raise ProtocolError(f"{self.name}: DS0 {fields!r} has no field {index} ({what})")
        return fields[index]

    def _counter(self, ds: Message) -> int:
        raw = self._field(ds, self.settings.counter_field, "product counter")
        if not (raw.isascii() and raw.isdigit()):
            raise ProtocolError(f"{self.name}: DS0 product counter {raw!r} is not a number")
        return int(raw)

    async def _probe(self) -> None:
        self._publish(self.fifo.observe(self._counter(await self._status_message())))

    async def _after_outage(self) -> None:
        """Empty whatever the coder kept (print stop, else re-select the job), so nothing is guessed."""
        if self.settings.start_code is not None:
            ds = await self._command(Message(self.settings.start_code, ("0",)), "print stop")
        elif self._job:
            ds = await self._command(select_job(self._job), f"job {self._job!r}")
        else:
            self._doubt("link was down and no way to empty the coder's queue is configured")
            return
        self._publish(self.fifo.observe(self._counter(ds)))
        self._publish(self.fifo.flushed("link was down; queue emptied"))
        self._state = PrinterState.IDLE

    # -- the Printer interface ----------------------------------------------------------------
    async def identity(self) -> dict[str, str]:
        async def op() -> dict[str, str]:
            ds = await self._status_message()
            return {"model": "Markem-Imaje NGPCL (no identity query in the public protocol)",
                    "protocol": "markem-ngpcl", "job": self._job, "status": "|".join(ds.fields or ())}

        return await self._exchange(op, retry=True)

    async def status(self) -> PrinterStatus:
        s = self.settings

        async def op() -> PrinterStatus:
            ds = await self._status_message()
            counter = self._counter(ds)
            self._publish(self.fifo.observe(counter))
            code = self._field(ds, s.state_field, "state")
            if code not in s.state_codes:
                raise ProtocolError(f"{self.name}: unknown state {code!r} in DS0 {ds.fields!r}")
            state = s.state_codes[code]
            raw = self._field(ds, s.faults_field, "error codes")
            faults = frozenset(s.fault_codes.get(c, Fault.OTHER) for c in raw.split(",") if c)
            stopped = self._state is PrinterState.PRINTING and state is not PrinterState.PRINTING
            if state is PrinterState.FAULT or stopped:
                self._publish(self.fifo.lose(f"coder went from printing to {state}"))
            self._state = state
            return PrinterStatus(
                state=state, faults=faults, fifo_depth=self.fifo.depth, fifo_capacity=s.fifo_depth,
                last_printed=self.fifo.last_printed, print_count=counter, fifo_lost=self.fifo.take_lost(),
            )

        return await self._exchange(op, retry=True)

    async def select_job(self, name: str) -> None:
        async def op() -> None:
            await self._command(select_job(name), f"job {name!r}")
            self._job = name
            self._publish(self.fifo.flushed(f"job {name!r} selected"))

        await self._exchange(op)

    async def push(self, records: Sequence[Record]) -> None:
        messages = []
        for r in records:
            msg = update_field(self.settings.field_name, r.text)
            try:
                encode(msg)
            except ValueError as exc:
                raise Nak(f"{self.name}: record seq {r.seq}: {exc}") from exc
            messages.append(msg)

        async def op() -> None:
            if self.fifo.suspect is not None:
                raise Nak(f"{self.name}: the coder's queue may have been cleared ({self.fifo.suspect}); "
                          "clear_fifo() before pushing more")
            if len(records) > self.fifo.room:  # prints since the last poll may have made room
                self._publish(self.fifo.observe(self._counter(await self._status_message())))
            if len(records) > self.fifo.room:
                raise BufferFull(f"{self.name}: {len(records)} records pushed, room for {self.fifo.room}")
            results = await self._windows(messages, f"{len(messages)} field updates")
            refused = []
            for r, (ok, _ds) in zip(records, results, strict=True):
                if ok:
                    self.fifo.queued([r.seq])  # in the coder's order, also after a refusal
                else:
                    refused.append(r.seq)
            if refused:
                raise BufferFull(f"{self.name}: coder refused seqs {refused} (buffer full or field unknown)")

        await self._exchange(op, stores=True)

    async def clear_fifo(self) -> None:
        """A print stop clears the queue; without a configured stop message, re-select the job."""
        if self.settings.start_code is None and self._job:
            await self.select_job(self._job)
            return
        was_printing = self._state is PrinterState.PRINTING
        await self.stop()
        if was_printing:
            await self.start()

    async def start(self) -> None:
        code = self._require(self.settings.start_code, "print start")

        async def op() -> None:
            await self._command(Message(code, ("1",)), "print start")
            self._state = PrinterState.PRINTING

        await self._exchange(op)

    async def stop(self) -> None:
        code = self._require(self.settings.start_code, "print stop")

        async def op() -> None:
            ds = await self._command(Message(code, ("0",)), "print stop")
            self._publish(self.fifo.observe(self._counter(ds)))  # confirm what printed before the stop
            self._publish(self.fifo.flushed("print stop"))
            self._state = PrinterState.IDLE

        await self._exchange(op)

    async def clear_fault(self) -> None:
        code = self._require(self.settings.clear_faults_code, "fault reset")
        await self._exchange(lambda: self._command(Message(code, ()), "fault reset"))

    def _require(self, code: str | None, what: str) -> str:
        if code is None:
            raise Nak(f"{self.name}: NGPCL has no public {what} message; set it in the device settings if "
                      f"your coder has one")
        return code
