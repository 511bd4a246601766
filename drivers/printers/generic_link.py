"""The link half of the generic driver: requests as a protocol file says they go on the wire.

Why apart from the coder half (drivers/printers/generic.py): the handshake (an ENQ before each framed
request, Hitachi's DC2 before repeating one whose answer was lost, a device asking for a retransmit),
commands nobody answers (Leibinger set and action commands without echo mode), and commands confirmed by
the state they lead to are one job; what the coder holds and which record printed is another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence

from pydantic import Field, field_validator

from confkit.loader import ConfigError
from drivers.framing import Frame
from drivers.printers.base import DeviceTimeout, Fault, LinkDown, Nak, PrinterError, PrinterState, ProtocolError
from drivers.printers.framed import FramedPrinter, FramedSettings
from drivers.printers.generic_codec import GenericCodec
from drivers.printers.generic_spec import CommandModel, HandshakeMode, ProtocolModel, Reply, load_protocol
from drivers.transport import LinkClosed

log = logging.getLogger(__name__)


class GenericSettings(FramedSettings):
    protocol_file: str = Field(description="config/printers/<name>.yaml: a bare name or a path")
    capacity: int | None = Field(None, ge=1, description="override the protocol file's coder.capacity")
    poll_s: float | None = Field(None, gt=0, description="poll the coder this often to emit PRINTED events")

    @field_validator("protocol_file")
    @classmethod
    def _loads(cls, value: str) -> str:
        try:
            load_protocol(value)
        except ConfigError as exc:
            raise ValueError(f"protocol file does not validate:\n{exc}") from None
        return value

class GenericLink(FramedPrinter):
    """Requests and answers of one protocol file; GenericPrinter adds the coder's FIFO."""

    def __init__(self, settings: GenericSettings, *, name: str = "generic") -> None:
        p = load_protocol(settings.protocol_file)
        self.protocol: ProtocolModel = p
        self.frame_spec = p.framing.spec()
        super().__init__(settings, name=name)
        self.cfg = settings
        self.window = 1 if p.handshake.mode is HandshakeMode.LOCKSTEP else min(settings.window, p.handshake.window)
        self.codec = GenericCodec(p, name=name)
        self._commands = p.commands_by_name()

    def reply_matches(self, request: bytes, reply: Frame) -> bool:
        return self.codec.matches(request, reply)
    # --- requests --------------------------------------------------------------------------------

    async def _run(self, name: str, *, retry: bool = False, **values: object) -> dict[str, str]:
        cmd = self._commands.get(name)
        if cmd is None:
            raise PrinterError(f"{self.name}: protocol {self.protocol.name!r} has no commands.{name}")
        payload = self.codec.payload(name, cmd, values)
        if cmd.reply is Reply.NONE:
            await self._write_only(payload, raw=cmd.raw)
            if cmd.confirm is None and name != "status" and self.protocol.commands.status is not None:
                await self._state()  # a barrier: answered only once the coder has read the command
            await self._confirm(name, cmd)
            return {}
        attempts = 1 + self.cfg.retries
        for attempt in range(attempts):
            try:
                if self.protocol.handshake.enq and not cmd.raw:
                    await self._enquire()
                reply = await self.exchange(payload, raw=cmd.raw)
            except (DeviceTimeout, ProtocolError):
                if not retry or attempt + 1 == attempts:
                    raise
                if self.protocol.handshake.enq and not cmd.raw:
                    await self._resend()  # Hitachi 5.3.1 (2): DC2 when an ENQ'd request went unanswered
                continue
            if self.codec.retransmit(reply):
                continue
            answer = self.codec.parse(name, cmd, payload, reply)
            await self._confirm(name, cmd)
            return answer
        raise Nak(f"{self.name}: {name}: the device asked for a retransmit {attempts} times")

    async def _confirm(self, name: str, cmd: CommandModel) -> None:
        """A command nobody answers is confirmed by the state it leads to, or refused (Nak)."""
        if cmd.confirm is None:
            return
        want = PrinterState.PRINTING if cmd.confirm == "printing" else PrinterState.IDLE
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.timeout_s * (2 + self.cfg.retries)
        while True:
            state, _, values = await self._state()
            if state is want:
                return
            if loop.time() >= deadline:
                raise Nak(f"{self.name}: {name} not carried out: the coder reports {values or state}")
            await asyncio.sleep(0.02)

    async def _enquire(self) -> None:
        h = self.protocol.handshake
        reply = await self.exchange(h.enq.encode("latin-1"), raw=True)
        if h.enq_reply and not re.search(h.enq_reply, self.codec.text(reply)):
            raise Nak(f"{self.name}: ENQ answered {reply.payload[:20]!r}, not {h.enq_reply!r}")

    async def _resend(self) -> None:
        """Before repeating a request whose answer was lost (Hitachi: DC2, answered ACK)."""
        h = self.protocol.handshake
        if not h.resend:
            return
        with contextlib.suppress(DeviceTimeout, ProtocolError):
            reply = await self.exchange(h.resend.encode("latin-1"), raw=True)
            if h.resend_reply and not re.search(h.resend_reply, self.codec.text(reply)):
                log.info("%s: resend answered %r", self.name, reply.payload[:20])

    async def _write_only(self, payload: bytes, *, raw: bool = False) -> None:
        """A request the coder does not answer (Leibinger set commands without echo mode)."""
        wire = payload if raw else self._frame(payload)
        async with self._lock:
            try:
                await self._linked().write(wire)
            except LinkClosed as exc:
                self._link_lost(str(exc))
                raise LinkDown(str(exc)) from exc
    async def _state(self) -> tuple[PrinterState | None, frozenset[Fault], dict[str, str]]:
        if self.protocol.commands.status is None:
            return None, frozenset(), {}
        values = await self._run("status", retry=True)
        state, faults = self.codec.read_status(values)
        return state, faults, values
    async def _push_answered(self, push: CommandModel, payloads: Sequence[bytes]) -> tuple[int, PrinterError | None]:
        if self.protocol.handshake.enq or push.raw or self.protocol.check_sequence is not None:
            results: list[Frame | PrinterError] = []
            for payload in payloads:  # an ENQ before each: lock-step, one by one
                try:
                    if self.protocol.handshake.enq:
                        await self._enquire()
                    results.append(await self.exchange(payload, raw=push.raw))
                except PrinterError as exc:
                    results.append(exc)
                    break
        else:
            results = await self.exchange_many(payloads)
        for i, (payload, result) in enumerate(zip(payloads, results, strict=False)):
            try:
                if isinstance(result, PrinterError):
                    raise result
                self.codec.parse("push", push, payload, result)
            except PrinterError as exc:
                return i, exc
        return len(results), None
