"""The verify station: ties reads to positions, judges every item, records it, rejects at the gate.

Why it looks like this: the station is the one place where a physical item, a ledger code and a
verdict meet, so it is the one place that must never let them drift apart. It takes `Observation`s
from any source (a fixed reader's strings, a camera frame through the decoder: see `observe_image`),
positions from the PLC counter, prints from the feeder, and for each item in conveyor order:

- judges it (agent.verify.verdict), at the read or, when no read came, when its read window closes;
- fires the reject through the PLC at once, and stops the line when a reject is not confirmed or too
  many come in a row (agent.verify.rejects);
- hands the verdict to its writer thread (agent.verify.recorder), which records it in one transaction
  with its EPCIS event on the outbox: good -> verified with a commissioning ObjectEvent, anything else
  -> rejected with a decommissioning one and its reason. A code still `sent` or `in_doubt` is first
  moved to `printed` when the read proves the print; a rejected item whose print no read proves is
  voided instead (sent -> in_doubt -> voided), since a code may only be rejected once printed;
- reports the verdict (counts, `on_verdict` hooks: packing, the runtime) only after its commit.

The event loop never touches the writer connection: code states come from a read-only WAL connection
plus this station's own verdicts not yet committed, so a commit's fsync elsewhere cannot stall it.

Fail safe: when the ledger refuses a good verdict the item is rejected anyway; nothing leaves the line
verified that is not verified in the ledger.
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
from agent.epcis import LineContext, commissioning_event, decommissioning_event, epc_for
from agent.ledger import CodeState, Ledger, LedgerError, UnknownCode
from agent.ledger.states import IllegalTransition
from agent.verify.decode import Decoder
from agent.verify.grade import Grader
from agent.verify.recorder import Recorder
from agent.verify.rejects import Alarm, RejectBook, StopReason, stop_line
from agent.verify.tracker import Tracked, Tracker
from agent.verify.verdict import JUDGED, Judgement, Observation, Verdict, judge
from drivers.cameras.base import Image
from drivers.plc import LinePlc, PlcError, Signal, unwrap
from drivers.readers.base import ReadResult

UNPROVEN = frozenset({CodeState.SENT, CodeState.IN_DOUBT})


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
    ) -> None:
        self.ledger = ledger
        self.plc = plc
        self.settings = s = settings or VerifySettings()
        self.line = line
        self._jobs: dict[int, tuple[str | None, str | None, str]] = {}  # job id -> lot, expiry, name
        self.code_of = code_of  # printed text -> ledger code (templates render codes into URLs)
        self.name = name
        self.tracker = Tracker(camera_at=s.camera_at, window=s.read_window, gate_at=s.gate_at)
        self.book = RejectBook(gate_at=s.gate_at, confirm_margin=s.confirm_margin,
                               max_consecutive=s.max_consecutive_rejects)
        self.counts: Counter[Verdict] = Counter()
        self.alarms: list[Alarm] = []
        self.stopped = False
        self.on_verdict: list[Callable[[Tracked, Judgement], None]] = []  # called once the verdict is durable
        self.recorder = Recorder(ledger, name=f"verify-recorder:{name}")
        self.latency_s: deque[float] = deque(maxlen=100_000)  # image arrival -> verdict decided, reject fired
        self._reader: sqlite3.Connection | None = None
        self._unsettled: dict[str, tuple[CodeState, int]] = {}  # code -> (state it is getting, by seq)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- inputs ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the PLC's counters as they are now: items already on the line are not ours to judge."""
        counter = await self.plc.counter()
        self.tracker = Tracker(camera_at=self.tracker.camera_at, window=self.tracker.window,
                               gate_at=self.tracker.gate_at, start=counter)
        self.book.baseline(await self.plc.confirmed())

    def printed(self, seq: int, code: str, text: str | None = None) -> None:
        """The feeder's print-complete (or counter-mapped) report: `code` is on item `seq`."""
        self.tracker.printed(seq, code, text)

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
        for item in self.tracker.advance(counter).expired:
            await self._judge(item, None)
        alarm = self.book.confirms(raw_confirms, counter)
        if alarm is not None:
            await self._stop(alarm)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; a PLC that fails is an alarm, not the end of the station."""
        await self.start()
        while not stop.is_set():
            try:
                await self.tick()
            except PlcError as exc:
                self._raise_alarm(Alarm(StopReason.PLC_FAILED, None, f"verify station {self.name}: {exc}"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_ms / 1000):
                    await stop.wait()
        await self.flush()

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
        """Decide and act at the gate now; record in the writer thread; report once durable.

        Why the reject is fired before its verdict is committed: firing is the physical safety act
        and must land before the item reaches the gate, while the commit may take longer than a
        pitch. The order is safe because a reject can only remove an item: if the agent dies before
        the commit, the item is off the line and its code is still sent or printed in the ledger,
        never verified; it ends in doubt or is judged again, never shipped as good. A good verdict,
        in turn, is reported (hooks, counts, packing) only after its commit returned, and one the
        ledger refuses comes back as a reject that is fired then.
        """
        j = judge(item.text, obs, self._state_of, minimum=self.settings.min_grade)
        self.tracker.judged(item, j)
        if j.verdict.rejects:
            await self._fire(item.seq)
        if obs is not None:
            self.latency_s.append(time.monotonic() - obs.at)
        if item.code is not None:
            self._unsettled[item.code] = (self._expected_state(item, j), item.seq)
        self.recorder.submit(functools.partial(self._record_safely, item, j, obs),
                             functools.partial(self._recorded, item, j))
        alarm = self.book.verdict(item.seq, j.verdict.rejects)
        if alarm is not None:
            await self._stop(alarm)
        return j

    def _expected_state(self, item: Tracked, j: Judgement) -> CodeState:
        """What the writer will make of item.code, for the loop's view until the commit is visible."""
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
            self._spawn(self._fire(item.seq))
        self.counts[j.verdict] += 1
        for hook in self.on_verdict:
            hook(item, j)

    async def flush(self) -> None:
        """Wait until every verdict so far is committed and reported (tests, shutdown, end of a job)."""
        await self.recorder.flush()
        if self._tasks:
            await asyncio.gather(*self._tasks)

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

    async def _fire(self, seq: int) -> None:
        try:
            await self.plc.fire_reject(seq)
            self.book.fired(seq)
        except PlcError as exc:
            await self._stop(Alarm(StopReason.PLC_FAILED, seq, f"reject of seq {seq} could not be fired: {exc}"))

    def _record_safely(self, item: Tracked, j: Judgement, obs: Observation | None) -> Judgement | None:
        """Writer thread. Record the verdict; a good one the ledger refuses comes back as its reject."""
        if item.code is None:
            self._record_event(item, j)
            return None
        try:
            self._record(item, j, obs)
        except (LedgerError, IllegalTransition, UnknownCode) as exc:
            turned = None if j.verdict.rejects else Judgement(
                Verdict.NO_READ, j.read, f"read good, but the ledger refused it: {exc}")
            self._record_event(item, turned or j, error=str(exc))
            return turned
        return None

    def _record(self, item: Tracked, j: Judgement, obs: Observation | None) -> None:
        """The verdict, its item row and its EPCIS event: one transaction (writer thread).

        A rejected item whose code no read proves printed (still `sent` or `in_doubt`: a no-read, a
        missing print, another code read) cannot become `rejected`, which needs a printed code. Its
        item has left the line at the gate, so nothing will ever prove the print: the code goes
        sent -> in_doubt -> voided at once, the void carrying the decommissioning event, and the
        feeder's later confirmation skips it (it confirms only codes still `sent`).
        """
        assert item.code is not None
        code, now = item.code, time.time()
        good = not j.verdict.rejects
        grade = obs.grade.value if obs is not None and obs.grade is not None else None
        with self.ledger.atomic():
            row = self.ledger.code_row(code)
            lot, expiry, work_order = self._job(row["job"])
            event = verification_event(self.line, code, commissioning=good, at=now, lot=lot, expiry=expiry,
                                       work_order=work_order, reason=None if good else j.verdict.value)
            payload: dict[str, Any] = {"epcis": event, "seq": item.seq, "verdict": j.verdict.value,
                                       "reason": j.reason, "read": j.read, "grade": grade, "station": self.name}
            state = CodeState(row["state"])
            if state in UNPROVEN and j.read is not None and j.read == item.text:
                self.ledger.transition(code, CodeState.PRINTED, kind="code.printed",
                                       payload={"proven_by": "read", "seq": item.seq})
                state = CodeState.PRINTED
            if state in JUDGED:
                # Printed a second time: the first item keeps its verdict (it may have shipped and
                # is genuine); this item leaves at the gate, and the journal says why.
                self.ledger.append_event("verify.printed_again", payload, code=code, job=row["job"])
            elif not good and state in UNPROVEN:
                if state is CodeState.SENT:
                    self.ledger.transition(code, CodeState.IN_DOUBT, kind="code.in_doubt", payload={
                        "seq": item.seq, "station": self.name, "why": f"{j.verdict.value}: no read proves the print"})
                self.ledger.transition(code, CodeState.VOIDED, kind="code.voided", payload=payload, uplink=True)
            else:
                target = CodeState.VERIFIED if good else CodeState.REJECTED
                self.ledger.transition(code, target, kind=f"code.{target.value}", payload=payload, uplink=True)
            if row["job"] is not None:
                self.ledger.conn.execute(
                    "INSERT INTO items(job, code, seq, verdict, grade, judged_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(code) DO UPDATE SET seq = excluded.seq, verdict = excluded.verdict, "
                    "grade = excluded.grade, judged_at = excluded.judged_at",
                    (row["job"], row["id"], item.seq, j.verdict.value, grade, now),
                )

    def _job(self, job: int | None) -> tuple[str | None, str | None, str | None]:
        """Lot, expiry and work order (the job's name) for the events of a job's codes; cached."""
        if job is None:
            return None, None, None
        if job not in self._jobs:
            row = self.ledger.conn.execute("SELECT lot, expiry, name FROM jobs WHERE id = ?", (job,)).fetchone()
            self._jobs[job] = (row["lot"], row["expiry"], row["name"]) if row else (None, None, str(job))
        return self._jobs[job]

    def _record_event(self, item: Tracked, j: Judgement, error: str | None = None) -> None:
        """A verdict with no code to move (nothing printed), or one the ledger refused: journal it."""
        with self.ledger.atomic():
            self.ledger.append_event(f"verify.{j.verdict.value}", {
                "seq": item.seq, "reason": j.reason, "read": j.read, "station": self.name,
                **({"error": error} if error else {}),
            }, code=item.code)

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


def verification_event(
    line: LineContext, code: str, *, commissioning: bool, at: float, reason: str | None,
    lot: str | None = None, expiry: str | None = None, work_order: str | None = None,
) -> dict[str, Any]:
    """The EPCIS 2.0 ObjectEvent for one verdict, built by agent.epcis so every producer agrees.

    Verified: ADD / commissioning / active with lot and expiry as ilmd. Rejected: OBSERVE /
    decommissioning / inactive with the verdict as `lineagent:reason`.
    """
    epc = epc_for(code, line.company_prefix_length)
    if commissioning:
        return commissioning_event(line, [epc], at=at, lot=lot, expiry=expiry, work_order=work_order)
    return decommissioning_event(line, [epc], at=at, reason=reason or "rejected", work_order=work_order)


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
                           at=time.monotonic() if at is None else at)
    return Observation(seq, (), None, blank=not ink_seen(crop), at=time.monotonic() if at is None else at)
