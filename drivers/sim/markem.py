"""A Markem-Imaje NextGen coder (SmartDate-like, one print head) speaking NGPCL.

Written from "NGPCL Usage Guide" v25 (Markem Technologies Ltd, 15 Oct 2014; public as
`docs/X30通信协议NGPCL Users Guide v25.pdf` in cxzhe/JunSheng), sections 4-6 and 10, and from the
replies captured on real coders in GlenCashen/videojet-message-manager (emulator/emulator.py `NGPCL_DS`
and its handlers; server/ngpcl-status.js; test/ngpcl-status.test.js): every reply is followed by
CR LF, the status field is on (`{~DS0|...}`, `{~JN0|...}`, `{~FC0|...}`), an unknown job is
`{~JS1|}`, an unknown field read is `{~FC1|}`, anything not understood is `{~NK1|}`.

The coder (section 10.2, 5.5-5.7): one job with one updatable user-input field. A Job Update replaces
the field and images it; every trigger prints whatever the field holds (the field keeps its value,
5.6 reads it back), so a code not replaced in time prints twice; a stop does not empty the field and
nor (the sim's choice, the document is silent) does a power loss. Device Status (5.11) reports, after
the leading field real coders send (always 0 in the captures, absent from the guide's example), the
producing / aborted / warning / imaging-complete flags, the result of the last select or update and
the PackML state (section 6): READY 04 at rest, PRODUCING 06, HELD 11, ABORTED 09 when a stopping
fault happens (captured "beam stop": aborted and warning flags set). State Change (5.22) targets only
READY, PRODUCING and HELD (the SmartDate note); READY is the way out of ABORTED. Counts (5.14-5.15)
report TOTAL and BATCH (reset by a job select). Print Go (5.19), Print Status (5.20-5.21), Clear to
Send (5.12-5.13), Version (5.29-5.30) and Protocol Version (5.32-5.33) are answered.

Left out: replies that wait ("reply when imaged / when ready / when clear to send"): imaging takes no
time here, and a Clear to Send or Print Status that would have to wait is answered at once; the
checkfield, message numbers, Unicode and multi-head line references (a non-blank one fails).
Faults (drivers/sim/faults.py): NAK (`{~NK1|}`), silence, garbage, buffer_full (the next Job Update is
refused, `{~JU1|}`), stop (READY, the field kept), power loss, ink low (the warning flag).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from drivers.printers.base import Fault
from drivers.sim.coder_model import CoderModel
from drivers.sim.coder_serve import Injection, StreamSim
from drivers.sim.faults import FaultPlan

CRLF = b"\r\n"
TARGETABLE = ("04", "06", "11")  # 5.22: for SmartDate only READY, PRODUCING and HELD
ENDS = {ord("{"): ord("}"), 0x02: 0x03}  # section 4: printable and traditional packet delimiters
BETWEEN = b"\r\n\t \x00"


class Message(NamedTuple):
    ident: str  # the two letters after '~'
    fields: tuple[str, ...] = ()  # each field of the body (every one ends with '|' on the wire)


def wire(msg: Message, start: int) -> bytes:
    body = "".join(f"{f}|" for f in msg.fields)
    return bytes([start]) + f"~{msg.ident}{body}".encode("latin-1") + bytes([ENDS[start]]) + CRLF


class Packets:
    """Section 4 read the coder's way: packets cut at their end byte; None for one that does not parse."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def reset(self) -> None:
        self.buf.clear()

    def feed(self, data: bytes) -> list[tuple[Message | None, int]]:
        self.buf += data
        out: list[tuple[Message | None, int]] = []
        while True:
            while self.buf[:1] and self.buf[0] in BETWEEN:
                del self.buf[0]
            if not self.buf:
                return out
            start = self.buf[0]
            if start not in ENDS:
                self.buf.clear()
                out.append((None, ord("{")))
                return out
            end = self.buf.find(bytes([ENDS[start]]))
            if end < 0:
                if len(self.buf) > 4096:
                    self.buf.clear()
                    out.append((None, start))
                return out
            text = bytes(self.buf[1:end]).decode("latin-1")
            del self.buf[: end + 1]
            out.append((_parse(text), start))


def _parse(text: str) -> Message | None:
    if len(text) >= 4 and text[:4].isdigit():
        text = text[4:]  # an optional message number
    if len(text) < 3 or text[0] != "~" or not (text[1:3].isascii() and text[1:3].isalpha()):
        return None
    body = text[3:]
    if body and not body.endswith("|"):
        return None
    return Message(text[1:3], tuple(body[:-1].split("|")) if body else ())


@dataclass
class SlotModel(CoderModel):
    """The job's field instead of a queue: replaced by an update, printed on every trigger."""

    slot: str = ""
    imaged: bool = False  # 5.11 "imaging complete": set by an update, reset by a print

    def enqueue(self, text: str) -> bool:
        if self.force_full:  # the buffer_full fault: the update fails
            self.force_full -= 1
            return False
        self.slot = text
        self.imaged = True
        return True

    def clear(self) -> None:
        """A stop or power loss leaves the field as it is."""

    def fire(self) -> str | None:
        if not (self.powered and self.running) or self.stopped_by_fault:
            self.missed += 1
            return None
        self.counter += 1
        self.printed.append(self.slot)
        self.imaged = False
        return self.slot


@dataclass
class MarkemSimProtocol:
    model: CoderModel  # a SlotModel (typed as the serving machinery expects)
    field_name: str = "SERIAL"
    jobs: tuple[str, ...] | None = None  # the coder's jobs; None: any name exists
    job: str = ""
    reply_status: bool = True  # the coder's 'status field' setting (4.4.3)
    ds_lead: bool = True  # real coders send one more field before the producing flag (captures); the guide none
    inject: Injection = field(default_factory=lambda: Injection(banned=b"{}~|\x02\x03"))
    held: bool = False
    last_update: str = "0"  # 5.11 result of the last job select or update
    batch_base: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, SlotModel):
            raise TypeError("an NGPCL coder prints from a field: give it a SlotModel")
        self.slot_model = self.model
        self._packets = Packets()

    def reset_link(self) -> None:
        self._packets.reset()

    @property
    def state(self) -> str:
        if self.model.stopped_by_fault:
            return "09"
        if self.model.running:
            return "06"
        return "11" if self.held else "04"

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for msg, start in self._packets.feed(data):
            nak = wire(Message("NK", ("1",)), start)  # 5.1: a packet that does not parse
            if msg is None:
                out += nak
                continue
            out += self.inject.request(self.model, partial(self._reply, msg, start), nak)
        return bytes(out)

    def _reply(self, msg: Message, start: int) -> bytes:
        return wire(self._answer(msg) or Message("NK", ("1",)), start)

    def _response(self, ident: str, *body: str, ok: bool = True) -> Message:
        if not self.reply_status:
            return Message(ident, body if ok or body else ("",))
        return Message(ident, ("0" if ok else "1", *body))

    def _answer(self, msg: Message) -> Message | None:
        m, f = self.slot_model, msg.fields
        match msg.ident:
            case "DR":  # 5.10 / 5.11
                if f != ("",):
                    return self._response("DS", ok=False)
                aborted = self.state == "09"
                warning = aborted or Fault.INK_LOW in m.faults
                flags = ("1" if m.running and not aborted else "0", "1" if aborted else "0",
                         "1" if warning else "0", "1" if m.imaged else "0")
                lead = ("0",) if self.ds_lead else ()
                return self._response("DS", *lead, *flags, self.last_update, "0", "000000000", self.state, "1")
            case "JR":  # 5.3 / 5.4
                return self._response("JN", self.job, ok=bool(self.job)) if f == ("",) else None
            case "JS":  # 5.2
                if len(f) < 3 or f[0] not in ("0", "1") or len(f) % 2 == 0:
                    return None
                if self.jobs is not None and f[1] not in self.jobs:
                    self.last_update = "4"  # failed: file missing
                    return Message("JS", ("1",))
                self.job, m.slot, m.imaged = f[1], "", True
                self.batch_base = m.counter
                return self._update(f[3:], "JS")
            case "JU":  # 5.5
                if len(f) < 3 or f[0] not in ("0", "1") or f[1] not in ("", self.job) or len(f) % 2 == 0:
                    return None
                return self._update(f[3:], "JU")
            case "FR":  # 5.6 / 5.7
                if len(f) != 2 or f[0] not in ("", self.job) or f[1] not in ("", self.field_name):
                    return self._response("FC", ok=False) if len(f) == 2 else None
                return self._response("FC", self.field_name, m.slot)
            case "CR":  # 5.14 / 5.15
                total, batch = m.counter, m.counter - self.batch_base
                return self._response("CV", "TOTAL", f"{total:09d}", "BATCH", f"{batch:09d}") if f == ("",) else None
            case "DC":  # 5.12 / 5.13: ready once the last update started printing; never when not producing
                if f not in (("0",), ("1",)):
                    return None
                return self._response("DV", "0" if self.state == "06" and not m.imaged else "1")
            case "PS":  # 5.20 / 5.21
                if len(f) != 2 or f[0] != "" or f[1] not in ("0", "1"):
                    return None
                return self._response("PR", "3" if self.state == "09" else "0" if self.state == "06" else "1")
            case "PG":  # 5.19: a print go from the host
                if len(f) != 3 or f[0] != "" or f[1] != "0" or f[2] not in ("0", "1", "2"):
                    return None
                return Message("PG", ("0" if m.fire() is not None else "1",))
            case "ST":  # 5.22
                return self._state_change(f)
            case "VR":  # 5.29 / 5.30
                return self._response("VV", "001", "000", "000") if not f else None
            case "PV":  # 5.32 / 5.33
                return self._response("VP", "2.0") if f == ("",) else None
        return None

    def _update(self, pairs: tuple[str, ...], ident: str) -> Message:
        """Field name/value pairs of a select or update: every field must be in the image (10.2)."""
        names, values = pairs[0::2], pairs[1::2]
        if any(name != self.field_name for name in names):  # 5.11 has no result code for it: unchanged
            return Message(ident, ("1",))
        for value in values:
            if not self.slot_model.enqueue(value):
                return Message(ident, ("1",))
        self.last_update = "2"
        return Message(ident, ("0",))

    def _state_change(self, f: tuple[str, ...]) -> Message | None:
        if len(f) != 2 or f[0] != "":
            return None
        target, m = f[1], self.slot_model
        if target not in TARGETABLE or (target == "06" and m.stopped_by_fault):
            return Message("ST", ("1",))
        if target == "06":
            m.start()
        else:
            m.running = False
            m.faults.clear()  # READY/HELD from ABORTED: the PackML clear; a persisting cause would come back
        self.held = target == "11"
        return Message("ST", ("0",))


class MarkemSim(StreamSim):
    """The NGPCL coder on a pty or TCP (registered as `markem_ngpcl` in drivers/sim/__init__.py)."""

    def __init__(
        self,
        *,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
        capacity: int = 1,  # accepted for `lineagent sim printer --capacity`; a field holds one code
        field_name: str = "SERIAL",
        jobs: tuple[str, ...] | None = None,
        reply_status: bool = True,
        ds_lead: bool = True,
    ) -> None:
        del capacity
        protocol = MarkemSimProtocol(SlotModel(capacity=1), field_name=field_name, jobs=jobs,
                                     reply_status=reply_status, ds_lead=ds_lead)
        super().__init__(protocol, rate_per_min=rate_per_min, baud=baud, faults=faults)
