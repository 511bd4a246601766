"""A Hitachi IJ printer with the communication buffer (drivers/printers/hitachi_codec.py), printer side.

Behaviour follows the public manual pages: ENQ is answered ACK when on-line and ready, NAK otherwise;
a text is answered ACK, or NAK when it is malformed or the buffer has no room for it; DC2 is answered
ACK (NAK when off-line); "clear buffer" empties the buffer and puts printing on standby; "restart
printing" is refused (NAK) until at least N data sets are in the buffer. Printing from an empty buffer
is a miss (the manual's "communication buffer fault"; ink keeps running).
The printer answers nothing when powered off.

Faults (drivers/sim/faults.py): NAK, silence, garbage instead of the answer, buffer full (also
natural), FIFO cleared (clear-buffer text or the stop fault), power loss, off-line (ENQ/DC2 answered
NAK); ink empty and head faults make the printer off-line, since the public protocol has no fault
report; ink low is invisible to the host for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from drivers.printers.base import ProtocolError
from drivers.printers.hitachi_codec import (
    ACK,
    CLEAR_BUFFER_DEFAULT,
    DC2,
    ENQ,
    NAK,
    RESTART_DEFAULT,
    Bcc,
    TextDeframer,
    decode_print_contents,
    join_items,
)
from drivers.sim.coder_model import CoderModel
from drivers.sim.coder_serve import Injection, StreamSim
from drivers.sim.faults import FaultPlan


@dataclass
class HitachiSimProtocol:
    model: CoderModel
    refill_n: int = 2  # "data number at fault": sets needed before restart, and the fault threshold
    bcc: Bcc = Bcc.NONE
    clear_text: bytes = CLEAR_BUFFER_DEFAULT
    restart_text: bytes = RESTART_DEFAULT
    online: bool = True
    job: str = ""  # job selection is not in the public protocol; always empty
    inject: Injection = field(default_factory=Injection)

    def __post_init__(self) -> None:
        self._deframer = TextDeframer(self.bcc)

    def reset_link(self) -> None:
        self._deframer = TextDeframer(self.bcc)

    @property
    def ready(self) -> bool:
        m = self.model
        return self.online and m.powered and not m.stopped_by_fault

    def receive(self, data: bytes) -> bytes:
        if not self.model.powered:
            return b""
        out = bytearray()
        try:
            parts = self._deframer.feed(data)
        except ProtocolError:
            return bytes([NAK])
        for kind, payload in parts:
            if kind == "ctl" and payload[0] not in (ENQ, DC2):
                continue  # stray bytes between texts are ignored by the printer
            out += self.inject.request(self.model, partial(self._request, kind, payload), bytes([NAK]))
        return bytes(out)

    def _request(self, kind: str, payload: bytes) -> bytes:
        if kind == "ctl":
            return bytes([ACK if self.ready else NAK])
        return bytes([self._text(payload)])

    def _text(self, text: bytes) -> int:
        m = self.model
        if not self.ready:
            return NAK
        if text == self.clear_text:
            m.stop()  # cleared and on standby until "restart printing"
            return ACK
        if text == self.restart_text:
            if len(m.queue) < self.refill_n:
                return NAK
            m.start()
            return ACK
        try:
            items = decode_print_contents(text)
        except ProtocolError:
            return NAK
        return ACK if m.enqueue(join_items(items)) else NAK


class HitachiSim(StreamSim):
    """The Hitachi printer on a pty or TCP (registered as `hitachi` in drivers/sim/__init__.py)."""

    def __init__(
        self,
        *,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
        capacity: int = 20,
        refill_n: int = 2,
        bcc: Bcc = Bcc.NONE,
    ) -> None:
        protocol = HitachiSimProtocol(CoderModel(capacity=capacity), refill_n=refill_n, bcc=bcc)
        super().__init__(protocol, rate_per_min=rate_per_min, baud=baud, faults=faults)
