"""A Hitachi IJ printer with the communication buffer (drivers/printers/hitachi_codec.py), printer side.

Behaviour follows the public manual pages: ENQ is answered ACK when on-line and ready, NAK otherwise;
a text is answered ACK, or NAK when it is malformed or the buffer has no room for it; DC2 is answered
ACK (NAK when off-line); "clear buffer" empties the buffer and puts printing on standby; "restart
printing" is refused (NAK) until at least N data sets are in the buffer. Printing from an empty buffer
is a miss (the manual's "communication buffer fault"; ink keeps running).
The printer answers nothing when powered off.

Injectable faults: NAK (next n answers), silence, garbage before the next answer, buffer full
(natural), FIFO cleared (clear-buffer text or a stop), power loss, off-line (ENQ/DC2 answered NAK),
ink low/empty and head faults (these make the printer off-line: the public protocol has no fault
report, so off-line is all a host can see).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
from drivers.sim.videojet import Injection


@dataclass
class HitachiSimProtocol:
    model: CoderModel
    refill_n: int = 2  # "data number at fault": sets needed before restart, and the fault threshold
    bcc: Bcc = Bcc.NONE
    clear_text: bytes = CLEAR_BUFFER_DEFAULT
    restart_text: bytes = RESTART_DEFAULT
    online: bool = True
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
            return self.inject.wrap(bytes([NAK]))
        for kind, payload in parts:
            if kind == "ctl":
                if payload[0] not in (ENQ, DC2):
                    continue  # stray bytes between texts are ignored by the printer
                answer = ACK if self.ready else NAK
            else:
                answer = self._text(payload)
            if self.inject.nak_next > 0:
                self.inject.nak_next -= 1
                answer = NAK
            out += self.inject.wrap(bytes([answer]))
        return bytes(out)

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
