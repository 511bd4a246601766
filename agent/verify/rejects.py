"""The reject gate: fire through the PLC, expect a confirm for every fire, stop the line when not.

Why a confirm counter and not a flag: the gate may fire twice between two polls; a counter of removed
items never loses one. Gates remove items in conveyor order, so each confirm settles the oldest
outstanding fire. A fire still unconfirmed `confirm_margin` pitches after its item reached the gate
means a product that should have left may still be on the line: the line stops with an alarm, because
carrying on would ship it. The same happens after `max_consecutive` rejects in a row: something
upstream (coder, camera, codes) is broken, and rejecting everything is waste, not control.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from agent.i18n import _
from drivers.plc import LinePlc, unwrap


class StopReason(StrEnum):
    REJECT_UNCONFIRMED = "reject_unconfirmed"
    CONSECUTIVE_REJECTS = "consecutive_rejects"
    PLC_FAILED = "plc_failed"


@dataclass(frozen=True, slots=True)
class Alarm:
    reason: StopReason
    seq: int | None  # the item it concerns, when there is one
    message: str


class RejectBook:
    """The bookkeeping of fires, confirms and the consecutive-reject count; no I/O."""

    def __init__(self, *, gate_at: int, confirm_margin: int, max_consecutive: int) -> None:
        self.gate_at = gate_at
        self.confirm_margin = confirm_margin
        self.max_consecutive = max_consecutive
        self.outstanding: deque[int] = deque()  # fired seqs awaiting confirm, in conveyor order
        self.confirmed: list[int] = []
        self.consecutive = 0
        self._confirm_count: int | None = None  # unwrapped confirm counter last seen

    def baseline(self, raw_confirms: int) -> None:
        self._confirm_count = raw_confirms

    def fired(self, seq: int) -> None:
        self.outstanding.append(seq)

    def verdict(self, seq: int, rejected: bool) -> Alarm | None:
        self.consecutive = self.consecutive + 1 if rejected else 0
        if rejected and self.consecutive >= self.max_consecutive:
            return Alarm(StopReason.CONSECUTIVE_REJECTS, seq,
                         _("{count} rejects in a row (limit {limit}), last seq {seq}; "
                           "check the coder, the camera and the codes before restarting").format(
                             count=self.consecutive, limit=self.max_consecutive, seq=seq))
        return None

    def confirms(self, raw_confirms: int, counter: int) -> Alarm | None:
        """Settle fires with new confirms; an alarm if the oldest fire is overdue at `counter`."""
        last = self._confirm_count if self._confirm_count is not None else raw_confirms
        now = unwrap(raw_confirms, last)
        for _settled in range(max(0, now - last)):
            if self.outstanding:
                self.confirmed.append(self.outstanding.popleft())
        self._confirm_count = now
        if self.outstanding and counter - self.outstanding[0] > self.gate_at + self.confirm_margin:
            seq = self.outstanding.popleft()
            return Alarm(StopReason.REJECT_UNCONFIRMED, seq,
                         _("reject of seq {seq} not confirmed by the gate sensor within {margin} "
                           "pitches of the gate; the item may still be on the line: pull it before restarting").format(
                             seq=seq, margin=self.confirm_margin))
        return None


async def stop_line(plc: LinePlc) -> None:
    """Stop the conveyor first (the one act that matters), then red light and buzzer."""
    await plc.run_line(False)
    await plc.lights(green=False, amber=False, red=True, buzzer=True)
