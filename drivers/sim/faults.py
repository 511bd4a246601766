"""Simulator faults: what can go wrong, and a seeded schedule of when it does.

Why a schedule with a seed: a fault run that finds a duplicate print must be replayable exactly, so
every random choice comes from one `random.Random(seed)`; and a technician must be able to type the
schedule on the command line, hence the small SPEC language below (`lineagent sim printer --faults`).

SPEC: comma-separated items, no spaces needed:
  `KIND:P`       with probability P, per request for request faults (nak, garbage, silence,
                 buffer_full), per print for print faults (stop, power_loss, ink_low)
  `KIND@N`       once, right after the N-th print (request faults: the next request after it)
  `seed=S`       the random seed (default 0)
  `down=SECONDS` how long a power loss lasts (default 1.0)
Example: `nak:0.01,garbage:0.005,power_loss@500,seed=7`
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class SimFault(StrEnum):
    NAK = "nak"  # the request is refused with the protocol's NAK / error answer
    GARBAGE = "garbage"  # the request is carried out, but random bytes come back instead of the answer
    SILENCE = "silence"  # the request is lost: not carried out, no answer
    BUFFER_FULL = "buffer_full"  # the next record store is refused as if the FIFO were full
    STOP = "stop"  # printing stops (as from the coder's panel): the FIFO is cleared
    POWER_LOSS = "power_loss"  # link gone for `down` s, FIFO lost, product counter kept
    INK_LOW = "ink_low"  # a warning fault: printing continues


REQUEST_FAULTS = frozenset({SimFault.NAK, SimFault.GARBAGE, SimFault.SILENCE, SimFault.BUFFER_FULL})
PRINT_FAULTS = frozenset({SimFault.STOP, SimFault.POWER_LOSS, SimFault.INK_LOW})


class FaultSpecError(ValueError):
    """A --faults SPEC that does not parse; the message names the item and the rule it breaks."""


@dataclass
class FaultPlan:
    rates: dict[SimFault, float] = field(default_factory=dict)
    at: dict[int, list[SimFault]] = field(default_factory=dict)  # print number -> faults due then
    seed: int = 0
    down_s: float = 1.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @classmethod
    def parse(cls, spec: str | None) -> FaultPlan:
        plan = cls()
        for raw in (spec or "").split(","):
            item = raw.strip()
            if not item:
                continue
            try:
                plan._add(item)
            except ValueError as exc:
                raise FaultSpecError(f"fault spec item {item!r}: {exc}") from None
        plan.rng = random.Random(plan.seed)
        return plan

    def _add(self, item: str) -> None:
        if item.startswith("seed="):
            self.seed = int(item.removeprefix("seed="))
            return
        if item.startswith("down="):
            self.down_s = float(item.removeprefix("down="))
            if self.down_s <= 0:
                raise ValueError("down must be > 0 seconds")
            return
        if "@" in item:
            name, _, n = item.partition("@")
            count = int(n)
            if count < 1:
                raise ValueError("the print number after @ starts at 1")
            self.at.setdefault(count, []).append(_kind(name))
            return
        if ":" in item:
            name, _, p = item.partition(":")
            prob = float(p)
            if not 0.0 <= prob <= 1.0:
                raise ValueError("probability must be between 0 and 1")
            self.rates[_kind(name)] = prob
            return
        raise ValueError("expected KIND:P, KIND@N, seed=S or down=SECONDS")

    def draw_request(self) -> SimFault | None:
        """The fault (if any) for one incoming request, by the per-request rates."""
        return self._draw(REQUEST_FAULTS)

    def after_print(self, n: int) -> list[SimFault]:
        """Faults due right after print number `n`: scheduled ones, then one drawn by the rates."""
        due = list(self.at.get(n, []))
        drawn = self._draw(PRINT_FAULTS)
        if drawn is not None:
            due.append(drawn)
        return due

    def _draw(self, kinds: frozenset[SimFault]) -> SimFault | None:
        for kind in sorted(kinds):
            rate = self.rates.get(kind, 0.0)
            if rate and self.rng.random() < rate:
                return kind
        return None


def _kind(name: str) -> SimFault:
    try:
        return SimFault(name.strip())
    except ValueError:
        known = ", ".join(k.value for k in SimFault)
        raise ValueError(f"unknown fault {name!r} (known: {known})") from None
