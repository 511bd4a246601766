"""When a verify station reads the PLC counter next: at the line's own pitch, not on a fixed short clock.

Why: every read is a Modbus round trip (a request built and parsed on the loop, a wake-up for the
answer), and the counter cannot move faster than one item per pitch. A fixed 5 ms poll read it six
times per pitch at 2,000 items/min, and as often with the belt standing; most reads saw nothing new.

What must not be missed decides the pace. Two stretches of conveyor matter: an item's read window (from
the camera to the window's end, `read_window + 1` pitches: a frame is grabbed for it only while a read
finds it there) and the way from the window's end to the gate (an item judged unread there must have its
reject written before it arrives). The counter is read at least twice in the shorter of the two, so one
read that comes late (a busy loop) still finds the item in time, and at most once per pitch, so it never
reads more than the counter can change. With the defaults (camera 3, window 1, gate 8) that is once per
pitch; a window of 0 or a gate right after the window reads twice per pitch; a gate at the window's end
leaves no room and keeps the fixed `poll_ms`.

The pitch: from the line's declared highest rate (the print station's `feed.line_rate_per_min`: the
fastest it can ever go, so the pace is safe from the first item), else observed: the time between the
first and the last read that saw the counter move, over the items in between, across the last 8 moves
(one gap between two reads says little: a read just after another can see a move both straddle). A gap
that held a stop starts a new span, so a restart is not taken for a slow line. Until 4 moves are seen
(the first items of a run or after a stop, a belt running empty) the counter is read every `poll_ms` as
before. A read that finds the counter moved by more than one makes the next read come sooner (the gap
over the items moved), and `poll_max_ms` bounds the interval for a slow line that may speed up before
the estimate follows.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from agent.config.verify import VerifySettings

SPAN = 8  # moves the observed pitch is measured over
MIN_SPAN = 4  # moves needed before the observed pitch is used (each read's timing is off by up to a read)
STOPPED = 4.0  # a gap between moves this many estimated pitches per item: the line stood still


def reads_per_stretch(settings: VerifySettings) -> int:
    """The shortest stretch (in pitches) the counter must be read twice in; 0: no room for pacing."""
    window = settings.read_window + 1
    to_gate = settings.gate_at - settings.camera_at - settings.read_window - 1
    return min(window, to_gate)


@dataclass
class Pacer:
    """The interval until the next counter read, from what the reads so far saw. No I/O, no clock."""

    floor_s: float  # never faster; the interval while the pitch is unknown (verify.poll_ms)
    ceiling_s: float  # never slower (verify.poll_max_ms)
    stretch: int  # reads_per_stretch(): the counter is read twice within this many pitches
    declared_pitch_s: float | None = None  # 60 / the line's highest rate, when declared
    enabled: bool = True  # verify.pace: False reads every floor_s as before
    _moves: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=SPAN + 1), init=False)
    _last: tuple[float, int] | None = field(default=None, init=False)  # the last read: (time, counter)
    _catch_up_s: float | None = field(default=None, init=False)  # after a read that saw several moves

    @classmethod
    def for_station(cls, settings: VerifySettings, *, line_rate_per_min: float | None = None) -> Pacer:
        return cls(settings.poll_ms / 1000, max(settings.poll_max_ms, settings.poll_ms) / 1000,
                   reads_per_stretch(settings), 60.0 / line_rate_per_min if line_rate_per_min else None,
                   settings.pace)

    @property
    def pitch_s(self) -> float | None:
        """The pitch the pace follows: the declared one, else the observed one; None while unknown."""
        if self.declared_pitch_s is not None:
            return self.declared_pitch_s
        return self._observed()

    @property
    def shortest_pitch_s(self) -> float | None:
        """The pitch for deadlines: the one the pace follows, or shorter when the last read found the
        line faster (several moves since the read before), so a deadline is never set by a stale pitch."""
        pitch = self.pitch_s
        if pitch is None or self._catch_up_s is None:
            return pitch
        return min(pitch, self._catch_up_s)

    def _observed(self) -> float | None:
        """Time over items between the first and the last read that saw a move, across the last SPAN
        moves: each move is known only to within the reads around it, so one gap says little (a read
        just after another can see the move both straddle), a span of several says the pitch."""
        if len(self._moves) < 2:
            return None
        (t0, c0), (t1, c1) = self._moves[0], self._moves[-1]
        return (t1 - t0) / (c1 - c0) if c1 - c0 >= MIN_SPAN else None

    def saw(self, at: float, counter: int) -> None:
        """A read at monotonic time `at` found `counter`."""
        last, self._last = self._last, (at, counter)
        self._catch_up_s = None
        if last is None or counter < last[1]:
            self._moves.clear()  # the first read, or a PLC reset: nothing to measure from
            return
        moved = counter - last[1]
        if moved == 0:
            return
        if moved > 1:  # more than one pitch passed between two reads: read sooner until the pace follows
            self._catch_up_s = (at - last[0]) / moved
        pitch = self._observed()
        if self._moves and pitch is not None:
            t0, c0 = self._moves[-1]
            if (at - t0) / (counter - c0) > STOPPED * pitch:
                self._moves.clear()  # the line stood still in between: a new span starts here
        self._moves.append((at, counter))

    def interval_s(self) -> float:
        """Seconds from this read to the next."""
        pitch = self.pitch_s
        if not self.enabled or pitch is None or self.stretch <= 0:
            return self.floor_s
        interval = pitch * min(1.0, self.stretch / 2)
        if self._catch_up_s is not None:
            interval = min(interval, self._catch_up_s)
        return min(max(interval, self.floor_s), self.ceiling_s)


class Wake:
    """The one thing a station's loop waits on between reads: its timer, the stop, or a frame.

    Why not `asyncio.timeout(...)` around `stop.wait()`: a timeout that expires cancels the task and
    turns the CancelledError into a TimeoutError, and on every read that cost more CPU than the read
    itself. Here a timer handle sets an event; nothing is raised.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        self.event = asyncio.Event()
        self._watch = asyncio.ensure_future(stop.wait())
        self._watch.add_done_callback(lambda _: self.event.set())

    def set(self) -> None:
        self.event.set()

    def clear(self) -> None:
        self.event.clear()

    async def sleep(self, delay_s: float) -> None:
        """Until `delay_s` has passed or the event was set (before or meanwhile)."""
        if self.event.is_set():
            return
        handle = asyncio.get_running_loop().call_later(delay_s, self.event.set)
        try:
            await self.event.wait()
        finally:
            handle.cancel()

    def close(self) -> None:
        self._watch.cancel()
