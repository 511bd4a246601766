"""The line's alarm board: every active alarm, by source, and what the stack light shows for them.

Why one board: a coder alarm, a verify-station line stop and a sync backlog come from different parts,
but the operator sees one stack light and one status screen. Each part reports (source, key) on/off;
the board keeps what is active and says which light that makes.

Why `since` is not the order: it is wall time, shown to the operator and journaled, and the wall clock
jumps (agent/clock.py). The board orders alarms of one severity by when it raised them, counted on its
own (`seq`), so a clock set back does not put a new alarm before an old one.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from agent.i18n import N_, _


class Severity(IntEnum):
    INFO = 0
    WARNING = 1  # amber: the line runs, someone should look (sync backlog, low code stock, slow feed)
    STOP = 2  # red + buzzer: the line is stopped or must stop (reject not confirmed, device lost)


class Light(StrEnum):
    GREEN = "green"  # running, nothing wrong
    AMBER = "amber"
    RED = "red"
    OFF = "off"  # not running, nothing wrong


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """One raise or clear, queued for the daemon's log and the journal (AlarmBoard.take_changes)."""

    source: str
    key: str
    active: bool
    severity: Severity
    detail: str
    at: float


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    source: str  # a device or station name, or "sync"
    key: str  # what is wrong, e.g. "communication", "reject_unconfirmed"
    severity: Severity
    detail: str
    since: float  # wall time, for people
    seq: int = 0  # raise order on this board, for sorting


class AlarmBoard:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seq = itertools.count(1)
        self._active: dict[tuple[str, str], ActiveAlarm] = {}
        self._acked: set[tuple[str, str]] = set()  # active alarms an operator acknowledged (buzzer off)
        self.raised = 0  # alarms raised since start (for status and tests)
        # Raises and clears not yet logged/journaled; deque appends are atomic, so any thread may set().
        self._changes: deque[AlarmChange] = deque(maxlen=10_000)

    def set(self, source: str, key: str, active: bool, severity: Severity = Severity.WARNING,
            detail: str = "") -> bool:
        """Raise or clear one alarm; True when that changed something."""
        k = (source, key)
        if not active:
            self._acked.discard(k)
            gone = self._active.pop(k, None)
            if gone is not None:
                self._changes.append(AlarmChange(source, key, False, gone.severity, gone.detail, self._clock()))
            return gone is not None
        old = self._active.get(k)
        if old is not None and old.severity == severity and old.detail == detail:
            return False
        now = self._clock()
        self._active[k] = ActiveAlarm(source, key, severity, detail, old.since if old else now,
                                      old.seq if old else next(self._seq))
        if old is None:
            self.raised += 1
        self._changes.append(AlarmChange(source, key, True, severity, detail, now))
        return True

    def take_changes(self) -> list[AlarmChange]:
        """Raises and clears since the last call, oldest first."""
        out = []
        while self._changes:
            out.append(self._changes.popleft())
        return out

    def clear_source(self, source: str) -> None:
        for k in [k for k in self._active if k[0] == source]:
            del self._active[k]
            self._acked.discard(k)

    def acknowledge(self, source: str | None = None, key: str | None = None) -> list[ActiveAlarm]:
        """An operator has seen these alarms: the buzzer stops for them; the light stays until the
        cause clears (acknowledging never hides a fault). Returns what was acknowledged."""
        hit = [a for k, a in self._active.items()
               if (source is None or k[0] == source) and (key is None or k[1] == key) and k not in self._acked]
        self._acked.update((a.source, a.key) for a in hit)
        return hit

    def buzzer(self) -> bool:
        """Sound while any stop alarm is not acknowledged."""
        return any(a.severity is Severity.STOP and k not in self._acked for k, a in self._active.items())

    @property
    def active(self) -> list[ActiveAlarm]:
        return sorted(self._active.values(), key=lambda a: (-a.severity, a.seq))

    def worst(self) -> Severity | None:
        return max((a.severity for a in self._active.values()), default=None)

    def light(self, *, running: bool) -> Light:
        worst = self.worst()
        if worst is Severity.STOP:
            return Light.RED
        if worst is Severity.WARNING:
            return Light.AMBER
        return Light.GREEN if running else Light.OFF


# What the operator reads for an alarm key, a light and a severity (status, top, journal). Marked
# here, translated where shown: the daemon and the CLI may run in different languages.
ALARM_NAMES: dict[str, str] = {
    "communication": N_("no communication"),
    "start": N_("cannot start printing"),
    "line_run": N_("cannot start or stop the conveyor"),
    "line_stop": N_("line stopped"),
    "backlog": N_("cloud sync backlog"),
    "pack_rejected": N_("pack rejected"),
    "station": N_("station failed"),
    "devices": N_("devices cannot be opened"),
    "no_frame": N_("camera delivers no image"),
    "late_print_confirm": N_("print confirmed late"),
    "slow_feed": N_("coder fed too slowly"),
    "fifo_empty": N_("coder FIFO empty while printing"),
    "codes_short": N_("not enough codes for the job"),
    "coder_fault": N_("coder fault"),
    "in_doubt": N_("codes in doubt"),
    "reject_unconfirmed": N_("reject not confirmed"),
    "consecutive_rejects": N_("too many rejects in a row"),
    "plc_failed": N_("PLC failed"),
    "socket": N_("control socket unavailable"),
    "gs1_fnc1": N_("GS1 job: the coder's FNC1 setting is missing"),
    "unprintable_code": N_("code voided: the coder cannot print it"),
    "unprintable_job": N_("the job's codes cannot be printed on this coder"),
    "pack_not_recorded": N_("packed items not recorded"),
    "child_refused": N_("item not taken into a pack"),
    "child_dropped": N_("item taken out of a pack"),
    "disk_low": N_("ledger disk almost full"),
    "ledger_write": N_("ledger cannot write"),
}
LIGHT_NAMES: dict[str, str] = {
    Light.GREEN: N_("green"), Light.AMBER: N_("amber"), Light.RED: N_("red"), Light.OFF: N_("off"),
}
SEVERITY_NAMES: dict[str, str] = {"info": N_("info"), "warning": N_("warning"), "stop": N_("stop")}


def alarm_name(key: str) -> str:
    """The operator's words for an alarm key; an unknown key is shown as it is."""
    return _(ALARM_NAMES[key]) if key in ALARM_NAMES else key


def light_name(light: str) -> str:
    return _(LIGHT_NAMES[light]) if light in LIGHT_NAMES else light


def severity_name(severity: object) -> str:
    text = str(severity)
    return _(SEVERITY_NAMES[text]) if text in SEVERITY_NAMES else text
