"""The line's alarm board: every active alarm, by source, and what the stack light shows for them.

Why one board: a coder alarm, a verify-station line stop and a sync backlog come from different parts,
but the operator sees one stack light and one status screen. Each part reports (source, key) on/off;
the board keeps what is active and says which light that makes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum, StrEnum


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
class ActiveAlarm:
    source: str  # a device or station name, or "sync"
    key: str  # what is wrong, e.g. "communication", "reject_unconfirmed"
    severity: Severity
    detail: str
    since: float


class AlarmBoard:
    def __init__(self) -> None:
        self._active: dict[tuple[str, str], ActiveAlarm] = {}
        self._acked: set[tuple[str, str]] = set()  # active alarms an operator acknowledged (buzzer off)
        self.raised = 0  # alarms raised since start (for status and tests)

    def set(self, source: str, key: str, active: bool, severity: Severity = Severity.WARNING,
            detail: str = "") -> bool:
        """Raise or clear one alarm; True when that changed something."""
        k = (source, key)
        if not active:
            self._acked.discard(k)
            return self._active.pop(k, None) is not None
        old = self._active.get(k)
        if old is not None and old.severity == severity and old.detail == detail:
            return False
        self._active[k] = ActiveAlarm(source, key, severity, detail, old.since if old else time.time())
        if old is None:
            self.raised += 1
        return True

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
        return sorted(self._active.values(), key=lambda a: (-a.severity, a.since))

    def worst(self) -> Severity | None:
        return max((a.severity for a in self._active.values()), default=None)

    def light(self, *, running: bool) -> Light:
        worst = self.worst()
        if worst is Severity.STOP:
            return Light.RED
        if worst is Severity.WARNING:
            return Light.AMBER
        return Light.GREEN if running else Light.OFF
