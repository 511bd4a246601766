"""The reject gate: expect a confirm for every item the gate must remove, stop the line when not.

Why a confirm counter and not a flag: the gate may fire twice between two polls; a counter of removed
items never loses one. Gates remove items in conveyor order, so each confirm settles the oldest
outstanding removal, and only a settled removal lets the station decommission that item's code
(agent/verify/records.py). Under a reject-only gate the removals expected are the items fired; under
positive release, every item that reached the gate without its release. A removal still unconfirmed
`confirm_margin` pitches after its item reached the gate means a product that should have left may still
be on the line: the line stops with an alarm, because carrying on would ship it. The same happens after
`max_consecutive` rejects in a row: something upstream (coder, camera, codes) is broken, and rejecting
everything is waste, not control.
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
        """The gate must remove `seq` (fired, or not released); kept in conveyor order."""
        if self.outstanding and seq < self.outstanding[-1]:
            items = sorted([*self.outstanding, seq])
            self.outstanding = deque(items)
        else:
            self.outstanding.append(seq)

    def verdict(self, seq: int, rejected: bool) -> Alarm | None:
        self.consecutive = self.consecutive + 1 if rejected else 0
        if rejected and self.consecutive >= self.max_consecutive:
            return Alarm(StopReason.CONSECUTIVE_REJECTS, seq,
                         _("{count} rejects in a row (limit {limit}), last seq {seq}; "
                           "check the coder, the camera and the codes before restarting").format(
                             count=self.consecutive, limit=self.max_consecutive, seq=seq))
        return None

    def confirms(self, raw_confirms: int, counter: int) -> tuple[list[int], Alarm | None]:
        """Settle removals with new confirms (the seqs settled); an alarm if the oldest is overdue at
        `counter` (its seq is dropped from the book: the item may have left the line)."""
        last = self._confirm_count if self._confirm_count is not None else raw_confirms
        now = unwrap(raw_confirms, last)
        settled: list[int] = []
        for _settled in range(max(0, now - last)):
            if self.outstanding:
                settled.append(self.outstanding.popleft())
        self.confirmed.extend(settled)
        self._confirm_count = now
        if self.outstanding and counter - self.outstanding[0] > self.gate_at + self.confirm_margin:
            seq = self.outstanding.popleft()
            return settled, Alarm(StopReason.REJECT_UNCONFIRMED, seq,
                         _("reject of seq {seq} not confirmed by the gate sensor within {margin} "
                           "pitches of the gate; the item may still be on the line: pull it before restarting").format(
                             seq=seq, margin=self.confirm_margin))
        return settled, None


async def stop_line(plc: LinePlc) -> None:
    """Stop the conveyor first (the one act that matters), then red light and buzzer."""
    await plc.run_line(False)
    await plc.lights(green=False, amber=False, red=True, buzzer=True)
