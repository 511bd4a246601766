"""When the feeder looks at its coder next: when the FIFO, at the line's rate, nears its low water mark.

Why not every poll_ms: a look is a status round trip on the coder's link, a ledger read and, with room in
the FIFO, a durable commit and a push. Looking every poll_ms whatever the FIFO held was the print side's
largest cost at 2,000 items/min (25 looks a second, each refilling one or two codes behind its own fsync),
while a FIFO of 64 codes lasts two seconds at that rate. So the next look is due when half the headroom
above low water would be printed at the line's rate (half, so that the poll's own latency and a rate that
creeps up never take the FIFO below low water), never sooner than poll_ms and never later than max_poll_ms.

What "the line's rate" is: the highest of the rate declared for the station (feed.line_rate_per_min), the
highest rate measured in this run (a line that ran at a rate can restart at it, so a stopped or paused
coder is paced by it too), and the rate over the last second. It is measured on the prints reported at
each look while the coder was printing (for a coder that confirms nothing itself: the camera's proofs).
With none of them (a fresh feeder whose coder has printed nothing yet, no rate declared) nothing bounds
how fast the FIFO may drain once items come, so the feeder looks every poll_ms, as it did before pacing.

Which coders: only those whose driver checks the coder's queue count at every look
(Capabilities.reports_fifo_loss), so a stop that emptied the FIFO shows at whatever look comes next. Where
the feeder sees a stop only as a change of state between two of its own looks, a stop and a restart
between two paced looks could go unseen; the feeder keeps looking every poll_ms there (agent/feeder.py).

What pacing does not touch: events the driver reports (a lost FIFO, a link change, a fault) end the wait at
once, as does a print report that takes the FIFO to low water (a single slot's next code goes out on its
print). How often a stop, a loss or a fault is seen when the driver reports no event is bounded by
max_poll_ms, and so is how late a print is confirmed; neither decides what a code becomes, only when.

Where it can starve: only where the line runs faster than any rate it knows. After a start is seen the
wait grows from poll_ms by at most doubling per look, so a rate that builds up is measured before the
waits grow long; and a measured rate only raises the peak. A line that once ran slowly, then runs far
faster with a FIFO shallower than that rate x max_poll_ms, can drain before the next look: declare its
highest rate (feed.line_rate_per_min) or lower max_poll_ms for such a coder (docs/technicians.md).
"""

from __future__ import annotations

from collections import deque

RATE_WINDOW_S = 1.0  # the current rate is measured over about this long
# A span shorter than this is too noisy to raise the peak. Short spans come only right after a start, when
# looks are poll_ms apart; their noise errs high as often as low, and the peak keeps the high errors:
# shorter waits, never longer ones.
RATE_MIN_SPAN_S = 0.05
HEADROOM_SHARE = 0.5  # of the headroom above low water that may be printed before the next look


class Pace:
    """The feeder's look schedule. Pure bookkeeping: the feeder tells it what each look saw."""

    def __init__(self, *, poll_s: float, max_poll_s: float, line_rate_per_min: float | None) -> None:
        self.poll_s = poll_s
        self.max_poll_s = max(max_poll_s, poll_s)
        self.declared = (line_rate_per_min or 0.0) / 60.0  # items/s
        self.peak = 0.0  # the highest rate measured in this run, items/s
        self.delay = poll_s  # the wait chosen after the last look
        self._samples: deque[tuple[float, int]] = deque()  # (monotonic time, prints seen) while printing
        self._printing = False

    def looked(self, now: float, printed: int, *, printing: bool) -> None:
        """A look at the coder: `printed` is the running count of prints it reported."""
        if not printing:
            self._samples.clear()
            self._printing = False
            return
        if not self._printing:  # a start: the rate may be anything, look again soon
            self._printing = True
            self.delay = self.poll_s
        samples = self._samples
        samples.append((now, printed))
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW_S:
            samples.popleft()
        span = now - samples[0][0]
        if span >= RATE_MIN_SPAN_S:
            self.peak = max(self.peak, (printed - samples[0][1]) / span)

    def rate(self) -> float:
        """Items/s the FIFO may drain at: the declared, the peak or the current rate, whichever is highest."""
        current = 0.0
        if len(self._samples) >= 2:
            (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
            if t1 > t0:
                current = (c1 - c0) / (t1 - t0)
        return max(self.declared, self.peak, current)

    def next_delay(self, open_records: int, low_water: int) -> float:
        """The wait until the next look, with `open_records` ours in the coder."""
        headroom = open_records - low_water
        rate = self.rate()
        # Due now, or no rate known (nothing says how soon the FIFO drains): poll_ms.
        want = self.poll_s if headroom <= 0 or rate <= 0 else headroom * HEADROOM_SHARE / rate
        self.delay = max(self.poll_s, min(want, self.max_poll_s, 2 * self.delay))
        return self.delay

    def reset(self) -> None:
        """After a reconcile: the FIFO starts empty, look soon."""
        self.delay = self.poll_s
