"""The clocks the agent orders, expires and shows by.

Why three: the wall clock (time.time) is what a person reads and what EPCIS eventTime carries, but it
jumps: an NTP step, an operator setting the time, a line PC booting with a flat RTC battery. Nothing is
ordered or expired by it. Order is the ledger's own sequence (events.seq, audit.id); an interval or an
expiry inside one process uses time.monotonic (PEP 418: never goes back, not changed by setting the
clock); an expiry that one process records and another checks (the PIN lock-out: a wrong PIN audited by
one CLI run, the lock-out checked by the next) uses CLOCK_BOOTTIME (clock_gettime(2), Linux: seconds
since boot, counting suspend, the same for every process of one boot) together with the boot's id
(/proc/sys/kernel/random/boot_id, random(4)), so two readings are compared only within one boot. Across
a reboot only the wall clock is left; a wall time in the future then counts as now, so a clock set back
can lengthen a wait by at most the window, never end it early by the size of the jump.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@functools.cache
def boot_id() -> str | None:
    """This boot's id, or None where the system does not say (not Linux)."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def since_boot() -> float:
    """Seconds since boot on a clock that setting the time does not move."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock) if clock is not None else time.monotonic()


@dataclass(frozen=True, slots=True)
class Stamp:
    """One moment: the wall time to show, and the boot clock to measure by."""

    wall: float
    boot: str | None = None
    since_boot: float | None = None


def stamp(wall: Callable[[], float] = time.time) -> Stamp:
    return Stamp(wall(), boot_id(), since_boot())


def elapsed(earlier: Stamp, now: Stamp) -> float:
    """Seconds from `earlier` to `now`: by the boot clock within one boot, else by the wall clock with a
    time in the future taken as now (never negative)."""
    if earlier.boot is not None and earlier.boot == now.boot and None not in (earlier.since_boot, now.since_boot):
        assert earlier.since_boot is not None and now.since_boot is not None
        return max(0.0, now.since_boot - earlier.since_boot)
    return max(0.0, now.wall - earlier.wall)
