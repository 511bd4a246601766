"""The print queue every simulated coder shares: a bounded FIFO, a product counter, faults, a print log.

Why separate from the protocol: the Videojet, Hitachi and Markem simulators differ only in the bytes
they speak; what happens when a product passes the head (print the next record, or miss it and say
why) must be the same everywhere so the contract tests compare like with like. Pure and synchronous:
protocol handlers and the conveyor call it, tests can drive it directly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from drivers.printers.base import Fault

# Faults that stop printing (the jet or head cannot mark); INK_LOW and BUFFER_EMPTY only warn.
STOPPING = frozenset({Fault.INK_EMPTY, Fault.HEAD_FAULT, Fault.COVER_OPEN, Fault.OTHER})


@dataclass
class CoderModel:
    capacity: int
    queue: deque[str] = field(default_factory=deque)
    counter: int = 0  # product counter: survives stop and power loss, like a real coder's
    running: bool = False
    powered: bool = True
    faults: set[Fault] = field(default_factory=set)
    printed: list[str] = field(default_factory=list)  # the simulator's own record of every print
    received: list[str] = field(default_factory=list)  # every record accepted into the queue, in order
    missed: int = 0  # products that passed unmarked
    cleared: int = 0  # records discarded by stops, faults and power losses
    force_full: int = 0  # refuse this many more stores as if full (the buffer_full fault)

    @property
    def room(self) -> int:
        return self.capacity - len(self.queue)

    @property
    def stopped_by_fault(self) -> bool:
        return bool(self.faults & STOPPING)

    def enqueue(self, text: str) -> bool:
        """False when full: the protocol answers with its buffer-full refusal."""
        if self.force_full:
            self.force_full -= 1
            return False
        if len(self.queue) >= self.capacity:
            return False
        self.queue.append(text)
        self.received.append(text)
        return True

    def clear(self) -> None:
        self.cleared += len(self.queue)
        self.queue.clear()

    def start(self) -> None:
        if not self.stopped_by_fault:
            self.running = True

    def stop(self) -> None:
        """A print stop discards the queue (Leibinger and Hitachi do; we model every coder so)."""
        self.running = False
        self.clear()

    def fault(self, fault: Fault) -> None:
        self.faults.add(fault)
        if fault in STOPPING:
            self.stop()

    def clear_faults(self) -> None:
        self.faults.clear()

    def power_loss(self) -> None:
        self.powered = False
        self.stop()

    def power_on(self) -> None:
        self.powered = True

    def fire(self) -> str | None:
        """One product passes the head: print the next record if the coder can, else count a miss."""
        if not (self.powered and self.running) or self.stopped_by_fault:
            self.missed += 1
            return None
        if not self.queue:
            self.missed += 1
            self.faults.add(Fault.BUFFER_EMPTY)
            return None
        self.faults.discard(Fault.BUFFER_EMPTY)
        text = self.queue.popleft()
        self.counter += 1
        self.printed.append(text)
        return text
