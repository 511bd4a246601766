"""The one printer (coder) interface every protocol driver implements.

Why one interface: the FIFO feeder (agent/feeder.py) must keep any coder printing one unique code
per item and reconcile after faults without knowing whose bytes it speaks. The feeder numbers every
record it pushes with a monotonically increasing `seq`; a driver maps seq to whatever the protocol
has (a mailing index, a print counter, print-complete messages) and reports progress back as seq.

Contract (tests/drivers/printers/ checks it against every driver+simulator pair):
- push(records) appends in order to the coder's FIFO; it raises BufferFull, never drops silently.
- status().last_printed is the seq of the last record the coder confirms printed (None: none yet).
- A stop, fault or power loss that may clear the FIFO is reported (status().fifo_lost and a
  FIFO_LOST event); what was pushed after last_printed is then in doubt, and the feeder decides.
- Every error is one of the typed PrinterError subclasses below; garbage on the wire is a
  ProtocolError, never an IndexError/ValueError leaking out of a parser.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, Field

from confkit.base import Strict
from drivers.printers.fifo import CoderKind, Fates


class PrinterState(StrEnum):
    OFFLINE = "offline"  # no link
    IDLE = "idle"  # linked, not printing (jet off / stopped)
    PRINTING = "printing"  # ready: each trigger prints the next record
    FAULT = "fault"  # a fault stops printing until cleared


class Fault(StrEnum):
    INK_LOW = "ink_low"
    INK_EMPTY = "ink_empty"
    HEAD_FAULT = "head_fault"
    BUFFER_FULL = "buffer_full"
    BUFFER_EMPTY = "buffer_empty"
    NOT_PRINTING = "not_printing"
    SEQUENCE_ERROR = "sequence_error"
    COVER_OPEN = "cover_open"
    OTHER = "other"


class CoderSettings(Strict):
    """Keys every coder takes in `devices.coders.<name>`, whatever its protocol.

    GS1 element strings carry FNC1 twice over: in first position it makes the symbol a GS1 DataMatrix or
    GS1 QR Code, and after each variable-length field that is not last it separates the fields (GS1
    General Specifications, release 24.0, §7.8.5). How a host writes FNC1 into a coder's data is the
    coder's barcode convention, not part of its link protocol, and most vendors do not publish it for
    their host interfaces (each driver's docstring says what its sources give). So it is a setting:
    `gs1_fnc1` is the spelling put where a separator belongs (None: not known, and a GS1 element-string
    job on this coder is refused at start rather than printed as a plain DataMatrix), `gs1_fnc1_first`
    whether the record also starts with it (False: the coder's barcode object is in GS1 mode and adds
    it). The agent renders records with them (agent.codes.templates); the camera's GS1 check catches a
    coder that read the spelling as text.
    """

    gs1_fnc1: str | None = Field(None, min_length=1, max_length=16,
                                 description="how this coder takes FNC1 in a GS1 code's data; None: not known")
    gs1_fnc1_first: bool = Field(False, description="start GS1 records with FNC1 (the barcode is not in GS1 mode)")


@dataclass(frozen=True, slots=True)
class Record:
    seq: int  # the feeder's number for this record; unique and increasing per coder
    text: str  # the exact text to print (already rendered from the code template)


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    state: PrinterState
    faults: frozenset[Fault] = frozenset()
    fifo_depth: int | None = None  # records waiting in the coder; None when the coder cannot say
    fifo_capacity: int | None = None
    last_printed: int | None = None  # seq of the last record confirmed printed
    print_count: int | None = None  # the coder's own product counter, when it has one
    fifo_lost: bool = False  # the FIFO was cleared (stop/fault/power loss) since the last push
    detail: str = ""


class PrintEventKind(StrEnum):
    PRINTED = "printed"  # print-complete for one record (seq set)
    FIFO_LOST = "fifo_lost"  # the coder's FIFO was cleared
    FAULT = "fault"
    LINK_DOWN = "link_down"
    LINK_UP = "link_up"


@dataclass(frozen=True, slots=True)
class PrintEvent:
    kind: PrintEventKind
    at: float  # time.monotonic() when the driver saw it
    seq: int | None = None
    faults: frozenset[Fault] = frozenset()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What this coder model can do, as its manual says; the feeder relies on nothing else."""

    fifo_capacity: int  # records the feeder may keep in the coder (indexed ring: coder's size - 1; single slot: 1)
    indexed: bool  # records carry an index the coder checks (refuses double/out-of-order prints)
    print_complete_events: bool  # the coder announces each print
    counters: bool  # the coder reports a product/print counter
    extra: dict[str, str] = field(default_factory=dict)
    kind: CoderKind = CoderKind.COUNTED_FIFO
    status: bool = True  # the coder can report its state (the Videojet 1710/1610DH cannot)
    double_print_guard: bool = False  # the coder itself refuses to print one record twice
    proves_flush: bool = False  # settle() can prove records FLUSHED (never printed)
    # The driver checks the coder's own queue count at every look and reports every loss itself
    # (status.fifo_lost, FIFO_LOST): a stop alone is then not taken for one.
    reports_fifo_loss: bool = False
    # highest line rate the link can feed safely (single slot); None: no limit known
    max_items_per_min: float | None = None


class PrinterError(Exception):
    """Base of every error a printer driver raises."""


class ProtocolError(PrinterError):
    """The device answered bytes that do not parse as its protocol (garbage, wrong frame)."""


class DeviceTimeout(PrinterError):
    """No (complete) answer within the timeout."""


class Nak(PrinterError):
    """The device refused a command (NAK or an error code); the message carries its reason."""


class BufferFull(Nak):
    """The coder's FIFO has no room for the records pushed."""


class LinkDown(PrinterError):
    """The transport is not connected (and reconnecting did not help within the retry budget)."""


class Printer(ABC):
    """A coder on a transport. Subclasses implement the protocol; see the module docstring."""

    Settings: ClassVar[type[BaseModel]]
    capabilities: Capabilities

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def identity(self) -> dict[str, str]: ...

    @abstractmethod
    async def status(self) -> PrinterStatus: ...

    @abstractmethod
    async def select_job(self, name: str) -> None: ...

    @abstractmethod
    async def push(self, records: Sequence[Record]) -> None: ...

    def check_record(self, text: str) -> None:
        """BadRecord if this protocol cannot carry `text` as a record; sends nothing. The feeder asks
        before a code is committed `sent`, so a code the coder cannot take is voided with its reason
        instead of going in doubt with everything pushed beside it. Default: no check (push decides)."""
        del text

    @abstractmethod
    async def clear_fifo(self) -> None:
        """Empty the coder's queue. Never changes whether the coder is printing."""

    async def settle(self) -> Settlement:
        """Empty the coder's queue (without changing whether it prints), then account for every record
        pushed and not yet reported printed. Printed records are reported through status.last_printed
        (seqs print in order); `fates.flushed` are proven never printed; every other unsettled record
        is in doubt. This default proves nothing flushed; drivers whose coder can prove it override."""
        await self.clear_fifo()
        return Settlement(await self.status(), Fates())

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def clear_fault(self) -> None: ...

    @abstractmethod
    def events(self) -> AsyncIterator[PrintEvent]: ...


@dataclass(frozen=True, slots=True)
class Settlement:
    status: PrinterStatus  # read after the flush: last_printed, print_count, state
    fates: Fates  # what settle() proved about the records it accounted for


class BadRecord(PrinterError):
    """A record the protocol cannot carry (a delimiter in its text, too long); nothing was sent."""


@dataclass(frozen=True, slots=True)
class Reconciled:
    printed: tuple[int, ...]  # seqs newly confirmed printed, in order
    lost: tuple[int, ...]  # seqs that were in the FIFO when it was found cleared: now in doubt


class FifoTracker:
    """A driver's view of its coder's FIFO: the seq and protocol tag (mailing index, slot) of every
    record pushed and not yet confirmed printed.

    Why shared: every serializing protocol reports progress as "last printed tag + depth" or as a
    count, and every one must turn that into seqs and notice a FIFO that was cleared behind its back
    (a stop at the coder's panel, a power loss). Getting that wrong prints a code twice, so it is
    written once here and tested once.
    """

    def __init__(self) -> None:
        self.pending: deque[tuple[int, int]] = deque()
        self.last_printed: int | None = None
        self.last_tag: int | None = None
        self.fifo_lost = False  # set when a loss is found, cleared by the next push
        self.recent: deque[int] = deque(maxlen=256)  # tags confirmed printed, newest last

    def __len__(self) -> int:
        return len(self.pending)

    def pushed(self, seq: int, tag: int) -> None:
        self.pending.append((seq, tag))
        self.fifo_lost = False

    def printed_count(self, n: int) -> Reconciled:
        """`n` more records printed (a counter or n print-complete messages)."""
        done = [self.pending.popleft() for _ in range(min(n, len(self.pending)))]
        if done:
            self.last_printed, self.last_tag = done[-1]
            self.recent.extend(tag for _, tag in done)
        return Reconciled(tuple(s for s, _ in done), ())

    def reconcile(self, last_tag: int | None, depth: int) -> Reconciled:
        """Coder says: last printed tag `last_tag`, `depth` records waiting. Consistent when the
        records after `last_tag` in our list number exactly `depth`; anything else means the FIFO
        was cleared, and what we pushed after the last confirmed print is in doubt."""
        tags = [tag for _, tag in self.pending]
        k = self._progress(tags, last_tag, depth)
        if k is not None:
            return self.printed_count(k)
        matches = [k for k, tag in enumerate(tags) if tag == last_tag]
        # Inconsistent: take the earliest match as printed (claiming a print that did not happen would
        # be worse than leaving it in doubt), and everything after it as lost.
        printed = self.printed_count(matches[0] + 1).printed if matches else ()
        return Reconciled(printed, self.lose())

    def held(self, candidates: Sequence[tuple[int, int]], last_tag: int | None, depth: int) -> int:
        """How many of `candidates` ((seq, tag) pushed after ours, whose answers were lost, in push
        order) the coder holds: the largest prefix that makes its report consistent with our list."""
        tags = [tag for _, tag in self.pending]
        for u in range(len(candidates), 0, -1):
            if self._progress(tags + [tag for _, tag in candidates[:u]], last_tag, depth) is not None:
                return u
        return 0

    def _progress(self, tags: Sequence[int], last_tag: int | None, depth: int) -> int | None:
        """Records of `tags` printed if the report is consistent with them, else None."""
        if depth == len(tags) and (last_tag == self.last_tag or last_tag is None):
            return 0
        if self._stale(last_tag, depth - len(tags)):
            return 0
        for k, tag in enumerate(tags):
            if tag == last_tag and len(tags) - (k + 1) == depth:
                return k + 1
        return None

    def _stale(self, last_tag: int | None, surplus: int) -> bool:
        """A report taken before prints we already know of: print-complete messages sent after the
        coder answered can be handled before the answer is. Consistent once those prints are counted."""
        if last_tag is None or last_tag not in self.recent:
            return False
        after = len(self.recent) - 1 - max(i for i, tag in enumerate(self.recent) if tag == last_tag)
        return after > 0 and surplus == after

    def lose(self) -> tuple[int, ...]:
        """The FIFO was cleared: every pending record is now in doubt."""
        lost = tuple(s for s, _ in self.pending)
        self.pending.clear()
        self.fifo_lost = True
        return lost
