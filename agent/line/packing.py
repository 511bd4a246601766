"""Aggregation on the running line: verified items stream into boxes, boxes into cases, cases into pallets.

Why a queue per level: a verdict is announced synchronously by the verify station, but closing a pack
obtains a parent code (a label printed and read back, an SSCC minted) and commits, which takes time;
each level's station works through its own queue in order, so a slow label printer delays packing,
never verification. Children are counted off the verified stream (agent.aggregation.station
StreamBatcher): the N-th verified item goes into the current box. At the end of a job the partial packs
are force-closed bottom-up with a recorded reason, as an operator would with `pack close --partial`.

Why its own thread and event loop (`run_threaded`): obtaining a parent code commits durably (an SSCC
minted, a label code allocated and printed) and those fsyncs, several per pack, would stall the
verify station's loop for hundreds of milliseconds on a slow disk, long enough for items to leave the
camera window unread. Packing may lag; verification may not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.aggregation.model import AggregationError, Reason
from agent.aggregation.parents import ParentCodes, ReadLabel
from agent.aggregation.setup import aggregator_for, print_with
from agent.aggregation.station import AggregationStation, PackOutcome, StreamBatcher
from agent.config.model import LineConfig
from agent.config.stations import StationConfig, StationKind
from agent.jobs import Job
from agent.ledger import CodeState, Ledger
from agent.line.alarms import AlarmBoard, Severity
from drivers.labels.zpl import LabelPrinterError, ZplLabelPrinter

log = logging.getLogger(__name__)
END = None  # queue marker: the job ended, force-close what is open
STOP: list[str] = []  # queue marker: stop at once, leave open packs open


@dataclass
class Level:
    name: str
    station: AggregationStation
    batcher: StreamBatcher
    queue: asyncio.Queue[list[str] | None] = field(default_factory=asyncio.Queue)
    open: int = 0  # children in the pack being filled
    closed: int = 0
    partial: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    printer: ZplLabelPrinter | None = None


class PackLine:
    """Every aggregate station of the config for one job, chained by level (bottom-up)."""

    def __init__(self, cfg: LineConfig, ledger: Ledger, job: Job, board: AlarmBoard,
                 read_labels: dict[str, ReadLabel] | None = None) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.job = job
        self.board = board
        self._cancel_requested = False
        self.agg = aggregator_for(ledger, cfg, job=job.id)
        stations = {st.level: (name, st) for name, st in cfg.stations.items()
                    if st.type is StationKind.AGGREGATE and st.level}
        self.levels: list[Level] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        for level in self.agg.plans:
            if level not in stations:
                continue
            name, st = stations[level]
            self.levels.append(self._level(name, st, level, (read_labels or {}).get(name)))

    def _level(self, name: str, st: StationConfig, level: str, read_label: ReadLabel | None) -> Level:
        plan = self.agg.plan(level)
        printer = None
        if st.label_printer:
            printer = ZplLabelPrinter(self.cfg.device_settings("label_printers", st.label_printer))
        parents = ParentCodes(self.ledger, plan, self.job.id, sscc=self.cfg.code_sources.sscc,
                              print_label=print_with(printer, self.job) if printer else None,
                              read_label=read_label if printer else None)

        async def reject(pack: str, reasons: Sequence[Reason]) -> None:
            # The pack leaves at the station's own reject; on this line that is the operator's bench.
            self.board.set(name, "pack_rejected", True, Severity.WARNING,
                           f"{level} {pack} rejected: {', '.join(map(str, reasons))}")

        station = AggregationStation(self.agg, plan, parents, reject, self.job.id)
        return Level(level, station, StreamBatcher(plan.count), printer=printer)

    def verified(self, code: str) -> None:
        """A verified item (from the verify station's hook): into the bottom level's current pack."""
        if not self.levels:
            return
        if self._loop is not None:
            # Packing may have ended already (a full disk ends it early): the item stays verified and
            # unpacked, as after a kill; the verify station's callback must not raise for it.
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                self._loop.call_soon_threadsafe(self._push, 0, code)
        else:
            self._push(0, code)

    def _push(self, i: int, code: str) -> None:
        lv = self.levels[i]
        batch = lv.batcher.push(code)
        lv.open = 0 if batch is not None else lv.open + 1
        if batch is not None:
            lv.queue.put_nowait(batch)

    def finish(self) -> None:
        """The job ended: force-close each level's partial pack once the level below is done."""
        if not self.levels:
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.levels[0].queue.put_nowait, END)
        else:
            self.levels[0].queue.put_nowait(END)

    async def run_threaded(self) -> None:
        """run() on its own event loop in a worker thread; returns when it does.

        Cancelled (the runtime is going down: a crash, a signal), it tells the thread to stop and waits
        for it, so no thread is left packing behind a runtime that has ended (it would hold the
        process open and ignore SIGTERM)."""
        started = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            for lv in self.levels:
                lv.queue = asyncio.Queue()  # bound to this loop
            started.set()
            if self._cancel_requested:  # cancelled before this loop existed
                self.cancel()
            await self.run()

        work = asyncio.ensure_future(asyncio.to_thread(asyncio.run, main()))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            self._cancel_requested = True
            self.cancel()
            await asyncio.wait({work}, timeout=30)
            raise

    def cancel(self) -> None:
        """Stop packing now (the agent is shutting down mid-job): open packs stay open in the ledger."""
        loop = self._loop
        if loop is not None:
            for lv in self.levels:
                loop.call_soon_threadsafe(lv.queue.put_nowait, STOP)

    async def run(self) -> None:
        """One task per level; returns when every level has handled its END marker."""
        for lv in self.levels:
            if lv.printer is not None:
                with contextlib.suppress(LabelPrinterError, OSError):
                    await lv.printer.connect()
        try:
            async with asyncio.TaskGroup() as tg:
                for i, lv in enumerate(self.levels):
                    tg.create_task(self._work(i, lv), name=f"pack:{lv.name}")
        finally:
            for lv in self.levels:
                if lv.printer is not None:
                    with contextlib.suppress(LabelPrinterError, OSError):
                        await lv.printer.close()

    async def _work(self, i: int, lv: Level) -> None:
        while True:
            batch = await lv.queue.get()
            if batch is STOP:
                return
            if batch is END:
                rest = lv.batcher.remainder()
                lv.open = 0
                if rest:
                    await self._pack(i, lv, rest, partial=f"end of job {self.job.name}: partial {lv.name}")
                if i + 1 < len(self.levels):
                    self.levels[i + 1].queue.put_nowait(END)
                return
            if i == 0:
                await self._until_verified(batch)
            await self._pack(i, lv, batch)

    async def _until_verified(self, codes: list[str], wait_s: float = 2.0) -> None:
        """The verify station announces a verdict just before its ledger write (in a worker thread);
        give that write a moment so the pack's rule check sees the children verified."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            states = await asyncio.to_thread(lambda: [self.ledger.state_of(c) for c in codes])
            if all(st is CodeState.VERIFIED for st in states):
                return
            await asyncio.sleep(0.005)

    async def _pack(self, i: int, lv: Level, children: list[str], partial: str | None = None) -> None:
        try:
            out: PackOutcome = await lv.station.handle(children, partial_reason=partial)
        except (AggregationError, LabelPrinterError) as exc:
            self.board.set(lv.name, "station", True, Severity.STOP, f"{lv.name} station: {exc}")
            return
        if not out.accepted or out.parent is None:
            lv.rejected.update(str(r) for r in out.reasons)
            return
        lv.closed += 1
        lv.partial += partial is not None
        if i + 1 < len(self.levels):
            self._push(i + 1, out.parent)

    def snapshot(self) -> dict[str, Any]:
        return {lv.name: {"closed": lv.closed, "partial": lv.partial, "open": lv.open,
                          "rejected": dict(lv.rejected), "state": str(lv.station.state)} for lv in self.levels}
