"""The verify station: ties reads to positions, judges every item, records it, rejects at the gate.

Why it looks like this: the station is the one place where a physical item, a ledger code and a
verdict meet, so it is the one place that must never let them drift apart. It takes `Observation`s
from any source (a fixed reader's strings, a camera frame through the decoder: see `observe_image`),
positions from the PLC counter, prints from the feeder, and for each item in conveyor order:

- judges it (agent.verify.verdict), at the read or, when no read came, when its read window closes;
- writes the verdict to the ledger in one transaction with its EPCIS event on the outbox: good ->
  verified with a commissioning ObjectEvent, anything else -> rejected with a decommissioning one and
  its reason (a code still `sent` or `in_doubt` is first moved to `printed`: the read proves the print);
- fires the reject through the PLC, and stops the line when a reject is not confirmed or too many
  come in a row (agent.verify.rejects).

Fail safe: when the ledger refuses a good verdict the item is rejected anyway; nothing leaves the line
verified that is not verified in the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from agent.config.base import Strict
from agent.epcis import LineContext, commissioning_event, decommissioning_event, epc_for
from agent.ledger import CodeState, Ledger, LedgerError, UnknownCode
from agent.ledger.states import IllegalTransition
from agent.verify.decode import Decoder
from agent.verify.grade import Grade, Grader
from agent.verify.rejects import Alarm, RejectBook, StopReason, stop_line
from agent.verify.tracker import Tracked, Tracker
from agent.verify.verdict import JUDGED, Judgement, Observation, Verdict, judge
from drivers.cameras.base import Image
from drivers.plc import LinePlc, PlcError, Signal, unwrap
from drivers.readers.base import ReadResult

UNPROVEN = frozenset({CodeState.SENT, CodeState.IN_DOUBT})


class VerifySettings(Strict):
    """Positions in pitches (items) downstream of the print head; see agent.verify.tracker."""

    camera_at: int = Field(3, ge=0)
    read_window: int = Field(1, ge=0)  # pitches after the camera a late read still counts
    gate_at: int = Field(8, ge=1)
    confirm_margin: int = Field(2, ge=0)  # pitches after the gate the confirm may take
    max_consecutive_rejects: int = Field(5, ge=1)
    min_grade: Grade = Grade.C
    poll_ms: float = Field(5.0, gt=0)  # PLC counter polling

    @model_validator(mode="after")
    def _order(self) -> VerifySettings:
        if not self.camera_at + self.read_window < self.gate_at:
            raise ValueError(f"camera_at + read_window ({self.camera_at + self.read_window}) must be "
                             f"below gate_at ({self.gate_at}): every item is judged before the gate")
        return self


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
        self.on_verdict: list[Callable[[Tracked, Judgement], None]] = []

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

    # ---- judging --------------------------------------------------------------------------------

    def _state_of(self, text: str) -> CodeState | None:
        code = self.code_of(text)
        if code is None:
            return None
        try:
            return self.ledger.state_of(code)
        except UnknownCode:
            return None

    async def _judge(self, item: Tracked, obs: Observation | None) -> Judgement:
        """Decide, act at the gate, then record. The reject is fired before the ledger write so a
        slow fsync never delays the gate; the ledger write runs in a worker thread so it never stalls
        the loop, and a good verdict the ledger refuses is turned into a reject (fail safe)."""
        j = judge(item.text, obs, self._state_of, minimum=self.settings.min_grade)
        self.tracker.judged(item, j)
        if j.verdict.rejects:
            await self._fire(item.seq)
        for hook in self.on_verdict:
            hook(item, j)
        refused = await asyncio.to_thread(self._record_safely, item, j, obs)
        if refused is not None:
            j = refused
            self.tracker.judged(item, j)
            await self._fire(item.seq)
        self.counts[j.verdict] += 1
        alarm = self.book.verdict(item.seq, j.verdict.rejects)
        if alarm is not None:
            await self._stop(alarm)
        return j

    async def _fire(self, seq: int) -> None:
        try:
            await self.plc.fire_reject(seq)
            self.book.fired(seq)
        except PlcError as exc:
            await self._stop(Alarm(StopReason.PLC_FAILED, seq, f"reject of seq {seq} could not be fired: {exc}"))

    def _record_safely(self, item: Tracked, j: Judgement, obs: Observation | None) -> Judgement | None:
        """Record the verdict; a good one the ledger refuses comes back as the reject it becomes."""
        if item.code is None:
            self._record_event(item, j)
            return None
        try:
            self._record(item, j, obs)
        except (LedgerError, IllegalTransition) as exc:
            turned = None if j.verdict.rejects else Judgement(
                Verdict.NO_READ, j.read, f"read good, but the ledger refused it: {exc}")
            self._record_event(item, turned or j, error=str(exc))
            return turned
        return None

    def _record(self, item: Tracked, j: Judgement, obs: Observation | None) -> None:
        """The verdict, its item row and its EPCIS event: one transaction."""
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
            target = CodeState.VERIFIED if good else CodeState.REJECTED
            if state in JUDGED:
                # Printed a second time: the first item keeps its verdict (it may have shipped and
                # is genuine); this item leaves at the gate, and the journal says why.
                self.ledger.append_event("verify.printed_again", payload, code=code, job=row["job"])
            else:
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
        self.alarms.append(alarm)
        with self.ledger.atomic():
            self.ledger.append_event(f"alarm.{alarm.reason.value}", {
                "station": self.name, "seq": alarm.seq, "message": alarm.message})

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
        grade = grader.grade(image, result.symbols[0]).overall if grader is not None else None
        return Observation(seq, tuple(s.text for s in result.symbols), grade,
                           at=time.monotonic() if at is None else at)
    return Observation(seq, (), None, blank=not ink_seen(crop), at=time.monotonic() if at is None else at)
