"""A Markem-Imaje SmartDate/NextGen coder speaking NGPCL (drivers/printers/markem_codec.py).

Accepted commands are answered with nothing (no positive acknowledgement is public); refused ones with
`{~NK1|}`; `{~DR}` with `{~DS0|state|faults|counter|depth|}`, the layout the driver's default settings
read (a real coder's DS0 layout is not public). Beyond the public set, the simulator understands the
same-shaped `{~PS0|1|}` / `{~PS0|0|}` (print start / stop) and `{~EC0|}` (clear faults) so that the
contract suite can drive it; the driver sends those only when its settings name them.

Faults (drivers/sim/faults.py): NAK, silence, garbage instead of the answer, buffer full (also
natural), FIFO cleared by a stop, power loss, ink low, and ink empty / head faults (reported in DS0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from drivers.printers.base import ProtocolError
from drivers.printers.markem_codec import Deframer, Message, encode
from drivers.sim.coder_model import CoderModel
from drivers.sim.coder_serve import Injection, StreamSim
from drivers.sim.faults import FaultPlan
from drivers.sim.videojet import FAULT_CODES, STATE_FAULT, STATE_IDLE, STATE_PRINTING

NAK_MESSAGE = encode(Message("NK1", ()))


@dataclass
class MarkemSimProtocol:
    model: CoderModel
    field_name: str = "SERIAL"
    jobs: tuple[str, ...] | None = None  # the coder's jobs; None: any name exists
    job: str = ""
    inject: Injection = field(default_factory=lambda: Injection(banned=b"{}~|"))

    def __post_init__(self) -> None:
        self._deframer = Deframer()

    def reset_link(self) -> None:
        self._deframer.reset()

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        try:
            messages = self._deframer.feed(data)
        except ProtocolError:
            return NAK_MESSAGE
        for msg in messages:
            out += self.inject.request(self.model, partial(self._answer, msg), NAK_MESSAGE)
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
                if len(f) != 2 or (self.jobs is not None and f[0] not in self.jobs):
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


class MarkemSim(StreamSim):
    """The NGPCL coder on a pty or TCP (registered as `markem_ngpcl` in drivers/sim/__init__.py)."""

    def __init__(
        self,
        *,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
        capacity: int = 4,
        field_name: str = "SERIAL",
    ) -> None:
        protocol = MarkemSimProtocol(CoderModel(capacity=capacity), field_name=field_name)
        super().__init__(protocol, rate_per_min=rate_per_min, baud=baud, faults=faults)
