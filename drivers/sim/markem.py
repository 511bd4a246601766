"""A Markem-Imaje SmartDate/NextGen coder speaking NGPCL (drivers/printers/markem_codec.py).

Accepted commands are answered with nothing (no positive acknowledgement is public); refused ones with
`{~NK1|}`; `{~DR}` with `{~DS0|state|faults|counter|depth|}`, the layout the driver's default settings
read (a real coder's DS0 layout is not public). Beyond the public set, the simulator understands the
same-shaped `{~PS0|1|}` / `{~PS0|0|}` (print start / stop) and `{~EC0|}` (clear faults) so that the
contract suite can drive it; the driver sends those only when its settings name them.

Injectable faults: NAK (next n commands refused), silence, garbage before the next answer, buffer full
(natural), FIFO cleared by a stop, power loss, ink low/empty, head fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.printers.base import ProtocolError
from drivers.printers.markem_codec import Deframer, Message, encode
from drivers.sim.coder_model import CoderModel
from drivers.sim.videojet import FAULT_CODES, STATE_FAULT, STATE_IDLE, STATE_PRINTING, Injection

NAK_MESSAGE = encode(Message("NK1", ()))


@dataclass
class MarkemSimProtocol:
    model: CoderModel
    field_name: str = "SERIAL"
    jobs: tuple[str, ...] = ("SERIAL", "TEST")
    job: str = ""
    inject: Injection = field(default_factory=Injection)

    def __post_init__(self) -> None:
        self._deframer = Deframer()

    def reset_link(self) -> None:
        self._deframer.reset()

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        try:
            messages = self._deframer.feed(data)
        except ProtocolError:
            return self.inject.wrap(NAK_MESSAGE)
        for msg in messages:
            if self.inject.nak_next > 0 and msg.code != "DR":
                self.inject.nak_next -= 1
                out += self.inject.wrap(NAK_MESSAGE)
                continue
            answer = self._answer(msg)
            if answer:
                out += self.inject.wrap(answer)
        return bytes(out)

    def _answer(self, msg: Message) -> bytes:
        m = self.model
        f = msg.fields or ()
        match msg.code:
            case "DR":
                state = STATE_FAULT if m.stopped_by_fault else STATE_PRINTING if m.running else STATE_IDLE
                codes = ",".join(sorted(FAULT_CODES[x] for x in m.faults))
                return encode(Message("DS0", (state, codes, str(m.counter), str(len(m.queue)))))
            case "JU0":
                if len(f) != 4 or f[2] != self.field_name:
                    return NAK_MESSAGE
                return b"" if m.enqueue(f[3]) else NAK_MESSAGE
            case "JS0":
                if len(f) != 2 or f[0] not in self.jobs:
                    return NAK_MESSAGE
                self.job = f[0]
                m.clear()  # a job change starts from an empty queue
                return b""
            case "PS0":
                if f == ("1",) and not m.stopped_by_fault:
                    m.start()
                    return b""
                if f == ("0",):
                    m.stop()
                    return b""
                return NAK_MESSAGE
            case "EC0":
                m.clear_faults()
                return b""
        return NAK_MESSAGE
