"""A Videojet 1000-line CIJ speaking the WSI simple protocol (drivers/printers/videojet_codec.py).

Why it holds a FIFO although WSI has none: the driver serializes with one user-field update per print,
and the simulator keeps those updates in order with a small capacity (`fifo_depth`), as a printer
with a remote-field buffer does. The query replies (`E`, `G`, `Q`, `H`) use the field layout the
driver's defaults expect (drivers/printers/videojet.py); a real printer's layout may differ.

Faults (drivers/sim/faults.py, armed or from a seeded plan): NAK (`!51`), silence, garbage instead of
the answer, buffer full (also natural), FIFO cleared by a stop (`O 0` / `K`, or the stop fault), power
loss (link gone, queue lost, counter kept), ink low, and ink empty / head faults (reported in `E`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from drivers.printers.base import Fault, ProtocolError
from drivers.printers.videojet_codec import (
    ACK_SEQ,
    NAK_SEQ,
    Packet,
    PacketType,
    WsiChecksum,
    WsiDeframer,
    encode_packet,
)
from drivers.sim.coder_model import CoderModel
from drivers.sim.coder_serve import Injection, StreamSim
from drivers.sim.faults import FaultPlan

# The simulator's reply conventions, mirrored by the driver's default settings.
STATE_IDLE, STATE_PRINTING, STATE_FAULT = "0", "1", "2"
FAULT_CODES: dict[Fault, str] = {
    Fault.INK_LOW: "IL",
    Fault.INK_EMPTY: "IE",
    Fault.HEAD_FAULT: "HF",
    Fault.BUFFER_EMPTY: "BE",
    Fault.COVER_OPEN: "CO",
    Fault.OTHER: "OT",
}


@dataclass
class VideojetSimProtocol:
    model: CoderModel
    user_field: str = "SERIAL"
    checksum: WsiChecksum = WsiChecksum.NONE
    part_number: str = "VJ1620-SIM"
    job: str = ""  # the selected message
    messages: tuple[str, ...] | None = None  # the printer's messages; None: any name exists
    inject: Injection = field(default_factory=lambda: Injection(banned=b"$!"))

    def __post_init__(self) -> None:
        self._deframer = WsiDeframer(self.checksum)

    def reset_link(self) -> None:
        self._deframer.reset()

    def receive(self, data: bytes) -> bytes:
        """Bytes from the host -> bytes to answer (possibly empty)."""
        out = bytearray()
        try:
            packets = self._deframer.feed(data)
        except ProtocolError:
            return NAK_SEQ
        for item in packets:
            if isinstance(item, Packet):  # a host never sends check sequences; ignore them
                out += self.inject.request(self.model, partial(self._answer, item), NAK_SEQ)
        return bytes(out)

    def _reply(self, kind: PacketType, *fields: str) -> bytes:
        return encode_packet(Packet(kind, fields), self.checksum)

    def _answer(self, p: Packet) -> bytes:
        m = self.model
        ok = ACK_SEQ
        match p.kind:
            case PacketType.UPDATE_USER_FIELD:
                if len(p.fields) != 2 or p.fields[0] != self.user_field:
                    return NAK_SEQ
                return ok if m.enqueue(p.fields[1]) else NAK_SEQ
            case PacketType.SELECT_MESSAGE:
                if len(p.fields) != 1 or (self.messages is not None and p.fields[0] not in self.messages):
                    return NAK_SEQ
                self.job = p.fields[0]
                return ok
            case PacketType.UPDATE_TEXT | PacketType.CLEAR_FIELD:
                return ok if p.fields else NAK_SEQ
            case PacketType.PRINT_ON_OFF:
                if p.fields == ("1",):
                    if m.stopped_by_fault:
                        return NAK_SEQ
                    m.start()
                    return ok
                if p.fields == ("0",):
                    m.stop()
                    return ok
                return NAK_SEQ
            case PacketType.STOP_JET:
                m.stop()
                return ok
            case PacketType.ERROR_STATUS:
                state = STATE_FAULT if m.stopped_by_fault else STATE_PRINTING if m.running else STATE_IDLE
                codes = ",".join(sorted(FAULT_CODES[f] for f in m.faults))
                return self._reply(PacketType.ERROR_STATUS, state, codes)
            case PacketType.COUNTERS:
                return self._reply(PacketType.COUNTERS, str(m.counter), str(len(m.queue)))
            case PacketType.SELECTED_MESSAGE:
                return self._reply(PacketType.SELECTED_MESSAGE, self.job)
            case PacketType.PART_NUMBER:
                return self._reply(PacketType.PART_NUMBER, self.part_number)
        return NAK_SEQ


class VideojetSim(StreamSim):
    """The WSI printer on a pty or TCP (registered as `videojet_wsi` in drivers/sim/__init__.py)."""

    def __init__(
        self,
        *,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
        capacity: int = 4,
        user_field: str = "SERIAL",
        checksum: WsiChecksum = WsiChecksum.NONE,
    ) -> None:
        protocol = VideojetSimProtocol(CoderModel(capacity=capacity), user_field=user_field, checksum=checksum)
        super().__init__(protocol, rate_per_min=rate_per_min, baud=baud, faults=faults)
