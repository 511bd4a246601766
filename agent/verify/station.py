"""The verify station: ties reads to positions, judges every item, records it, acts at the gate.

Why it looks like this: the station is the one place where a physical item, a ledger code and a
verdict meet, so it is the one place that must never let them drift apart. It takes `Observation`s
from any source (a fixed reader's strings, a camera frame through the decoder: see `observe_image`),
positions from the PLC counter, prints from the feeder, and for each item in conveyor order:

- binds it to the code printed on it, durably (agent/verify/records.py), so a restart knows it;
- judges it (agent.verify.verdict), at the read or, when no read came, when its read window closes;
- acts at the gate through the PLC (drivers/plc/plc.py `gate`): a reject is fired at once; under
  positive release (`gate: release`) a good item is released once its verdict is committed, and the
  PLC removes every item not released. The line stops when a removal is not confirmed or too many
  rejects come in a row (agent.verify.rejects);
- hands every write to its writer thread (agent.verify.recorder): a good verdict is verified with its
  EPCIS commissioning event at once; a reject's code is decommissioned only once the product is proven
  removed (the confirm sensor, or no release under positive release), and a product that left with no
  verdict carried out at the gate is `escaped`, never reported void;
- reports the verdict (counts, `on_verdict` hooks: packing, the runtime) only after its commit.

On start it plans from the PLC's counters and the ledger what is between head and gate
(agent/verify/binding.py): items in flight are judged with their own code when the binding is proven,
rejected as unbound otherwise; never judged against another item's code.

The event loop never touches the writer connection: code states come from a read-only WAL connection
plus this station's own verdicts not yet committed, so a commit's fsync elsewhere cannot stall it.

Fail safe: when the ledger refuses a good verdict the item is rejected anyway; nothing leaves the line
verified (or released) that is not verified in the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from agent.config.verify import VerifySettings
from agent.epcis import IdentityError, LineContext
from agent.ledger import CodeState, Ledger, LedgerError, UnknownCode
from agent.ledger.states import IllegalTransition
from agent.verify import binding
from agent.verify.decode import Decoder
from agent.verify.grade import Grader
from agent.verify.pacing import Pacer, Wake
from agent.verify.recorder import Recorder
from agent.verify.records import Outcome, Records, verification_event
from agent.verify.rejects import Alarm, RejectBook, StopReason, stop_line
from agent.verify.tracker import ItemState, Tracked, Tracker
from agent.verify.verdict import JUDGED, Judgement, Observation, Verdict, judge
from drivers.cameras.base import Image
from drivers.plc import GateMode, LinePlc, PlcError, Signal, unwrap
from drivers.readers.base import ReadResult

__all__ = ["VerifySettings", "VerifyStation", "ink_seen", "observe_image", "observe_read", "verification_event"]

RELEASE_MARGIN = 2  # a release is written only while its item is at least this many pitches before the gate


class VerifyStation:
    def __init__(
        self,
        ledger: Ledger,
        plc: LinePlc,
        settings: VerifySettings | None = None,
        *,
        line: LineContext,
        code_of: Callable[[str], str | None] = lambda text: text,
        name: str = "verify",
        gs1: bool = False,
    ) -> None:
        self.ledger = ledger
        self.plc = plc
        self.settings = s = settings or VerifySettings()
        self.gate: GateMode = plc.settings.gate
        self.line = line
        self.code_of = code_of  # printed text -> ledger code (templates render codes into URLs)
        self.gs1 = gs1  # the job prints GS1 element strings: reads must be GS1 data in a GS1 symbol
        self.name = name
        self.tracker = Tracker(camera_at=s.camera_at, window=s.read_window, gate_at=s.gate_at)
        self.book = RejectBook(gate_at=s.gate_at, confirm_margin=s.confirm_margin,
                               max_consecutive=s.max_consecutive_rejects)
        self.counts: Counter[Verdict] = Counter()
        self.fates: Counter[str] = Counter()  # removed / escaped / passed, as recorded
        self.alarms: list[Alarm] = []
        self.stopped = False
        self.on_verdict: list[Callable[[Tracked, Judgement], None]] = []  # called once the verdict is durable
        self.recorder = Recorder(ledger, name=f"verify-recorder:{name}", hold_s=s.commit_ms / 1000)
        self.records = Records(ledger, line, name)
        self.latency_s: deque[float] = deque(maxlen=100_000)  # image arrival -> verdict decided, reject fired
        self.late_releases = 0  # good items whose release could not be written before the gate
        self.plan: binding.Plan | None = None
        self._reader: sqlite3.Connection | None = None
        self._unsettled: dict[str, tuple[CodeState, int]] = {}  # code -> (state it is getting, by seq)
        self._removals: dict[int, Tracked] = {}  # items the gate must remove, until confirmed
        self._last_release = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self.pitch_s: float | None = None  # the line's pitch as the counter's pace knows it (commit deadlines)

    # ---- inputs ---------------------------------------------------------------------------------

    async def start(self, render: Callable[[str], str] | None = None) -> binding.Plan:
        """Re-read the PLC's counters and the ledger: settle what passed the gate while the station was
        away, track again what is in flight (its own code when the binding is proven, rejected as
        unbound otherwise). `render`: code -> the text the coder printed (the job's template)."""
        s = self.settings
        raw = await self.plc.counter()
        confirms = await self.plc.confirmed()
        released = await self.plc.last_released() if self.gate is GateMode.RELEASE else None
        rows, mark, after = await asyncio.to_thread(self._read_bindings)
        self.plan = plan = binding.plan(raw_counter=raw, rows=rows, mark=mark, after_mark=after, gate=self.gate,
                                        released_raw=released, gate_at=s.gate_at)
        self.tracker = Tracker(camera_at=s.camera_at, window=s.read_window, gate_at=s.gate_at, start=plan.head)
        self.book.baseline(confirms)
        self._last_release = plan.released_upto if plan.released_upto is not None else -1
        if plan.reset:
            self.recorder.submit(functools.partial(self.records.mark, plan.head))
        for b in plan.proven:
            assert b.code is not None
            self.recorder.submit(functools.partial(self.records.bound, b.seq, b.code, b.coder, b.feed_seq))
        for b, fate, why in plan.settle:
            o = Outcome(b.seq, b.code, None, b.verdict or Verdict.MISSED, b.reason or why)
            if fate is binding.Fate.PASSED:
                self.recorder.submit(functools.partial(self.records.done, b.seq))
            else:
                write = self.records.removed if fate is binding.Fate.REMOVED else self.records.escaped
                self.recorder.submit(functools.partial(write, o, why))
            self.fates[fate.value] += 1
        restore = {b.seq: b for b in plan.restore}
        for seq in sorted([*restore, *plan.unbound]):
            if seq not in restore:
                await self._judge_as(self.tracker.restore(Tracked(seq, unbound=True)), Judgement(
                    Verdict.UNBOUND, None, "in flight across a restart; no binding to a code is proven"))
                continue
            b = restore[seq]
            text = render(b.code) if render is not None and b.code is not None else b.code
            item = self.tracker.restore(Tracked(seq, b.code, text, released=b.released or (
                b.verdict is Verdict.GOOD and seq <= self._last_release)))
            if b.verdict is not None:
                item.judgement = Judgement(b.verdict, None, b.reason or "")
                item.state = ItemState.JUDGED
                if b.verdict.rejects:
                    await self._fire(item)  # again: the PLC may have lost it; the same seq twice is one reject
                elif self.gate is GateMode.RELEASE and not item.released:
                    await self._release(item)
            elif self.tracker.position(seq) > s.camera_at + s.read_window:
                await self._judge_as(item, Judgement(Verdict.MISSED, None,
                                                     "its read window passed while the agent was down"))
        return plan

    def _read_bindings(self) -> tuple[list[binding.Bound], binding.Mark | None, list[binding.Bound]]:
        conn = self.ledger.reader()
        try:
            return binding.read(conn, self.name)
        finally:
            conn.close()

    def printed(self, seq: int, code: str, text: str | None = None, *, coder: str | None = None,
                feed_seq: int | None = None) -> None:
        """The feeder's print-complete (or counter-mapped) report: `code` is on item `seq`; the binding is
        written with the next group (a restart before that finds the item unbound: rejected, never wrong)."""
        self.tracker.printed(seq, code, text)
        self.recorder.submit(functools.partial(self.records.bound, seq, code, coder, feed_seq))

    async def observe(self, obs: Observation) -> Judgement | None:
        """A read for item obs.seq; judged at once. None when it came too late or twice."""
        item = self.tracker.observe(obs)
        if item is None:
            return None
        return await self._judge(item, obs)

    async def tick(self) -> None:
        """Poll the PLC once: positions move, unread items are judged, confirms are checked."""
        values = await self.plc.read_many([Signal.COUNTER, Signal.REJECT_CONFIRM])
        await self.step(unwrap(values[Signal.COUNTER], self.tracker.head), values[Signal.REJECT_CONFIRM])

    async def step(self, counter: int, raw_confirms: int) -> None:
        advance = self.tracker.advance(counter)
        for item in advance.expired:
            await self._judge(item, None)
        for item in advance.at_gate:
            self._at_gate(item)
        settled, alarm = self.book.confirms(raw_confirms, counter)
        for seq in settled:
            self._fate(seq, binding.Fate.REMOVED, "confirmed by the gate sensor")
        if alarm is not None:
            self._fate(alarm.seq, binding.Fate.ESCAPED, "its removal was not confirmed by the gate sensor")
            await self._stop(alarm)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll at the line's pace until `stop` is set; a PLC that fails is an alarm, not the end of the
        station. (On a running line agent/line/verifying.py drives the station; this is the bare loop.)"""
        await self.start()
        pacer = Pacer.for_station(self.settings)
        wake = Wake(stop)
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    values = await self.plc.read_many([Signal.COUNTER, Signal.REJECT_CONFIRM])
                    counter = unwrap(values[Signal.COUNTER], self.tracker.head)
                    pacer.saw(time.monotonic(), counter)
                    self.pitch_s = pacer.shortest_pitch_s
                    await self.step(counter, values[Signal.REJECT_CONFIRM])
                except PlcError as exc:
                    self._raise_alarm(Alarm(StopReason.PLC_FAILED, None, f"verify station {self.name}: {exc}"))
                await wake.sleep(pacer.interval_s())
        finally:
            wake.close()
        await self.flush()

    # ---- the gate -------------------------------------------------------------------------------

    def _at_gate(self, item: Tracked) -> None:
        """The item is at the gate now: under positive release, one not released is being removed; one
        released (or, under a reject-only gate, one not fired) passes."""
        if self.gate is GateMode.RELEASE and not item.released:
            self.book.fired(item.seq)
            self._removals[item.seq] = item
        elif self.gate is GateMode.REJECT and item.judgement is None:
            self._fate(item.seq, binding.Fate.ESCAPED, "reached the gate unjudged", item)
        elif not item.fired or self.gate is GateMode.RELEASE:
            self.fates[binding.Fate.PASSED.value] += 1
            if item.code is not None:
                self.recorder.submit(functools.partial(self.records.done, item.seq))

    def _fate(self, seq: int | None, fate: binding.Fate, why: str, item: Tracked | None = None) -> None:
        item = item or (self._removals.pop(seq, None) if seq is not None else None)
        if item is None:
            return
        self.fates[fate.value] += 1
        write = self.records.removed if fate is binding.Fate.REMOVED else self.records.escaped
        self.recorder.submit(functools.partial(write, self._outcome(item), why))

    @staticmethod
    def _outcome(item: Tracked) -> Outcome:
        j = item.judgement or Judgement(Verdict.UNBOUND, None, "not judged")
        grade = item.observation.grade if item.observation is not None else None
        return Outcome(item.seq, item.code, item.text, j.verdict, j.reason, j.read,
                       grade.value if grade is not None else None)

    async def _fire(self, item: Tracked) -> None:
        """Write the reject (under positive release too: a PLC in reject mode still removes it)."""
        try:
            await self.plc.fire_reject(item.seq)
        except PlcError as exc:
            await self._stop(Alarm(StopReason.PLC_FAILED, item.seq,
                                   f"reject of seq {item.seq} could not be fired: {exc}"))
            return
        item.fired = True
        if self.gate is GateMode.REJECT and item.seq not in self._removals:
            self.book.fired(item.seq)
            self._removals[item.seq] = item

    async def _release(self, item: Tracked) -> None:
        """Release a good item whose verdict is committed, while it is still in time for the gate and in
        increasing seq order (so the register read back after a restart says how far releases got)."""
        if item.state is ItemState.GONE or self.tracker.position(item.seq) > self.settings.gate_at - RELEASE_MARGIN \
                or item.seq <= self._last_release:
            self.late_releases += 1  # the PLC removes it; its code is decommissioned when confirmed
            return
        item.released = True  # before the write: the gate must not count on its removal from now on
        self._last_release = item.seq
        try:
            await self.plc.release(item.seq)
        except PlcError as exc:
            item.released = False
            await self._stop(Alarm(StopReason.PLC_FAILED, item.seq,
                                   f"release of seq {item.seq} could not be written: {exc}"))
            return
        self.recorder.submit(functools.partial(self.records.released, item.seq))

    # ---- judging --------------------------------------------------------------------------------

    def _state_of(self, text: str) -> CodeState | None:
        """The code's state as this station must see it: its own verdicts still on their way to the
        disk first (so a code judged a moment ago is a duplicate on the next item), else the ledger's
        committed state through the read-only WAL connection, which never waits on a writer's fsync."""
        code = self.code_of(text)
        return None if code is None else self._lookup(code)

    def _lookup(self, code: str) -> CodeState | None:
        mine = self._unsettled.get(code)
        if mine is not None:
            return mine[0]
        if self._reader is None:
            self._reader = self.ledger.reader()
        row = self._reader.execute("SELECT state FROM codes WHERE code = ?", (code,)).fetchone()
        return None if row is None else CodeState(row[0])

    async def _judge(self, item: Tracked, obs: Observation | None) -> Judgement:
        return await self._judge_as(item, judge(item.text, obs, self._state_of, minimum=self.settings.min_grade,
                                                gs1=self.gs1), obs)

    async def _judge_as(self, item: Tracked, j: Judgement, obs: Observation | None = None) -> Judgement:
        """Decide and act at the gate now; record in the writer thread; report once durable.

        Why the reject is fired before its verdict is committed: firing is the physical safety act
        and must land before the item reaches the gate, while the commit may take longer than a
        pitch. The order is safe because a reject can only remove an item, and its code is
        decommissioned only once the removal is confirmed. A good verdict, in turn, is reported (hooks,
        counts, packing) and released only after its commit returned, and one the ledger refuses comes
        back as a reject that is fired then.
        """
        self.tracker.judged(item, j)
        if j.verdict.rejects:
            await self._fire(item)
        if obs is not None:
            self.latency_s.append(time.monotonic() - obs.at)
        if item.code is not None:
            self._unsettled[item.code] = (self._expected_state(item, j), item.seq)
        self.recorder.submit(functools.partial(self._record_safely, item, j),
                             functools.partial(self._recorded, item, j), by=self._commit_by(item, j))
        if not j.verdict.restart:
            alarm = self.book.verdict(item.seq, j.verdict.rejects)
            if alarm is not None:
                await self._stop(alarm)
        return j

    def _commit_by(self, item: Tracked, j: Judgement) -> float | None:
        """When this verdict's commit must start (None: the recorder's hold). A good item under positive
        release is released only once its verdict is committed, and must be released before it is
        RELEASE_MARGIN pitches from the gate: its commit starts within half the time left to that point
        (the other half for a slow fsync and the write), at once when the pitch is unknown."""
        if j.verdict.rejects or self.gate is not GateMode.RELEASE:
            return None
        now = time.monotonic()
        if not self.pitch_s:
            return now
        left = self.settings.gate_at - RELEASE_MARGIN - self.tracker.position(item.seq)
        return now + max(0, left) * self.pitch_s / 2

    def _expected_state(self, item: Tracked, j: Judgement) -> CodeState:
        """What item.code will become, for the loop's view until the commit is visible."""
        if not j.verdict.rejects:
            return CodeState.VERIFIED
        assert item.code is not None
        seen = self._lookup(item.code)
        if seen in JUDGED or seen is None:
            return seen or CodeState.REJECTED
        proven = j.read is not None and j.read == item.text
        return CodeState.REJECTED if proven or seen is CodeState.PRINTED else CodeState.VOIDED

    def _recorded(self, item: Tracked, j: Judgement, refused: Judgement | None,
                  error: BaseException | None) -> None:
        """On the loop, once the verdict's commit returned (or failed): now it is final."""
        if item.code is not None and self._unsettled.get(item.code, (None, -1))[1] == item.seq:
            del self._unsettled[item.code]
        if error is not None and not j.verdict.rejects:
            refused = Judgement(Verdict.NO_READ, j.read, f"read good, but the verdict was not recorded: {error}")
        if refused is not None:
            j = refused
            self.tracker.judged(item, j)
            self._spawn(self._fire(item))
        elif not j.verdict.rejects and self.gate is GateMode.RELEASE:
            self._spawn(self._release(item))
        self.counts[j.verdict] += 1
        for hook in self.on_verdict:
            hook(item, j)

    async def flush(self) -> None:
        """Wait until every verdict so far is committed and reported (tests, shutdown, end of a job)."""
        await self.recorder.flush()
        while self._tasks:
            await asyncio.gather(*self._tasks)
        await self.recorder.flush()

    def close(self) -> None:
        """Stop the writer thread after what is queued; close the read connection."""
        self.recorder.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _record_safely(self, item: Tracked, j: Judgement) -> Judgement | None:
        """Writer thread. Record the verdict; a good one the ledger refuses comes back as its reject."""
        o = self._outcome(item)
        if item.code is None:
            self.records.event(o)
            return None
        try:
            self.records.verdict(o)
        except (LedgerError, IllegalTransition, UnknownCode, IdentityError) as exc:
            turned = None if j.verdict.rejects else Judgement(
                Verdict.NO_READ, j.read, f"read good, but the ledger refused it: {exc}")
            self.records.event(Outcome(o.seq, o.code, o.text, (turned or j).verdict, (turned or j).reason, o.read),
                               error=str(exc))
            return turned
        return None

    # ---- alarms ---------------------------------------------------------------------------------

    def _raise_alarm(self, alarm: Alarm) -> None:
        """Known at once (self.alarms); journaled by the writer thread, so an alarm never waits on disk."""
        self.alarms.append(alarm)

        def journal() -> None:
            with self.ledger.atomic():
                self.ledger.append_event(f"alarm.{alarm.reason.value}", {
                    "station": self.name, "seq": alarm.seq, "message": alarm.message})

        self.recorder.submit(journal)

    async def _stop(self, alarm: Alarm) -> None:
        self._raise_alarm(alarm)
        self.stopped = True
        with contextlib.suppress(PlcError):  # already an alarm; a dead PLC cannot be stopped by us
            await stop_line(self.plc)


def observe_read(seq: int, result: ReadResult, *, at: float | None = None) -> Observation:
    """A fixed reader's result for item `seq` as an Observation (readers give no grade)."""
    texts = () if result.text is None else (result.text,)
    return Observation(seq, texts, None, at=time.monotonic() if at is None else at)


def ink_seen(image: Image, *, min_dark_fraction: float = 0.002) -> bool:
    """Whether anything darker than the label was printed in `image` (a crop of the print region).

    Why: "nothing printed" and "printed but unreadable" are different faults (the first is the coder,
    the second the print or the camera), and an operator fixes them differently.
    """
    grey = np.asarray(image, dtype=np.float32)
    paper = float(np.percentile(grey, 90))
    dark = grey < paper * 0.6
    return float(dark.mean()) >= min_dark_fraction


def observe_image(seq: int, image: Image, decoder: Decoder, grader: Grader | None = None,
                  *, at: float | None = None) -> Observation:
    """A camera frame of item `seq` as an Observation: decode (crop first), grade, look for ink."""
    result = decoder.decode(image)
    region = decoder.settings.region
    crop = region.crop(image) if region is not None else image
    if result.symbols:
        report = grader.sampled(image, result.symbols[0]) if grader is not None else None
        grade = report.overall if report is not None else None
        return Observation(seq, tuple(s.text for s in result.symbols), grade,
                           at=time.monotonic() if at is None else at,
                           symbologies=tuple(s.symbology_id for s in result.symbols))
    return Observation(seq, (), None, blank=not ink_seen(crop), at=time.monotonic() if at is None else at)
