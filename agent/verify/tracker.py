"""Where every item is between the print head, the camera and the reject gate: a shift register.

Why positions and not arrival order: on a real line reads come late, twice, or not at all, and a
verdict applied "to the next item" drifts onto the wrong product after the first missing read. Here an
item is its conveyor seq: the N-th item past the print head (the PLC's counter, or the coder's
print-complete events) has seq N, and at counter C it sits C - N pitches downstream. The camera is at
`camera_at` pitches; a read for an item is taken until `camera_at + window`; when the window closes
without one, the item is handed back as expired so the station judges it as not read. Every item is
judged before it reaches the gate at `gate_at`, which is what lets a reject land on it.

After a restart the items already between head and gate are put back with `restore` (what the ledger
and the counters prove about them, agent/verify/binding.py); they move on like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from agent.verify.verdict import Judgement, Observation


class ItemState(StrEnum):
    MOVING = "moving"  # past the head, not judged yet
    JUDGED = "judged"  # verdict known, on its way to the gate
    GONE = "gone"  # past the gate (removed or passed): no longer tracked


@dataclass(slots=True)
class Tracked:
    seq: int
    code: str | None = None  # the ledger code printed on it (None: the coder reported no print)
    text: str | None = None  # the text the coder printed (the code rendered by the job's template)
    observation: Observation | None = None
    judgement: Judgement | None = None
    state: ItemState = ItemState.MOVING
    released: bool = False  # release_fire written for it (gate: release)
    fired: bool = False  # reject_fire written for it
    unbound: bool = False  # in flight across a restart with no binding proven


@dataclass(slots=True)
class Advance:
    """What one counter step changed: items whose read window closed unread, items at the gate."""

    expired: list[Tracked] = field(default_factory=list)
    at_gate: list[Tracked] = field(default_factory=list)


class TrackingError(ValueError):
    """A print or read that cannot be tied to an item (the message says which seq and why)."""


class Tracker:
    def __init__(self, *, camera_at: int, window: int, gate_at: int, start: int = 0) -> None:
        if camera_at < 0 or window < 0 or camera_at + window >= gate_at:
            raise ValueError(
                f"positions must satisfy 0 <= camera_at ({camera_at}), 0 <= window ({window}) and "
                f"camera_at + window ({camera_at + window}) < gate_at ({gate_at}): every item is judged "
                "before the gate"
            )
        self.camera_at = camera_at
        self.window = window
        self.gate_at = gate_at
        self.head = start  # the newest seq past the print head
        self.late_reads = 0  # reads that came after their window closed (the item was judged unread)
        self.repeat_reads = 0  # second reads of an item already observed (the first one counts)
        self._items: dict[int, Tracked] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, seq: int) -> Tracked | None:
        return self._items.get(seq)

    def position(self, seq: int) -> int:
        return self.head - seq

    def at_camera(self) -> int | None:
        """The seq in front of the camera now (None before the first item gets there)."""
        seq = self.head - self.camera_at
        return seq if seq in self._items else None

    def restore(self, item: Tracked) -> Tracked:
        """Put back an item that passed the head before this tracker started (a restart): it must still
        be between head and gate."""
        if not self.head - self.gate_at < item.seq <= self.head:
            raise TrackingError(f"seq {item.seq} is not between the gate and the head (head {self.head})")
        if item.judgement is not None:
            item.state = ItemState.JUDGED
        self._items[item.seq] = item
        return item

    def items(self) -> list[Tracked]:
        return [self._items[s] for s in sorted(self._items)]

    def printed(self, seq: int, code: str, text: str | None = None) -> Tracked:
        """Tie a printed code to its seq; the print may be reported before or after the counter moves."""
        item = self._items.get(seq)
        if item is None:
            if seq <= self.head:
                raise TrackingError(f"print of {code!r} reported for seq {seq}, already past the gate")
            item = self._items[seq] = Tracked(seq)
        if item.judgement is not None:
            raise TrackingError(f"print of {code!r} reported for seq {seq}, already judged")
        if item.code is not None and item.code != code:
            raise TrackingError(f"seq {seq} already carries {item.code!r}; a second print {code!r} reported")
        item.code, item.text = code, text if text is not None else code
        return item

    def observe(self, obs: Observation) -> Tracked | None:
        """Attach a read to its item; None when the read is too late, repeated or for an unknown seq."""
        item = self._items.get(obs.seq)
        if item is None or obs.seq > self.head:
            if obs.seq <= self.head:
                self.late_reads += 1
                return None
            raise TrackingError(f"read for seq {obs.seq}, which has not passed the print head (head {self.head})")
        if item.judgement is not None:
            if item.observation is None:
                self.late_reads += 1
            else:
                self.repeat_reads += 1
            return None
        if self.position(obs.seq) > self.camera_at + self.window:
            self.late_reads += 1
            return None
        item.observation = obs
        return item

    def advance(self, counter: int) -> Advance:
        """Move to a new counter value; a counter that went backwards is refused (PLC reset: restart)."""
        if counter < self.head:
            raise TrackingError(f"counter went back from {self.head} to {counter}; the PLC was reset")
        out = Advance()
        for head in range(self.head + 1, counter + 1):
            self.head = head
            self._items.setdefault(head, Tracked(head))
            closing = self._items.get(head - self.camera_at - self.window - 1)
            if closing is not None and closing.judgement is None:
                out.expired.append(closing)
            gate = self._items.pop(head - self.gate_at, None)
            if gate is not None:
                gate.state = ItemState.GONE
                out.at_gate.append(gate)
        return out

    def judged(self, item: Tracked, judgement: Judgement) -> None:
        item.judgement = judgement
        item.state = ItemState.JUDGED
