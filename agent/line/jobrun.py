"""One job's run on the line: its stations in a task group, until the job is done or its run is asked
to end, then the belt stopped before the coders, the last verdicts in, packing finished or left open,
and the job's new state in the ledger.

Why the end of a run is asked for and not done by the asker (JobControl): an operator's `job stop`
arrives on a control-socket client's task and the resource guard's fault on its own task, while the
order of the stop (belt, coders, verdicts, packing, ledger) belongs to the run; the asker is answered
through `over` once the line has really stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from agent.aggregation.parents import ReadLabel
from agent.config.model import LineConfig
from agent.jobs import Job, JobState, finish_job, get_job, pause_job, stop_job
from agent.ledger import Ledger
from agent.line.alarms import AlarmBoard
from agent.line.packing import PackLine
from agent.line.plcs import Belt
from agent.line.printing import PrintState, PrintStation
from agent.line.resources import ResourceGuard
from agent.line.verifying import VerifyRunner, VerifyState
from agent.line.waits import Teardown, forget_leaked_cancel, wait_any
from agent.verify.tracker import Tracked
from agent.verify.verdict import Judgement

log = logging.getLogger(__name__)

FINISH_DRAIN_S = 60.0  # job finish: how long the belt may run for printed items to reach their verdict
ELSEWHERE_CHECK_S = 1.0  # a job stopped by a process that did not ask the daemon is seen within this
DRAIN_LOOK_S = 0.1  # every coder done: how often the last verdicts are looked for


class JobEnd(StrEnum):
    """Why a job's run on the line ended."""

    DONE = "done"  # the target is printed and every printed item judged
    SHUTDOWN = "shutdown"  # the daemon stops (signal, crash)
    STOP = "stop"  # an operator stopped the job (`job stop`)
    PAUSE = "pause"  # an operator paused it (`job pause`; `job start` resumes)
    FINISH = "finish"  # an operator finished it: feeding stops, printed items drain, unused codes return
    FAULT = "fault"  # a resource fault stopped the line (agent/line/resources.py); the job is paused
    ELSEWHERE = "elsewhere"  # the job's state was changed in the ledger by another process


class RuntimeState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"  # devices up, no running job
    RUNNING = "running"  # a job is being printed
    DRAINING = "draining"  # the job's codes are printed; the last items are passing the camera
    FAULT = "fault"  # a resource fault stopped the line; no job runs until it clears
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class JobRun:
    """What one job's run did, for the demo and the tests."""

    job: str
    verdicts: dict[str, int] = field(default_factory=dict)
    packs: dict[str, Any] = field(default_factory=dict)
    completed: bool = False  # the target was printed and every item judged (not cut short by stop)


class JobControl:
    """What reaches the job loop from outside it: a job was started (look now, not at the next poll),
    the running job's run is asked to end, and the answer once it has."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.end: JobEnd | None = None  # the end asked for the running job's run
        self.asked = asyncio.Event()
        self.over: asyncio.Future[dict[str, Any]] | None = None  # the run's report, once it has ended

    def begin(self) -> None:
        """A run starts: nothing asked of it yet."""
        self.end = None
        self.asked.clear()
        self.over = asyncio.get_running_loop().create_future()

    def ask(self, end: JobEnd) -> None:
        self.end = end
        self.asked.set()

    @property
    def running(self) -> bool:
        return self.over is not None and not self.over.done()

    def ended(self, report: dict[str, Any]) -> None:
        if self.over is not None and not self.over.done():
            self.over.set_result(report)


class Line(Protocol):
    """What a job's run needs of the runtime (agent/line/runtime.py LineRuntime)."""

    cfg: LineConfig
    ledger: Ledger
    board: AlarmBoard
    resources: ResourceGuard
    read_labels: dict[str, ReadLabel]
    printers: dict[str, PrintStation]
    verifiers: dict[str, VerifyRunner]
    belt: Belt
    job_control: JobControl
    state: RuntimeState
    current: Job | None
    packline: PackLine | None
    runs: list[JobRun]


async def run_job(line: Line, job: Job, stop: asyncio.Event) -> JobRun:
    line.state = RuntimeState.RUNNING
    line.current = job
    run = JobRun(job.name)
    line.runs.append(run)
    feed_stop = asyncio.Event()  # the coders stop taking codes (each feeder reconciles)
    job_stop = asyncio.Event()  # the stations stop judging
    control = line.job_control
    control.begin()
    line.packline = pack = PackLine(line.cfg, line.ledger, job, line.board, line.read_labels)
    end = JobEnd.SHUTDOWN
    report: dict[str, Any] = {"job": job.name, "ended": str(end)}

    def on_verdict(item: Tracked, j: Judgement) -> None:
        run.verdicts[str(j.verdict)] = run.verdicts.get(str(j.verdict), 0) + 1
        if not j.verdict.rejects and item.code is not None:
            pack.verified(item.code)

    for v in line.verifiers.values():
        v.on_verdict[:] = [on_verdict]
    teardown = Teardown(f"job {job.name}")
    me = asyncio.current_task()
    assert me is not None
    cancels_before = me.cancelling()
    try:
        async with asyncio.TaskGroup() as tg:
            printing = [tg.create_task(p.run(job, feed_stop), name=f"print:{n}")
                        for n, p in line.printers.items()]
            verifying = [tg.create_task(v.run(job.template, job_stop), name=f"verify:{n}")
                         for n, v in line.verifiers.items()]
            others = [tg.create_task(pack.run(), name="packing"),
                      tg.create_task(line.belt.conveyor(job_stop), name="conveyor")]
            try:
                end = await until_done(line, job, printing, stop)
                if end is JobEnd.FINISH:
                    # Drain: no new codes; the belt runs until every printed item has its verdict.
                    line.state = RuntimeState.DRAINING
                    feed_stop.set()
                    if printing:
                        await asyncio.wait(printing, timeout=FINISH_DRAIN_S)
                    await until_judged(line, stop, FINISH_DRAIN_S)
                await line.belt.run_line(False)  # the belt stops before the coders are told to stop
                feed_stop.set()
                job_stop.set()
                if verifying:  # their last verdicts are committed and reported before packing ends
                    await asyncio.wait(verifying)
                if end in (JobEnd.DONE, JobEnd.FINISH):
                    pack.finish()
                else:
                    pack.cancel()  # packs left open stay open in the ledger; an operator closes them
            except BaseException:  # a station's crash cancels this body, as does the runtime's end
                teardown.begin([*printing, *verifying, *others])
                pack.cancel()
                raise
            finally:  # every station ends on these too, even one whose cancellation was lost (waits.py)
                feed_stop.set()
                job_stop.set()
        run.completed = end is JobEnd.DONE
        run.packs = pack.snapshot()
        report = await settle(line, job, end, run)
    except Exception as exc:  # a task group's exception group too
        if not line.resources.note(exc):  # not a full or failing disk: a bug, as before
            raise
        forget_leaked_cancel(me, cancels_before)  # handled: the daemon lives on (waits.py)
        if line.belt.running:  # the guard has stopped it already, unless its PLC write failed
            await line.belt.run_line(False)
        run.packs = pack.snapshot()
        report = {"job": job.name, "ended": str(JobEnd.FAULT),
                  "state": await asyncio.to_thread(line.resources.pause, job.id)}
    finally:
        teardown.end()
        line.current = None
        control.ended(report)
    return run


async def until_done(line: Line, job: Job, printing: list[asyncio.Task[None]], stop: asyncio.Event) -> JobEnd:
    """DONE when every code is printed and every printed item judged; else why the run ends."""
    control = line.job_control
    checked = time.monotonic()
    while not stop.is_set():
        if control.end is not None:
            return control.end
        if all(t.done() for t in printing) and all(p.state is PrintState.DONE for p in line.printers.values()):
            line.state = RuntimeState.DRAINING
            judged = [await asyncio.to_thread(v.all_judged) for v in line.verifiers.values()]
            if all(judged):
                return JobEnd.DONE
        if time.monotonic() - checked >= ELSEWHERE_CHECK_S:  # changed by a process that did not ask the daemon
            checked = time.monotonic()
            now = await asyncio.to_thread(get_job, line.ledger, job.id)
            if now.state is not JobState.RUNNING:
                return JobEnd.ELSEWHERE
        # Woken by what can end the run: a stop, an operator's request, a print station's end; once every
        # coder is done, the last verdicts are looked for every DRAIN_LOOK_S (a 20 ms poll woke the loop
        # 50 times a second for the whole job).
        running = [t for t in printing if not t.done()]
        await wait_any(stop, control.asked, ELSEWHERE_CHECK_S if running else DRAIN_LOOK_S, tasks=running)
    return JobEnd.SHUTDOWN


async def until_judged(line: Line, stop: asyncio.Event, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not stop.is_set() and time.monotonic() < deadline:
        if all([await asyncio.to_thread(v.all_judged) for v in line.verifiers.values()]):
            return
        if any(v.state is VerifyState.STOPPED for v in line.verifiers.values()):
            log.warning("finish: a verify station stopped the line; unjudged items stay unjudged")
            return
        await wait_any(stop, None, 0.05)


async def settle(line: Line, job: Job, end: JobEnd, run: JobRun) -> dict[str, Any]:
    """The job's new state in the ledger once its run on the line has ended."""
    out: dict[str, Any] = {"job": job.name, "ended": str(end), "verdicts": dict(run.verdicts)}
    if end is JobEnd.STOP:
        out["state"] = str((await asyncio.to_thread(stop_job, line.ledger, job.id)).state)
    elif end is JobEnd.PAUSE:
        out["state"] = str((await asyncio.to_thread(pause_job, line.ledger, job.id)).state)
    elif end is JobEnd.FINISH:
        rep = await asyncio.to_thread(finish_job, line.ledger, job.id)
        out.update(state="finished", returned=rep.returned, in_doubt=rep.in_doubt)
    elif end is JobEnd.FAULT:
        out["state"] = await asyncio.to_thread(line.resources.pause, job.id)
    return out
