"""The pure half of the generic driver: a protocol file's requests to bytes, and answers to values.

Why apart from the driver (drivers/printers/generic.py): what a protocol file means for the bytes on
the wire is a table, and the sources' own worked examples (WSI `RA` -> `$93`, Hitachi's
`02 1F 20 31 30 30 31 32 03`, the public Leibinger `?RS` capture, the NGPCL DS0 captures) must be
checkable through it without a device. No I/O, no clocks, no FIFO: the driver owns those.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from drivers.framing import Frame, FrameError, decode, encode
from drivers.printers.base import BadRecord, BufferFull, Fault, Nak, PrinterState, ProtocolError, Record
from drivers.printers.generic_spec import CommandModel, ProtocolModel, Reply, request_regex

STOPPING = frozenset({Fault.INK_EMPTY, Fault.HEAD_FAULT, Fault.COVER_OPEN, Fault.OTHER})


class GenericCodec:
    def __init__(self, protocol: ProtocolModel, *, name: str = "generic") -> None:
        self.protocol = protocol
        self.name = name
        self.enc = protocol.encoding
        self.frame_spec = protocol.framing.spec()
        self._error = re.compile(protocol.errors.pattern) if protocol.errors.pattern else None
        self._retransmit = re.compile(protocol.handshake.retransmit) if protocol.handshake.retransmit else None
        self._by_payload: dict[bytes, CommandModel] = {}  # request -> its command (not pushes: unbounded)
        self._push_request = request_regex(protocol.commands.push.send)
        h = protocol.handshake
        self.raw_requests = {t.encode("latin-1") for t in (h.enq, h.resend) if t}

    # --- requests --------------------------------------------------------------------------------

    def payload(self, name: str, cmd: CommandModel, values: Mapping[str, object]) -> bytes:
        try:
            payload = cmd.send.format(**{"job": "", "index": 0, "text": "", "seq": 0, **values}).encode(self.enc)
        except UnicodeEncodeError as exc:
            raise BadRecord(f"{self.name}: {values} cannot be sent as {self.enc}: {exc.reason}") from None
        if name != "push":
            self._by_payload[payload] = cmd
        return payload

    def wire(self, name: str, **values: object) -> bytes:
        """The bytes command `name` puts on the wire (framed unless the file says raw)."""
        cmd = self.protocol.commands_by_name()[name]
        payload = self.payload(name, cmd, values)
        return payload if cmd.raw else encode(self.frame_spec, payload)

    def record_payload(self, record: Record, tag: int | None) -> bytes:
        bad = sorted({c for c in record.text if c in self.protocol.text_forbidden})
        if bad:
            raise BadRecord(f"{self.name}: record seq {record.seq} {record.text!r} contains {bad!r}, "
                            "which the protocol cannot carry")
        limit = self.protocol.text_max
        if limit is not None and len(record.text) > limit:
            raise BadRecord(f"{self.name}: record seq {record.seq} has {len(record.text)} characters; "
                            f"the coder takes at most {limit}")
        values = {"index": tag or 0, "text": record.text, "seq": record.seq}
        payload = self.payload("push", self.protocol.commands.push, values)
        if self.protocol.commands.push.raw:
            return payload
        try:  # can the framing carry it? (no escaping + a delimiter in the text: it cannot)
            carried = decode(self.frame_spec, encode(self.frame_spec, payload)) == payload
        except (FrameError, ValueError):
            carried = False
        if not carried:
            raise BadRecord(f"{self.name}: record seq {record.seq} {record.text!r} cannot be framed by this protocol")
        return payload

    # --- answers ---------------------------------------------------------------------------------

    def text(self, frame: Frame) -> str:
        return frame.payload.decode(self.enc, errors="replace")

    def command_of(self, request: bytes) -> CommandModel | None:
        cmd = self._by_payload.get(request)
        if cmd is None and self._push_request.fullmatch(request.decode(self.enc, errors="replace")):
            return self.protocol.commands.push
        return cmd

    def check(self, request: bytes, reply: Frame) -> bool | None:
        """A check sequence answering `request`: True executed, False refused; None: not a check
        sequence. A check whose sum is not the request's is a line error (ProtocolError)."""
        cs = self.protocol.check_sequence
        if cs is None or not reply.token:
            return None
        for ok, prefix in ((True, cs.ok), (False, cs.refused)):
            if prefix and reply.payload.startswith(prefix.encode("latin-1")):
                if reply.payload[len(prefix):] != cs.of(request):
                    raise ProtocolError(
                        f"{self.name}: check sequence {reply.payload!r} is not the sum of {request[:24]!r} "
                        f"({cs.of(request)!r}): a line error"
                    )
                return ok
        return None

    def retransmit(self, reply: Frame) -> bool:
        return bool(self._retransmit and self._retransmit.search(self.text(reply)))

    def matches(self, request: bytes, reply: Frame) -> bool:
        """Does `reply` answer `request`? A late answer to an earlier request must not be taken for
        this one's: its shape (and a pushed index, a check sum) must fit."""
        text = self.text(reply)
        if request in self.raw_requests:
            return True
        try:
            if self.check(request, reply) is not None:
                return True
        except ProtocolError:
            return False  # someone else's check sequence, or a corrupt one: noise for this request
        if (self._error and self._error.search(text)) or self.retransmit(reply):
            return True
        cmd = self.command_of(request)
        if cmd is None or cmd.reply is not Reply.FRAME:
            return False
        m = re.search(cmd.expect, text)
        if m is None:
            return False
        if cmd is self.protocol.commands.push and "index" in m.groupdict():
            sent = self._push_request.fullmatch(request.decode(self.enc, errors="replace"))
            return sent is None or int(sent.group("index")) == int(m.group("index"))
        return True

    def parse(self, name: str, cmd: CommandModel, request: bytes, reply: Frame) -> dict[str, str]:
        """The named groups of the answer; Nak/BufferFull for a refusal, ProtocolError for nonsense."""
        text = self.text(reply)
        checked = self.check(request, reply)
        refused = checked is False
        code = ""
        if self._error is not None and (m := self._error.search(text)):
            refused, code = True, (m.groupdict().get("code") or "").strip()
        if refused:
            fault = self.protocol.errors.codes.get(code) or cmd.refused_means
            message = f"{self.name}: {name} refused" + (f" with code {code}" if code else "") + (
                f" ({fault})" if fault else ""
            )
            if code in self.protocol.errors.buffer_full or fault is Fault.BUFFER_FULL:
                raise BufferFull(message)
            raise Nak(message)
        if cmd.reply is Reply.CHECK:
            if checked:
                return {}
            raise ProtocolError(f"{self.name}: {name} answered {text[:40]!r}, not its check sequence")
        m = re.search(cmd.expect, text) if cmd.reply is Reply.FRAME else None
        if m is None:
            raise ProtocolError(f"{self.name}: answer {text[:60]!r} to {name} does not match {cmd.expect!r}")
        return {k: v for k, v in m.groupdict().items() if v is not None}

    def number(self, values: Mapping[str, str], key: str) -> int | None:
        if key not in values:
            return None
        try:
            return int(values[key])
        except ValueError:
            raise ProtocolError(f"{self.name}: {key}={values[key]!r} is not a number") from None

    def read_status(self, values: Mapping[str, str]) -> tuple[PrinterState, frozenset[Fault]]:
        """The status answer's groups (state, error, cover) as the file's `states` maps them."""
        states = self.protocol.states
        faults: set[Fault] = set()
        error = values.get("error", "")
        if states.error_mask is not None and error.lstrip("-").isdigit():
            error = str(int(error) & states.error_mask)
        if error not in states.no_error:
            faults.add(self.protocol.errors.codes.get(error, Fault.OTHER))
        if values.get("cover") in states.cover_open:
            faults.add(Fault.COVER_OPEN)
        if values.get("link") in states.link_down:
            return PrinterState.FAULT, frozenset(faults | {Fault.OTHER})  # off-line: the coder ignores us
        state = values.get("state")
        listed = states.printing + states.idle + states.fault
        if state in states.printing:
            return PrinterState.PRINTING, frozenset(faults)
        if state in states.fault or (state is None and faults & STOPPING):
            return PrinterState.FAULT, frozenset(faults)
        if state is not None and state not in listed and states.unlisted == "fault":
            return PrinterState.FAULT, frozenset(faults)
        return PrinterState.IDLE, frozenset(faults)
