"""A simulator for any protocol file (config/printers/<name>.yaml) that carries `answer` templates.

Why: a site describing a coder we have no driver for wants to see its file work end to end before
the coder is on the bench; and the generic driver's handshake, checksum, token and event features need
a device that really uses them in tests. Requests are recognised by turning each command's `send`
template into a regex ({index} and {seq}: digits, {text} and {job}: anything); answers come from the
command's `answer` template; refusals from `errors.answer`; print-complete messages from the events'
`answer`. A command answered by the check sequence gets `ok`/`refused` + the sum of its own payload; a
raw request (listed among the framing tokens) is matched as sent; a push nobody answers is refused
through the status error; a single slot prints its one record on every trigger until it is replaced.
It is only as right as the file: it proves the driver follows the file, not that the file matches the
real coder (the native simulators, written from the sources, are what the shipped files are tested on).
"""

from __future__ import annotations

import re
from pathlib import Path

from drivers.framing import Frame
from drivers.printers.base import Fault
from drivers.printers.fifo import CoderKind
from drivers.printers.generic_spec import CommandModel, ProtocolModel, Reply, load_protocol, request_regex
from drivers.sim.base import STOPPING, SimCoder, SimRecord
from drivers.sim.faults import FaultPlan


class GenericSim(SimCoder):
    name = "generic"

    def __init__(
        self,
        *,
        protocol: ProtocolModel | str | Path = "leibinger",
        capacity: int | None = None,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
    ) -> None:
        self.protocol = protocol if isinstance(protocol, ProtocolModel) else load_protocol(str(protocol))
        self.frame_spec = self.protocol.framing.spec()
        super().__init__(rate_per_min=rate_per_min, baud=baud, faults=faults)
        coder = self.protocol.coder
        self.capacity = coder.capacity if coder.kind is CoderKind.SINGLE_SLOT else capacity or coder.capacity
        self.enc = self.protocol.encoding
        self._commands: list[tuple[str, CommandModel, re.Pattern[str]]] = [
            (name, cmd, request_regex(cmd.send)) for name, cmd in self.protocol.commands_by_name().items()
        ]
        self._tokens = set(self.frame_spec.tokens)
        self._request = b""  # the payload being answered (a check sequence is computed from it)

    # --- answers ---------------------------------------------------------------------------------

    def _send(self, text: str) -> bytes:
        data = text.encode(self.enc)
        return data if data in self._tokens else self.frame(data)

    def _values(self) -> dict[str, object]:
        states = self.protocol.states
        if self.faults & STOPPING and states.fault:
            state = states.fault[0]
        elif self.running and states.printing:
            state = states.printing[0]
        else:
            state = states.idle[0]
        depth = max(len(self.fifo) - 1, 0) if self.protocol.coder.depth_excludes_next else len(self.fifo)
        return {
            "depth": depth, "capacity": self.capacity, "last_index": self.last_tag, "count": self.counter,
            "state": state, "error": self._error_code(), "cover": "0", "job": self.job, "index": 0,
        }

    def _error_code(self) -> str:
        codes = self.protocol.errors.codes
        for fault in sorted(self.faults, key=lambda f: f not in (Fault.BUFFER_FULL, Fault.SEQUENCE_ERROR)):
            for code, mapped in codes.items():
                if mapped is fault:
                    return code
        return self.protocol.states.no_error[0] if not self.faults else "1"

    def _refuse(self, fault: Fault | None) -> bytes:
        errors = self.protocol.errors
        cs = self.protocol.check_sequence
        if cs is not None and cs.refused and not errors.answer:
            return cs.refused.encode("latin-1") + cs.of(self._request)
        codes = [c for c, f in errors.codes.items() if f is fault] if fault else []
        if fault is Fault.BUFFER_FULL and errors.buffer_full:
            codes = errors.buffer_full
        return self._send((errors.answer or "").format(code=codes[0] if codes else "0"))

    def nak(self, frame: Frame, reason: str) -> bytes:
        """A bare NAK token when the file has one its error pattern accepts, else a coded refusal."""
        pattern = self.protocol.errors.pattern
        for token in self.frame_spec.tokens:
            if pattern and re.fullmatch(pattern, token.decode("latin-1")):
                return token
        return self._refuse(None)

    def on_print(self, record: SimRecord) -> bytes | None:
        if self.protocol.coder.kind is CoderKind.SINGLE_SLOT:
            self.fifo.appendleft(record)  # a user field prints again on the next trigger until replaced
        for event in self.protocol.events:
            if event.kind == "printed" and event.answer is not None:
                return self._send(event.answer.format(index=record.tag))
        return None

    # --- requests --------------------------------------------------------------------------------

    def handle(self, frame: Frame) -> bytes | None:
        text = frame.payload.decode(self.enc, errors="replace")
        handshake = self.protocol.handshake
        self._request = frame.payload
        if frame.token and text in (handshake.enq, handshake.resend):
            return self._send(handshake.enq_answer) if handshake.enq_answer else None
        for name, cmd, rx in self._commands:
            m = rx.fullmatch(text)
            if m is None or cmd.raw != frame.token:
                continue
            refusal = self._act(name, m.groupdict())
            if refusal is not None:
                return refusal
            values = self._values()
            values.update({k: v for k, v in m.groupdict().items() if k == "index"})
            cs = self.protocol.check_sequence
            if cmd.reply is Reply.CHECK and cs is not None:
                return cs.ok.encode("latin-1") + cs.of(frame.payload)
            return self._send(cmd.answer.format(**values)) if cmd.answer is not None else None
        return self._refuse(None)

    def _act(self, name: str, groups: dict[str, str]) -> bytes | None:
        """Carry out command `name`; the refusal to send instead of its answer, if any."""
        if name == "push":
            return self._store(groups)
        if name == "select_job":
            self.job = groups.get("job", "")
        elif name == "start":
            self.start_printing()
        elif name == "stop" and self.protocol.coder.clear_on_stop:
            self.stop_printing()
        elif name == "stop":
            self.running = False
        elif name == "clear_fault":
            self.clear_faults()
        elif name == "clear_fifo":
            self.fifo.clear()
        return None

    def _store(self, groups: dict[str, str]) -> bytes | None:
        index = int(groups.get("index") or 0)
        if self.protocol.indexed and self._expected_index() not in (None, index):
            return self._refused(Fault.SEQUENCE_ERROR)
        if not self.store(groups.get("text", ""), index):
            return self._refused(Fault.BUFFER_FULL)
        self.faults.discard(Fault.BUFFER_EMPTY)
        return None

    def _refused(self, fault: Fault) -> bytes | None:
        """A push nobody answers is refused through the status error (until clear_fault), others aloud."""
        if self.protocol.commands.push.reply is Reply.NONE:
            self.faults.add(fault)
            return None
        return self._refuse(fault)

    def _expected_index(self) -> int | None:
        """The index after the newest record held or, with the FIFO empty, after the last printed; an
        index that never wraps may start anywhere once the FIFO is empty (None)."""
        wrap = self.protocol.coder.index_wraps_at
        if not wrap:
            return self.fifo[-1].tag + 1 if self.fifo else None
        last = self.fifo[-1].tag if self.fifo else self.last_tag
        return last % wrap + 1

    def store(self, text: str, tag: int = 0) -> bool:
        """A single slot is overwritten by every update (WSI `U`): it never refuses for lack of room."""
        if self.protocol.coder.kind is CoderKind.SINGLE_SLOT and not self._force_full:
            self.fifo.clear()
        return super().store(text, tag)
