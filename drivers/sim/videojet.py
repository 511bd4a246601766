"""A Videojet 1000-line CIJ speaking the WSI simple protocol (drivers/printers/videojet_codec.py).

Why it holds a FIFO although WSI has none: the driver serializes with one user-field update per print,
and the simulator keeps those updates in order with a small capacity (`fifo_depth`), as a printer
with a remote-field buffer does. The query replies (`E`, `G`, `Q`, `H`) use the field layout the
driver's defaults expect (drivers/printers/videojet.py); a real printer's layout may differ.

Injectable faults: NAK (next n packets answered `!51`), silence (nothing answered), garbage bytes
before the next answer, buffer full (natural), FIFO cleared by a stop (`O 0` / `K`), power loss (via
the serving layer: link gone, queue lost, counter kept), ink low/empty and head faults (in `E`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
class Injection:
    """Faults on the wire, set by tests or a seeded schedule; consumed as packets arrive."""

    nak_next: int = 0
    silent: bool = False
    garbage: bytes = b""

    def wrap(self, answer: bytes) -> bytes:
        if self.silent:
            return b""
        if self.garbage:
            answer, self.garbage = self.garbage + answer, b""
        return answer


@dataclass
class VideojetSimProtocol:
    model: CoderModel
    user_field: str = "SERIAL"
    checksum: WsiChecksum = WsiChecksum.NONE
    part_number: str = "VJ1620-SIM"
    message: str = ""
    messages: tuple[str, ...] = ("SERIAL", "TEST")
    inject: Injection = field(default_factory=Injection)

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
            return self.inject.wrap(NAK_SEQ)
        for item in packets:
            if not isinstance(item, Packet):
                continue  # a host never sends check sequences; ignore them
            if self.inject.nak_next > 0:
                self.inject.nak_next -= 1
                out += self.inject.wrap(NAK_SEQ)
                continue
            out += self.inject.wrap(self._answer(item))
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
                if len(p.fields) != 1 or p.fields[0] not in self.messages:
                    return NAK_SEQ
                self.message = p.fields[0]
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
                return self._reply(PacketType.SELECTED_MESSAGE, self.message)
            case PacketType.PART_NUMBER:
                return self._reply(PacketType.PART_NUMBER, self.part_number)
        return NAK_SEQ
