"""Turn a coder's product counter into confirmed seqs, for protocols with no indexed FIFO.

Why: Videojet WSI and Markem NGPCL (and the Modbus marker) take one field update per print and report
only a product counter. The seq of the record printed last is then derived from the counter delta:
the k-th print after a push consumed the k-th record pushed, oldest first. That holds only while
the driver's list matches the coder's queue. Two steps keep it so:
- `lose(why)`: something happened that may have cleared the queue (silence, a reconnect, a stop at
  the panel). It is reported once (FIFO_LOST, fifo_lost), the list is kept so that prints counted
  later are still attributed in order (if the queue survived, those records do print), and pushes are
  refused (`suspect`) because a new record behind an unknown queue could not be attributed;
- `flushed(why)`: the driver has emptied the coder's queue itself (print off, job change); what is
  still listed is in doubt and dropped, and pushes are allowed again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

from drivers.printers.base import PrintEvent, PrintEventKind

log = logging.getLogger(__name__)


class CountedFifo:
    """Seqs queued in the coder, oldest first, and the last counter value seen."""

    def __init__(self, name: str, capacity: int, modulo: int | None = None) -> None:
        self.name = name
        self.capacity = capacity
        self.modulo = modulo  # counters that wrap (e.g. a uint32 register); None: never wraps
        self._pending: deque[int] = deque()
        self._counter: int | None = None
        self.last_printed: int | None = None
        self._lost = False
        self.suspect: str | None = None  # why the coder's queue may differ from ours; pushes wait for a flush

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def room(self) -> int:
        return max(0, self.capacity - len(self._pending))

    @property
    def counter(self) -> int | None:
        return self._counter

    def queued(self, seqs: Iterable[int]) -> None:
        self._pending.extend(seqs)

    def observe(self, counter: int) -> list[PrintEvent]:
        """A fresh counter reading; returns a PRINTED event per record it confirms.

        The first reading only sets the baseline. A counter that goes backwards (reset on the
        coder's panel) confirms nothing and re-bases, because guessing would confirm codes that may
        not be on a product.
        """
        now = time.monotonic()
        if self._counter is None:
            self._counter = counter
            return []
        delta = counter - self._counter
        if self.modulo is not None:
            delta %= self.modulo
        self._counter = counter
        if delta < 0:
            log.warning("%s: product counter went back to %d; re-basing, nothing confirmed", self.name, counter)
            return []
        events = []
        for _ in range(delta):
            if not self._pending:
                log.warning("%s: counter counted a print we did not queue", self.name)
                break
            seq = self._pending.popleft()
            self.last_printed = seq
            events.append(PrintEvent(PrintEventKind.PRINTED, now, seq=seq))
        return events

    def lose(self, why: str) -> list[PrintEvent]:
        """The coder's queue may be gone: report it once and refuse pushes until `flushed()`."""
        if not self._pending or self.suspect is not None:
            return []
        log.warning("%s: FIFO may be lost (%s); %d records in doubt", self.name, why, len(self._pending))
        self.suspect = why
        self._lost = True
        return [PrintEvent(PrintEventKind.FIFO_LOST, time.monotonic(), detail=why)]

    def flushed(self, why: str) -> list[PrintEvent]:
        """The driver emptied the coder's queue: what is still listed never prints; it is in doubt."""
        reported = self.suspect is not None
        self.suspect = None
        if not self._pending:
            return []
        log.warning("%s: FIFO cleared (%s); %d records in doubt", self.name, why, len(self._pending))
        self._pending.clear()
        self._lost = True
        return [] if reported else [PrintEvent(PrintEventKind.FIFO_LOST, time.monotonic(), detail=why)]

    def take_lost(self) -> bool:
        """True once after a loss, for PrinterStatus.fifo_lost."""
        lost, self._lost = self._lost, False
        return lost
