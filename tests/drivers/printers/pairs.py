"""Driver + simulator pairs the printer contract (contract.py) runs against, over a pty and over TCP.

To add a pair: append a `Pair` to PAIRS. `make_sim(capacity)` returns a simulator offering what
`ContractSim` lists (drivers/sim/base.py `SimCoder` offers all of it); `make_driver(url, capacity)`
returns a connected-to-nothing-yet `Printer` whose settings use the short test timeouts below.
`skip` names contract checks that cannot apply to the protocol, with the reason in the comment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from drivers.printers.base import Printer
from drivers.printers.generic import GenericPrinter, GenericSettings
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.sim.faults import SimFault
from drivers.sim.leibinger import LeibingerSim

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 0.2
RETRIES = 1


class ContractSim(Protocol):
    printed: list[str]
    counter: int
    job: str

    async def serve_pty(self) -> str: ...
    async def serve_tcp(self, port: int) -> int: ...
    async def close(self) -> None: ...
    async def power_off(self) -> None: ...
    async def power_on(self) -> None: ...
    def inject(self, fault: SimFault, count: int = 1) -> None: ...
    def trigger(self, products: int = 1) -> int: ...
    def stop_printing(self) -> None: ...


@dataclass(frozen=True)
class Pair:
    name: str
    make_sim: Callable[[int], ContractSim]
    make_driver: Callable[[str, int], Printer]
    capacity: int = 16
    skip: frozenset[str] = field(default_factory=frozenset)


def _leibinger(url: str, capacity: int) -> Printer:
    settings = LeibingerSettings(
        url=url, capacity=capacity, timeout_s=TIMEOUT_S, retries=RETRIES, reconnect_max_s=0.5
    )
    return Leibinger(settings)


def _generic_leibinger(url: str, capacity: int) -> Printer:
    settings = GenericSettings(
        url=url,
        protocol_file=str(ROOT / "config" / "printers" / "leibinger.yaml"),
        capacity=capacity,
        timeout_s=TIMEOUT_S,
        retries=RETRIES,
        reconnect_max_s=0.5,
    )
    return GenericPrinter(settings)


PAIRS: list[Pair] = [
    Pair("leibinger", lambda cap: LeibingerSim(capacity=cap), _leibinger),
    Pair("generic+leibinger.yaml", lambda cap: LeibingerSim(capacity=cap), _generic_leibinger),
]
