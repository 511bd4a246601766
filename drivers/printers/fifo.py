"""One mirror of what a coder holds, shared by every driver: which records it has, and their fate.

Why one model: every way a code gets printed twice or credited to the wrong product starts with a
driver's private idea of the coder's queue drifting from the coder's own. Three kinds of coder exist
(each driver's docstring cites the manual or public client it follows):
- INDEXED_FIFO: records carry an index the coder reports back ("last started print number"), e.g.
  Leibinger mailing mode (`=MR<index>`, `?SM`). Filled to capacity - 1 at most, so a full ring never
  makes the last printed index ambiguous.
- COUNTED_FIFO: a queue plus a product/print counter, e.g. the Hitachi communication buffer (RX manual
  rev D section 5.9) or a Modbus marker's queue register: the k-th print after a push consumed the
  k-th record pushed.
- SINGLE_SLOT: one field the coder prints on every trigger, no queue, e.g. the Videojet WSI user field
  (`U` replaces it, WSI Rev AD): the next code may go out only once the last one is proven printed.

For each record it was given, the mirror ends by stating one fact (`Fate`): PRINTED, FLUSHED (proven
never printed and no longer in the coder, so the code may go back to the pool), or UNKNOWN (in doubt).
A record is FLUSHED only when the driver emptied the coder's queue itself AND read the coder's count
after that (so every print before the flush is counted); any other loss (a panel stop the driver did
not see coming, a power loss, silence) leaves what was pending UNKNOWN.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class CoderKind(StrEnum):
    INDEXED_FIFO = "indexed_fifo"
    COUNTED_FIFO = "counted_fifo"
    SINGLE_SLOT = "single_slot"


class Fate(StrEnum):
    PRINTED = "printed"
    FLUSHED = "flushed"  # proven never printed and gone from the coder: may return to the pool
    UNKNOWN = "unknown"  # may or may not be on a product: in doubt, never sent again


@dataclass(frozen=True, slots=True)
class Fates:
    """The facts one observation established, each tuple in push order."""

    printed: tuple[int, ...] = ()
    flushed: tuple[int, ...] = ()
    unknown: tuple[int, ...] = ()

    def __add__(self, other: Fates) -> Fates:
        return Fates(self.printed + other.printed, self.flushed + other.flushed, self.unknown + other.unknown)

    def __bool__(self) -> bool:
        return bool(self.printed or self.flushed or self.unknown)


@dataclass(slots=True)
class FifoMirror:
    """Records (seq, tag) sent to the coder and not yet settled, oldest first.

    `tag` is what the protocol calls the record (a mailing index); None where it has none.
    `capacity` is how many records the FEEDER may keep in the coder: for an indexed ring one less
    than the coder holds, for a single slot 1.
    """

    kind: CoderKind
    capacity: int
    pending: deque[tuple[int, int | None]] = field(default_factory=deque)
    last_printed: int | None = None  # seq of the last record proven printed
    lost: bool = False  # a loss was found since the last push (PrinterStatus.fifo_lost)

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def room(self) -> int:
        return max(0, self.capacity - len(self.pending))

    def pushed(self, seq: int, tag: int | None = None) -> None:
        if len(self.pending) >= self.capacity:
            raise OverflowError(f"mirror full: {self.capacity} records pending")
        if self.pending and seq <= self.pending[-1][0]:
            raise ValueError(f"seq {seq} pushed after seq {self.pending[-1][0]}")
        self.pending.append((seq, tag))
        self.lost = False

    def printed(self, n: int) -> Fates:
        """`n` more prints (a counter delta, n print-complete messages): the n oldest records."""
        done = tuple(self.pending.popleft()[0] for _ in range(min(max(n, 0), len(self.pending))))
        if done:
            self.last_printed = done[-1]
        return Fates(printed=done)

    def printed_through(self, tag: int) -> Fates | None:
        """Indexed coders: the coder's last started print carries `tag`. None when no pending record
        has it (the report does not fit the mirror: the caller must treat the rest as lost)."""
        for k, (_seq, t) in enumerate(self.pending):
            if t == tag:
                return self.printed(k + 1)
        return None

    def flushed(self) -> Fates:
        """The driver emptied the coder's queue and counted every print before it: the rest never printed."""
        rest = tuple(seq for seq, _ in self.pending)
        self.pending.clear()
        if rest:
            self.lost = True
        return Fates(flushed=rest)

    def lose(self) -> Fates:
        """The queue may be gone (or may print on) and nobody can say what it held: the rest is unknown."""
        rest = tuple(seq for seq, _ in self.pending)
        self.pending.clear()
        if rest:
            self.lost = True
        return Fates(unknown=rest)
