"""Aggregation on the running line: verified items stream into boxes, boxes into cases, cases into pallets.

Why the pack being built lives in the ledger (agent/aggregation/builds.py): a kill must not lose the
verified items already in the box on the packer. Each verdict the verify station reports (it reports
only after its commit, so the item is verified in the ledger by then) is recorded into the level's open
build, in the ledger's group commit; a full build gets its parent code (a label printed and read back,
an SSCC minted) and closes in one transaction, which also takes the new pack into the next level's
build. On a restart the job's open builds are carried on, and what a kill left unrecorded (verified in
the last group window) is found and added; the log and the status say what was resumed.

Why on the runtime's loop, with the ledger work in one thread of its own: the loop stays the only
loop (one TaskGroup, docs/architecture.md), and a close commits durably, several fsyncs per pack,
which would stall the verify station's loop for hundreds of milliseconds on a slow disk. One thread
keeps each level's writes in the order they were asked for. Label printing is network I/O on the loop.

Each level is one task that sleeps until it is woken: by new children, by the level below closing a
pack, by an operator's order (park, resume, close short; agent/control/pack_commands.py) or by the
end of the job, when the open builds are force-closed bottom-up with a recorded reason, as an
operator would with `pack close --partial`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.aggregation.builds import BuildInfo, Builds, BuildState
from agent.aggregation.commands import PackRefused, build_result, dry_check
from agent.aggregation.model import AggregationError, LevelPlan, PackRejected
from agent.aggregation.parents import ParentCodes, ReadLabel
from agent.aggregation.setup import aggregator_for, print_with
from agent.config.model import LineConfig
from agent.config.stations import StationKind
from agent.control.protocol import NO_PARKED, NOTHING_BUILT, PACKING_ENDED
from agent.jobs import Job
from agent.ledger import Ledger, LedgerError
from agent.line.alarms import AlarmBoard, Severity
from drivers.labels.zpl import LabelPrinterError, ZplLabelPrinter

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_S = 1.0  # a ledger write failed (disk full): children wait this long before they are tried again


@dataclass
class Order:
    """An operator's order for one level, answered through `done` once the worker has carried it out."""

    kind: str  # park | resume | close | end | stop
    build: int | None = None  # None: the level's open build (resume: the latest parked)
    reason: str | None = None  # close: the force-close reason
    done: asyncio.Future[dict[str, Any]] | None = None


@dataclass
class Level:
    name: str
    plan: LevelPlan
    station: str
    parents: ParentCodes
    printer: ZplLabelPrinter | None = None
    upper: LevelPlan | None = None  # the level this one's packs go into, when the line builds it
    pending: list[str] = field(default_factory=list)  # children not yet recorded
    due: bool = False  # look at the open build: the level below may have filled it in its close
    orders: deque[Order] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    running: bool = True
    ending: bool = False  # the job's end reached this level
    build: int | None = None  # the build being filled
    open: int = 0  # its children
    closed: int = 0
    partial: int = 0
    parked: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    state: str = "idle"
    resumed: str | None = None  # what a restart found, for the operator


class PackLine:
    """Every aggregate station of the config for one job, chained by level (bottom-up)."""

    def __init__(self, cfg: LineConfig, ledger: Ledger, job: Job, board: AlarmBoard,
                 read_labels: dict[str, ReadLabel] | None = None) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.job = job
        self.board = board
        self.levels: list[Level] = []
        self.agg = aggregator_for(ledger, cfg, job=job.id)
        self.builds = Builds(self.agg)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pack:{job.name}"[:15])
        stations = {st.level: (name, st) for name, st in cfg.stations.items()
                    if st.type is StationKind.AGGREGATE and st.level}
        for level, plan in self.agg.plans.items():
            if level not in stations:
                continue
            name, st = stations[level]
            printer = ZplLabelPrinter(cfg.device_settings("label_printers", st.label_printer)) \
                if st.label_printer else None
            parents = ParentCodes(ledger, plan, job.id, sscc=cfg.code_sources.sscc,
                                  print_label=print_with(printer, job) if printer else None,
                                  read_label=(read_labels or {}).get(name) if printer else None, executor=self._pool)
            self.levels.append(Level(level, plan, name, parents, printer))
        for below, above in zip(self.levels, self.levels[1:], strict=False):
            if above.plan.child_level == below.name:
                below.upper = above.plan

    @property
    def level_names(self) -> list[str]:
        return [lv.name for lv in self.levels]

    # ---- from the runtime -------------------------------------------------------------------------

    def verified(self, code: str) -> None:
        """A verified item (the verify station's hook, on the loop, after its commit): to the bottom level."""
        if self.levels:
            self._push(0, [code])

    def _push(self, i: int, codes: list[str]) -> None:
        lv = self.levels[i]
        lv.pending.extend(codes)
        lv.due = True
        lv.wake.set()

    def finish(self) -> None:
        """The job ended: force-close each level's open build once the level below is done."""
        if self.levels:
            self._order(0, Order("end"))

    def cancel(self) -> None:
        """Stop packing now (the agent is shutting down mid-job): the builds stay open in the ledger."""
        for i in range(len(self.levels)):
            self._order(i, Order("stop"))

    def _order(self, i: int, order: Order) -> None:
        lv = self.levels[i]
        lv.orders.append(order)
        lv.wake.set()

    async def order(self, level: str, kind: str, *, build: int | None = None,
                    reason: str | None = None) -> dict[str, Any]:
        """An operator's order (park, resume, close) carried out by the level's task, between two fills."""
        i = self.level_names.index(level)
        lv = self.levels[i]
        if not lv.running:
            raise PackRefused(PACKING_ENDED, job=self.job.name)
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._order(i, Order(kind, build, reason, done))
        return await asyncio.shield(done)

    # ---- the tasks ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """One task per level; returns when every level has handled its end (or stop)."""
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
                lv.running = False
                self._refuse_orders(lv)
                if lv.printer is not None:
                    with contextlib.suppress(LabelPrinterError, OSError):
                        await lv.printer.close()
            self._pool.shutdown(wait=False)

    async def _db(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(work, *args, **kwargs))

    async def _work(self, i: int, lv: Level) -> None:
        """A level's task. A ledger that fails under it (a full disk, an I/O error) stops this level with
        an alarm, never the runtime: the line's own stop for a failing ledger is the resource guard's."""
        try:
            await self._level(i, lv)
            return
        except (LedgerError, AggregationError, sqlite3.Error, OSError) as exc:
            lv.running = False
            self.board.set(lv.station, "station", True, Severity.STOP, f"{lv.name} packing stopped: {exc}")
            log.error("job %s: %s packing stopped: %s", self.job.name, lv.name, exc)
        while not lv.ending:  # the job's end still goes up the levels, or the runtime would wait on them
            self._refuse_orders(lv, keep=("end", "stop"))
            if lv.orders:
                lv.ending = True
                break
            lv.wake.clear()
            await lv.wake.wait()
        if i + 1 < len(self.levels) and not any(o.kind == "stop" for o in lv.orders):
            self._order(i + 1, Order("end"))

    async def _level(self, i: int, lv: Level) -> None:
        await self._resume(lv)
        await self._fill(i, lv, [])
        while True:
            await lv.wake.wait()
            lv.wake.clear()
            while lv.due or lv.orders:
                if any(o.kind == "stop" for o in lv.orders):  # shutting down: one last try, then go
                    if lv.due:
                        await self._fill(i, lv, self._take(lv))
                    lv.running = False
                    return
                if lv.due:
                    if not await self._fill(i, lv, self._take(lv)) and not lv.orders:
                        lv.wake.clear()
                        with contextlib.suppress(TimeoutError):  # the ledger failed: retry, sooner if woken
                            async with asyncio.timeout(RETRY_S):
                                await lv.wake.wait()
                    continue
                order = lv.orders.popleft()
                if order.kind == "end":
                    lv.running, lv.ending = False, True
                    await self._end(i, lv)
                    return
                await self._carry_out(i, lv, order)

    @staticmethod
    def _take(lv: Level) -> list[str]:
        codes, lv.pending, lv.due = lv.pending, [], False
        return codes

    async def _resume(self, lv: Level) -> None:
        """What a restart (or an earlier run of this job) left: carried on, and said so."""
        unfinished = await self._db(self.builds.unfinished, self.job.id, lv.name)
        orphans = await self._db(self.builds.orphans, self.job.id, lv.plan)
        current = next((b for b in unfinished if b.state is BuildState.OPEN), None)
        lv.parked = sum(b.state is BuildState.PARKED for b in unfinished)
        said = []
        if current is not None:
            lv.build, lv.open = current.id, current.children
            said.append(f"{current.name} with {current.children} of {current.expected}")
        if orphans:
            said.append(f"{len(orphans)} {lv.plan.child_level} that were in no pack")
        if lv.parked:
            said.append(f"{lv.parked} parked")
        if said:
            lv.resumed = "; ".join(said)
            log.warning("job %s: resumed %s: %s", self.job.name, lv.name, lv.resumed)
        if orphans:
            lv.pending[:0] = orphans  # before the verdicts that came meanwhile: they were verified first
            lv.due = True
            lv.wake.set()

    async def _fill(self, i: int, lv: Level, codes: list[str]) -> bool:
        """Record children into the open build; close it when full and go on with the rest. False when
        the ledger refused the write (a full disk): the children are kept for the next try."""
        while True:
            try:
                st = await self._db(self.builds.stage, self.job.id, lv.plan, codes)
            except LedgerError as exc:
                self.board.set(lv.station, "pack_not_recorded", True, Severity.STOP,
                               f"{lv.name}: children not recorded: {exc}")
                lv.pending[:0] = codes
                lv.due = True
                return False
            self.board.set(lv.station, "pack_not_recorded", False)
            lv.build, lv.open = st.build, st.children
            if st.refused:
                self.board.set(lv.station, "child_refused", True, Severity.WARNING,
                               f"{lv.name}: not packed: {'; '.join(map(str, st.refused[:3]))}")
            if not st.full or st.build is None:
                return True
            with contextlib.suppress(AggregationError, LabelPrinterError, LedgerError, OSError):
                await self._close(i, lv, st.build)  # failing, it set the build aside and said why
            if not st.rest:
                return True
            codes = st.rest

    async def _close(self, i: int, lv: Level, build: int, partial: str | None = None, *,
                     operator: bool = False) -> BuildInfo:
        """Obtain the parent code and close. Raises when it did not close: short (nothing changed); or
        refused by the rules (an operator's close: nothing changed; the line's own: the build is
        rejected, the pack leaves for the bench); or its label or commit failed (the build is parked
        with the reason, the line goes on into a fresh one)."""
        dropped = await self._db(self.builds.prune, build)
        if dropped:
            self.board.set(lv.station, "child_dropped", True, Severity.WARNING,
                           f"{lv.name} #{build}: {len(dropped)} no longer packable, taken out: {dropped[:3]}")
        b = await self._db(self.builds.info, build)
        if lv.build == build:
            lv.open = b.children
        try:
            await self._db(dry_check, self.builds, b, partial)
        except PackRejected as exc:
            if b.children == 0:
                await self._db(self.builds.drop_if_empty, build)
                self._forget(lv, build)
            elif not operator:
                self._rejected(lv, b, exc)
                await self._db(self.builds.reject, build, str(exc))
                self._forget(lv, build)
            raise
        try:
            lv.state = "labelling"
            parent = await lv.parents.obtain()
            lv.state = "committing"
            out = await self._db(self.builds.close, build, parent, partial_reason=partial, upper=lv.upper)
        except (AggregationError, LabelPrinterError, LedgerError, OSError) as exc:
            self.board.set(lv.station, "station", True, Severity.STOP, f"{b.name} not closed: {exc}")
            log.error("job %s: %s not closed: %s", self.job.name, b.name, exc)
            if b.state is BuildState.OPEN:
                with contextlib.suppress(AggregationError, LedgerError):
                    await self._db(self.builds.park, build, why=f"not closed: {exc}"[:300])
                    lv.parked += 1
                    self._forget(lv, build)
            raise
        finally:
            lv.state = "idle"
        if out.rejected is not None:
            self._rejected(lv, b, out.rejected)
            self._forget(lv, build)
            raise out.rejected
        self.board.set(lv.station, "station", False)
        lv.closed += 1
        lv.partial += partial is not None
        self._forget(lv, build)
        if b.state is BuildState.PARKED:
            lv.parked -= 1
        if lv.upper is not None:
            self._push(i + 1, out.next.rest if out.next is not None else [])
        return out.build

    def _rejected(self, lv: Level, b: BuildInfo, exc: PackRejected) -> None:
        lv.rejected.update(str(r) for r in exc.reasons)
        self.board.set(lv.station, "pack_rejected", True, Severity.WARNING, f"{b.name} rejected: {exc}")

    @staticmethod
    def _forget(lv: Level, build: int) -> None:
        if lv.build == build:
            lv.build, lv.open = None, 0

    async def _end(self, i: int, lv: Level) -> None:
        """End of the job: the open build is force-closed with the reason recorded, then the level above."""
        b = await self._db(self.builds.open_build, self.job.id, lv.name)
        if b is not None and b.children:
            with contextlib.suppress(AggregationError, LabelPrinterError, LedgerError, OSError):
                await self._close(i, lv, b.id, partial=f"end of job {self.job.name}: partial {lv.name}")
        if lv.parked:
            log.warning("job %s: %d parked %s left for an operator", self.job.name, lv.parked, lv.name)
        if i + 1 < len(self.levels):
            self._order(i + 1, Order("end"))

    async def _carry_out(self, i: int, lv: Level, order: Order) -> None:
        assert order.done is not None
        try:
            result = await self._do(i, lv, order)
        except (AggregationError, LabelPrinterError, LedgerError, OSError) as exc:  # a refusal; the level goes on
            if not order.done.done():
                order.done.set_exception(exc)
            return
        except Exception as exc:  # a bug behind one order must not end the line's packing; logged whole
            log.exception("%s: order %s failed", lv.name, order.kind)
            if not order.done.done():
                order.done.set_exception(exc)
            return
        if not order.done.done():
            order.done.set_result(result)

    async def _do(self, i: int, lv: Level, order: Order) -> dict[str, Any]:
        if order.kind == "resume":
            target = order.build
            if target is None:
                latest = await self._db(self.builds.latest_parked, self.job.id, lv.name)
                if latest is None:
                    raise PackRefused(NO_PARKED, level=lv.name, job=self.job.name)
                target = latest.id
            resumed, parked = await self._db(self.builds.resume, target)
            lv.build, lv.open = resumed.id, resumed.children
            lv.parked += (parked is not None) - 1
            if resumed.full:
                await self._fill(i, lv, [])  # it was set aside full (its label had failed): close it now
                resumed = await self._db(self.builds.info, resumed.id)
            return build_result(resumed, parked=parked.name if parked else None)
        target = order.build if order.build is not None else lv.build
        if target is None:
            raise PackRefused(NOTHING_BUILT, level=lv.name)
        if order.kind == "park":
            b = await self._db(self.builds.park, target, why="parked by an operator")
            lv.parked += 1
            self._forget(lv, target)
            return build_result(b)
        closed = await self._close(i, lv, target, partial=order.reason, operator=True)
        assert closed.parent is not None
        return build_result(closed, parent=closed.parent, partial_reason=order.reason)

    def _refuse_orders(self, lv: Level, keep: tuple[str, ...] = ()) -> None:
        kept = [o for o in lv.orders if o.kind in keep]
        for order in lv.orders:
            if order.kind not in keep and order.done is not None and not order.done.done():
                order.done.set_exception(PackRefused(PACKING_ENDED, job=self.job.name))
        lv.orders = deque(kept)

    def snapshot(self) -> dict[str, Any]:
        return {lv.name: {"closed": lv.closed, "partial": lv.partial, "open": lv.open,
                          "expected": lv.plan.count, "build": lv.build, "parked": lv.parked,
                          "rejected": dict(lv.rejected), "state": lv.state, "resumed": lv.resumed}
                for lv in self.levels}
