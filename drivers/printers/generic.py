"""The generic configurable coder driver: every byte of the protocol comes from a protocol file.

Why: a site with a coder we have no driver for (Domino, KGK, Chinese CIJ/TIJ brands, whose protocols
are closed: research/protocols.md) describes it in config/printers/<name>.yaml (model and rules in
drivers/printers/generic_spec.py) instead of waiting for code. The proof that the description is
rich enough: config/printers/leibinger.yaml drives this class through the same contract tests as the
native Leibinger driver, against the same simulator.

What the file controls: framing and checksum; the handshake (an optional ENQ answered before each
request, ACK/NAK as tokens or as text, a retransmit request, lock-step or pipelined record pushes);
command templates with `{job}`, `{index}`, `{text}`, `{seq}`; reply regexes whose named groups carry
values (status: state/error/cover; fifo: depth/capacity/last_index; counters: count); refusal codes
mapped to typed faults; unsolicited print-complete messages; the FIFO's capacity and indexing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping, Sequence

from pydantic import Field, field_validator

from confkit.loader import ConfigError
from drivers.framing import Frame, FrameError, decode, encode
from drivers.printers.base import (
    BadRecord,
    BufferFull,
    Capabilities,
    Fault,
    LinkDown,
    Nak,
    PrinterError,
    PrinterState,
    PrinterStatus,
    PrintEventKind,
    ProtocolError,
    Record,
)
from drivers.printers.framed import FramedSettings
from drivers.printers.generic_spec import CommandModel, HandshakeMode, ProtocolModel, load_protocol, request_regex
from drivers.printers.serializing import FifoReport, SerializingPrinter


class GenericSettings(FramedSettings):
    protocol_file: str = Field(description="config/printers/<name>.yaml: a bare name or a path")
    capacity: int | None = Field(None, ge=1, description="override the protocol file's fifo.capacity")
    poll_s: float | None = Field(None, gt=0, description="poll the FIFO this often to emit PRINTED events")

    @field_validator("protocol_file")
    @classmethod
    def _loads(cls, value: str) -> str:
        try:
            load_protocol(value)
        except ConfigError as exc:
            raise ValueError(f"protocol file does not validate:\n{exc}") from None
        return value


class GenericPrinter(SerializingPrinter):
    Settings = GenericSettings

    def __init__(self, settings: GenericSettings, *, name: str = "generic") -> None:
        self.protocol: ProtocolModel = load_protocol(settings.protocol_file)
        self.frame_spec = self.protocol.framing.spec()
        p = self.protocol
        super().__init__(settings, capacity=settings.capacity or p.fifo.capacity, name=name)
        self.cfg = settings
        self.enc = p.encoding
        if p.handshake.mode is HandshakeMode.LOCKSTEP:
            self.window = 1
        else:
            self.window = min(settings.window, p.handshake.window)
        self.capabilities = Capabilities(
            fifo_capacity=self.capacity,
            indexed=p.fifo.indexed,
            print_complete_events=any(e.kind == "printed" for e in p.events),
            counters=p.commands.counters is not None,
            extra={"protocol": p.name},
        )
        self._error = re.compile(p.errors.pattern) if p.errors.pattern else None
        self._retransmit = re.compile(p.handshake.retransmit) if p.handshake.retransmit else None
        self._enq_reply = re.compile(p.handshake.enq_reply) if p.handshake.enq_reply else None
        self._event_rules = [(re.compile(e.match), e.kind) for e in p.events]
        self._expect: dict[bytes, re.Pattern[str]] = {}  # request payload -> its answer regex (not pushes)
        self._push_expect = re.compile(p.commands.push.expect)
        self._push_request = request_regex(p.commands.push.send)
        if p.handshake.enq:
            self._expect[p.handshake.enq.encode("latin-1")] = re.compile(p.handshake.enq_reply or ".", re.DOTALL)

    # --- wire helpers ----------------------------------------------------------------------------

    def _text(self, frame: Frame) -> str:
        return frame.payload.decode(self.enc, errors="replace")

    def is_unsolicited(self, frame: Frame) -> bool:
        return any(rx.search(self._text(frame)) for rx, _ in self._event_rules)

    def on_unsolicited(self, frame: Frame) -> None:
        text = self._text(frame)
        for rx, kind in self._event_rules:
            m = rx.search(text)
            if m is None or kind != "printed":
                continue
            index = m.groupdict().get("index")
            pending = [tag for _, tag in self.tracker.pending]
            if index is not None and index.isdigit() and int(index) in pending:
                self.report(self.tracker.printed_count(pending.index(int(index)) + 1))
            elif index is None:
                self.report(self.tracker.printed_count(1))
            return

    def reply_matches(self, request: bytes, reply: Frame) -> bool:
        """A late answer to an earlier request must not be taken for this one's: check its shape."""
        expect = self._expect.get(request, self._push_expect)
        text = self._text(reply)
        if (self._error and self._error.search(text)) or (self._retransmit and self._retransmit.search(text)):
            return True
        m = expect.search(text)
        if m is None:
            return False
        if expect is self._push_expect and "index" in m.groupdict():
            # An answer naming its index must name ours: a late answer to an earlier push is not ours.
            sent = self._push_request.fullmatch(request.decode(self.enc, errors="replace"))
            return sent is None or int(sent.group("index")) == int(m.group("index"))
        return True

    def _command(self, name: str) -> CommandModel:
        cmd = getattr(self.protocol.commands, name)
        if cmd is None:
            raise PrinterError(f"{self.name}: protocol {self.protocol.name!r} has no commands.{name}")
        assert isinstance(cmd, CommandModel)
        return cmd

    def _payload(self, cmd: CommandModel, values: Mapping[str, object], *, remember: bool = True) -> bytes:
        try:
            payload = cmd.send.format(**{"job": "", "index": 0, "text": "", "seq": 0, **values}).encode(self.enc)
        except UnicodeEncodeError as exc:
            raise BadRecord(f"{self.name}: {values} cannot be sent as {self.enc}: {exc.reason}") from None
        if remember:  # record pushes are matched by the push regex instead: one entry per record would grow
            self._expect[payload] = re.compile(cmd.expect)
        return payload

    async def _run(self, name: str, *, retry: bool = False, **values: object) -> dict[str, str]:
        cmd = self._command(name)
        payload = self._payload(cmd, values)
        for _ in range(1 + self.cfg.retries):
            if self.protocol.handshake.enq:
                await self._enquire(retry)
            reply = await self.exchange(payload, retry=retry)
            if self._retransmit and self._retransmit.search(self._text(reply)):
                continue
            return self.parse(name, cmd, reply)
        raise Nak(f"{self.name}: {name}: the device asked for a retransmit {1 + self.cfg.retries} times")

    async def exchange_many(self, payloads: Sequence[bytes]) -> list[Frame | PrinterError]:
        """With an ENQ handshake every record needs its own ENQ/ACK first: lock-step, one by one."""
        if not self.protocol.handshake.enq:
            return await super().exchange_many(payloads)
        results: list[Frame | PrinterError] = []
        for payload in payloads:
            try:
                await self._enquire(False)
                results.append(await self.exchange(payload))
            except LinkDown as exc:
                results.extend([exc] * (len(payloads) - len(results)))
                break
            except PrinterError as exc:
                results.append(exc)
        return results

    async def _enquire(self, retry: bool) -> None:
        enq = self.protocol.handshake.enq.encode("latin-1")
        reply = await self.exchange(enq, retry=retry, raw=True)
        if self._enq_reply and not self._enq_reply.search(self._text(reply)):
            raise Nak(f"{self.name}: ENQ answered {reply.payload[:20]!r}, not {self._enq_reply.pattern!r}")

    def parse(self, name: str, cmd: CommandModel, reply: Frame) -> dict[str, str]:
        """The named groups of the answer; Nak/BufferFull for a refusal, ProtocolError for nonsense."""
        text = self._text(reply)
        if self._error is not None and (m := self._error.search(text)):
            code = (m.groupdict().get("code") or "").strip()
            fault = self.protocol.errors.codes.get(code)
            message = f"{self.name}: {name} refused" + (f" with code {code}" if code else "") + (
                f" ({fault})" if fault else ""
            )
            if code in self.protocol.errors.buffer_full or fault is Fault.BUFFER_FULL:
                raise BufferFull(message)
            raise Nak(message)
        m = re.compile(cmd.expect).search(text)
        if m is None:
            raise ProtocolError(f"{self.name}: answer {text[:60]!r} to {name} does not match {cmd.expect!r}")
        return {k: v for k, v in m.groupdict().items() if v is not None}

    def _int(self, values: Mapping[str, str], key: str, what: str) -> int | None:
        if key not in values:
            return None
        try:
            return int(values[key])
        except ValueError:
            raise ProtocolError(f"{self.name}: {what}: {key}={values[key]!r} is not a number") from None

    # --- SerializingPrinter hooks ----------------------------------------------------------------

    def record_payload(self, record: Record, index: int) -> bytes:
        values = {"index": index, "text": record.text, "seq": record.seq}
        payload = self._payload(self._command("push"), values, remember=False)
        try:  # can the framing carry it? (no escaping + a delimiter in the text: it cannot)
            carried = decode(self.frame_spec, encode(self.frame_spec, payload)) == payload
        except (FrameError, ValueError):
            carried = False
        if not carried:
            raise BadRecord(f"{self.name}: record seq {record.seq} {record.text!r} cannot be framed by this protocol")
        return payload

    def check_push_reply(self, reply: Frame) -> None:
        self.parse("push", self._command("push"), reply)

    async def read_fifo(self) -> FifoReport:
        values = await self._run("fifo", retry=True)
        depth = self._int(values, "depth", "fifo") or 0
        capacity = self._int(values, "capacity", "fifo") or self.capacity
        last = self._int(values, "last_index", "fifo")
        if not self.protocol.fifo.indexed:
            last = None
        count = None
        if last is None and self.protocol.commands.counters is not None:
            count = self._int(await self._run("counters", retry=True), "count", "counters")
        return FifoReport(capacity, depth, last, count)

    # --- Printer API -----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        if self.cfg.job:
            await self.select_job(self.cfg.job)
        if self.protocol.commands.fifo is not None:
            fifo = await self.read_fifo()
            self.tracker.last_tag = fifo.last_index
            self.count_seen = fifo.count
            self.next_index = self.index_after(fifo.last_index or 0)
            if fifo.waiting and self.protocol.commands.clear_fifo is not None:
                await self._run("clear_fifo")  # untracked records from an earlier session: never print them
                self.tracker.fifo_lost = True
                self.emit(PrintEventKind.FIFO_LOST, detail=f"flushed {fifo.waiting} untracked records on connect")
        if self.cfg.poll_s:
            self._spawn(self._poll(self.cfg.poll_s), "poll")

    async def on_link_up(self) -> None:
        if self.protocol.commands.fifo is not None:
            await self.sync()

    async def identity(self) -> dict[str, str]:
        ident = {"protocol": self.protocol.name, "url": self.cfg.url}
        if self.protocol.commands.identity is not None:
            ident.update(await self._run("identity", retry=True))
        return ident

    async def status(self) -> PrinterStatus:
        values = await self._run("status", retry=True)
        states = self.protocol.states
        faults: set[Fault] = set()
        error = values.get("error", "")
        if error not in states.no_error:
            faults.add(self.protocol.errors.codes.get(error, Fault.OTHER))
        if values.get("cover") in states.cover_open:
            faults.add(Fault.COVER_OPEN)
        state = values.get("state")
        printer_state = (
            PrinterState.PRINTING if state in states.printing else
            PrinterState.FAULT if state in states.fault else PrinterState.IDLE
        )
        depth = capacity = count = None
        if self.protocol.commands.fifo is not None:
            capacity, depth = await self.sync()
        if self.protocol.commands.counters is not None:
            count = self._int(await self._run("counters", retry=True), "count", "counters")
        return PrinterStatus(
            state=printer_state,
            faults=frozenset(faults),
            fifo_depth=depth,
            fifo_capacity=capacity,
            last_printed=self.tracker.last_printed,
            print_count=count,
            fifo_lost=self.tracker.fifo_lost,
            detail=", ".join(f"{k}={v}" for k, v in sorted(values.items())),
        )

    async def select_job(self, name: str) -> None:
        await self._run("select_job", job=name)

    async def clear_fifo(self) -> None:
        await self._run("clear_fifo")
        await self._after_clear()

    async def start(self) -> None:
        await self._run("start")

    async def stop(self) -> None:
        await self._run("stop")
        if self.protocol.fifo.clear_on_stop:
            await self._after_clear()

    async def clear_fault(self) -> None:
        await self._run("clear_fault")

    async def _after_clear(self) -> None:
        """The FIFO was emptied on purpose: reconcile (catches prints just before), or mark all lost."""
        if self.protocol.commands.fifo is not None:
            await self.sync()
        if len(self.tracker):
            lost = self.tracker.lose()
            self.emit(PrintEventKind.FIFO_LOST, detail=f"{len(lost)} records cleared before printing")

    async def _poll(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(PrinterError):
                await self.sync()
