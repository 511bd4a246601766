"""A Leibinger JET coder in mailing mode, speaking the frames of drivers/printers/leibinger.py.

It follows the same public facts and the same assumed answer layout as the driver (see that module's
docstring): `=MR<index>\t<data>` with the index checked (1015 full, 1018 bad index, 1019 out of
sequence), `?SM` buffer size / records waiting / last printed index, `?RS`, `?CC`, `!GO`, `!ST` (clears
the mailing data), `!EQ`, `!FF`, `=JL`. Each index must follow the newest record held, or with the
buffer empty the last one printed (0 after power-on): so after a clear the coder expects the index
after its last print (our assumption; the public text says only that it stops on an out-of-order index).
Codes that are ours, not Leibinger's: 2001 ink low, 9000 "refused" (an injected NAK), 9001 unknown command.
"""

from __future__ import annotations

from drivers.framing import Frame
from drivers.printers.base import Fault
from drivers.printers.leibinger import (
    ERR_BAD_INDEX,
    ERR_BUFFER_EMPTY,
    ERR_BUFFER_FULL,
    ERR_OUT_OF_SEQUENCE,
    FRAME_SPEC,
    STATE_FAULT,
    STATE_PRINTING,
)
from drivers.sim.base import STOPPING, SimCoder
from drivers.sim.faults import FaultPlan

ERR_INK_LOW, ERR_REFUSED, ERR_UNKNOWN = 2001, 9000, 9001
STATE_READY = 3
FAULT_CODES: dict[Fault, int] = {
    Fault.BUFFER_EMPTY: ERR_BUFFER_EMPTY,
    Fault.INK_LOW: ERR_INK_LOW,
    Fault.HEAD_FAULT: 3001,
    Fault.INK_EMPTY: 3002,
    Fault.OTHER: 3999,
}


class LeibingerSim(SimCoder):
    frame_spec = FRAME_SPEC
    name = "leibinger"

    def __init__(
        self,
        *,
        capacity: int = 256,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
    ) -> None:
        super().__init__(rate_per_min=rate_per_min, baud=baud, faults=faults)
        self.capacity = capacity

    def _answer(self, text: str) -> bytes:
        return self.frame(text.encode("latin-1"))

    def _error(self, code: int) -> bytes:
        return self._answer(f"!ER\t{code}")

    def nak(self, frame: Frame, reason: str) -> bytes:
        return self._error(ERR_REFUSED)

    def handle(self, frame: Frame) -> bytes | None:
        text = frame.payload.decode("latin-1")
        head = text[:3]
        if head == "=MR":
            return self._store(text[3:])
        if head == "?SM":
            return self._answer(f"=SM\t{self.capacity}\t{len(self.fifo)}\t{self.last_tag}")
        if head == "?RS":
            return self._answer(f"=RS\t1\t{self._machine_state()}\t{self._error_code()}\t0\t0")
        if head == "?CC":
            return self._answer(f"=CC\t{self.counter}")
        if head == "=JL":
            self.job = text[4:]
            return self._answer(head)
        actions = {"!GO": self.start_printing, "!ST": self.stop_printing, "!EQ": self.clear_faults, "!FF": self._flush}
        if head in actions:
            actions[head]()
            return self._answer(head)
        return self._error(ERR_UNKNOWN)

    def _store(self, rest: str) -> bytes:
        index_text, sep, data = rest.partition("\t")
        if not sep or not index_text.isdigit() or not 1 <= int(index_text) <= self.capacity:
            return self._error(ERR_BAD_INDEX)
        index = int(index_text)
        if index != self.expected_index():
            return self._error(ERR_OUT_OF_SEQUENCE)
        if not self.store(data, index):
            return self._error(ERR_BUFFER_FULL)
        self.faults.discard(Fault.BUFFER_EMPTY)
        return self._answer(f"=MR{index}")

    def _flush(self) -> None:
        self.fifo.clear()

    def _machine_state(self) -> int:
        if self.faults & STOPPING:
            return STATE_FAULT
        return STATE_PRINTING if self.running else STATE_READY

    def _error_code(self) -> int:
        for fault in (Fault.HEAD_FAULT, Fault.INK_EMPTY, Fault.OTHER, Fault.BUFFER_EMPTY, Fault.INK_LOW):
            if fault in self.faults:
                return FAULT_CODES[fault]
        return 0
