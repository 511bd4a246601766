"""Feeder alarms: typed, edge-triggered, delivered to a callback and/or an asyncio queue.

Why edge-triggered: the feeder checks its coder many times a second; an operator panel (and the
uplink) wants one "raised" when a condition starts and one "cleared" when it ends, not a flood.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from agent.i18n import N_, _


class Alarm(StrEnum):
    SLOW_FEED = "slow_feed"  # FIFO below the low-water mark while printing: it will run dry soon
    FIFO_EMPTY = "fifo_empty"  # printing with nothing in the FIFO: items pass unmarked
    CODES_SHORT = "codes_short"  # the pool cannot cover the job: import a code package
    COMMUNICATION = "communication"  # the coder does not answer (or answers garbage)
    CODER_FAULT = "coder_fault"  # the coder reports a fault that stops printing
    IN_DOUBT = "in_doubt"  # a reconcile left codes in doubt (they will be voided unless proven)
    RATE_LIMIT = "rate_limit"  # the line is faster than the coder's link can feed one code per item
    UNPRINTABLE_CODE = "unprintable_code"  # a code this coder cannot print was voided (an event)
    UNPRINTABLE_JOB = "unprintable_job"  # several codes in a row cannot be printed: feeding stopped


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    alarm: Alarm
    coder: str
    active: bool  # True: raised; False: cleared
    detail: str
    at: float


class AlarmSink:
    """Keeps which alarms are active per coder and announces only changes."""

    def __init__(
        self,
        coder: str,
        *,
        callback: Callable[[AlarmEvent], None] | None = None,
        queue: asyncio.Queue[AlarmEvent] | None = None,
    ) -> None:
        self.coder = coder
        self._callback = callback
        self._queue = queue
        self._active: set[Alarm] = set()
        self.history: deque[AlarmEvent] = deque(maxlen=1000)  # the recent ones, for status/tests

    @property
    def active(self) -> frozenset[Alarm]:
        return frozenset(self._active)

    def set(self, alarm: Alarm, active: bool, detail: str = "") -> None:
        """Raise or clear `alarm`; a no-op if it is already in that state."""
        if active == (alarm in self._active):
            return
        if active:
            self._active.add(alarm)
        else:
            self._active.discard(alarm)
        self._emit(AlarmEvent(alarm, self.coder, active, detail, time.time()))

    def pulse(self, alarm: Alarm, detail: str) -> None:
        """A one-off alarm (an event, not a condition): announced every time."""
        self._emit(AlarmEvent(alarm, self.coder, True, detail, time.time()))

    def _emit(self, event: AlarmEvent) -> None:
        self.history.append(event)
        if self._callback is not None:
            self._callback(event)
        if self._queue is not None:
            self._queue.put_nowait(event)


# The operator's words for each alarm, marked for the catalogue and translated where shown.
DESCRIPTIONS: dict[Alarm, str] = {
    Alarm.SLOW_FEED: N_("the coder's FIFO is running low while printing: it will run dry soon"),
    Alarm.FIFO_EMPTY: N_("the coder is printing with an empty FIFO: items pass unmarked"),
    Alarm.CODES_SHORT: N_("not enough codes in the pool for this job: import a code package"),
    Alarm.COMMUNICATION: N_("the coder does not answer, or answers garbage"),
    Alarm.CODER_FAULT: N_("the coder reports a fault that stops printing"),
    Alarm.IN_DOUBT: N_("a reconcile left codes in doubt: they will be voided unless proven printed"),
    Alarm.UNPRINTABLE_CODE: N_("a code this coder cannot print was voided, with the reason in the journal"),
    Alarm.UNPRINTABLE_JOB: N_("the job's codes cannot be printed on this coder: feeding stopped"),
}


def describe(alarm: Alarm) -> str:
    """What `alarm` means, for an operator, in the current language."""
    return _(DESCRIPTIONS[alarm])
