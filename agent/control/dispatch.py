"""The daemon's answer to one control-socket request (agent/control/server.py hands each one here).

Why a job command on the running job is asked of the job's run and not done here: the run owns the
order of the stop (belt, coders, verdicts, packing, ledger; agent/line/jobrun.py), so the operator is
answered once the line has really stopped. A job not on the line is changed on the ledger, as the CLI
does with no daemon. Every command that changes something is audited, done or refused, with the user
from the socket's peer credentials; a refusal the ledger cannot take (a full disk) is not.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from agent.control import pack_commands
from agent.control.protocol import (
    ALREADY_ENDING,
    ALREADY_RUNNING,
    NO_JOB_ARG,
    OTHER_RUNNING,
    Command,
    ControlError,
    ErrorCode,
    Request,
)
from agent.jobs import JobError, JobNotFound, finish_job, get_job, pause_job, start_job, stop_job
from agent.ledger import LedgerError
from agent.line.jobrun import JobEnd

if TYPE_CHECKING:
    from agent.line.alarms import AlarmBoard
    from agent.line.jobrun import JobControl
    from agent.line.resources import ResourceGuard
    from agent.line.status import DaemonStatus
    from agent.line.verifying import VerifyRunner

ENDS = {Command.JOB_STOP: JobEnd.STOP, Command.JOB_PAUSE: JobEnd.PAUSE, Command.JOB_FINISH: JobEnd.FINISH}


class Line(pack_commands.Line, Protocol):
    """What the requests need of the runtime (agent/line/runtime.py LineRuntime)."""

    board: AlarmBoard
    resources: ResourceGuard
    job_control: JobControl

    def snapshot(self) -> DaemonStatus: ...


async def control(line: Line, request: Request, user: str) -> dict[str, Any]:
    """One operator request from the control socket; audited with the peer's user name."""
    cmd, args = request.cmd, request.args
    if cmd in pack_commands.COMMANDS:
        return await pack_commands.handle(line, request, user)
    if cmd is Command.STATUS:
        return asdict(line.snapshot())
    if cmd is Command.ALARM_ACK:
        hit = line.board.acknowledge(args.get("source"), args.get("key"))
        result = f"{len(hit)} alarm(s) acknowledged"
        await asyncio.to_thread(line.ledger.audit, "alarm.ack", args, result, user=user)
        return {"acknowledged": [f"{a.source}/{a.key}" for a in hit]}
    ref = args.get("job")
    if not isinstance(ref, str | int) or isinstance(ref, bool) or ref == "":
        raise ControlError(ErrorCode.USAGE, NO_JOB_ARG)
    if cmd is Command.JOB_START and (why := line.resources.refusal()) is not None:
        raise ControlError(ErrorCode.REFUSED, why)  # not audited: the ledger cannot take the write
    try:
        result_d = await job_command(line, cmd, ref)
    except JobNotFound as exc:
        raise ControlError(ErrorCode.NOT_FOUND, str(exc)) from None
    except (JobError, ControlError) as exc:
        await asyncio.to_thread(line.ledger.audit, str(cmd), {"job": ref}, f"refused: {exc}", user=user)
        if isinstance(exc, ControlError):
            raise
        raise ControlError(ErrorCode.REFUSED, str(exc)) from None
    except (LedgerError, sqlite3.Error) as exc:  # a full or failing disk: the guard stops the line
        if not line.resources.note(exc):
            raise
        raise ControlError(ErrorCode.REFUSED, line.resources.refusal() or str(exc)) from None
    await asyncio.to_thread(line.ledger.audit, str(cmd), {"job": ref}, json.dumps(result_d, default=str),
                            user=user)
    return result_d


async def job_command(line: Line, cmd: Command, ref: str | int) -> dict[str, Any]:
    job = await asyncio.to_thread(get_job, line.ledger, ref)
    current = line.current
    jobs = line.job_control
    if cmd is Command.JOB_START:
        if current is not None:
            raise ControlError(ErrorCode.REFUSED, ALREADY_RUNNING.format(job=job.name) if current.id == job.id
                               else OTHER_RUNNING.format(job=job.name, other=current.name))
        job = await asyncio.to_thread(start_job, line.ledger, job.id)
        jobs.started.set()
        return {"job": job.name, "state": str(job.state)}
    end = ENDS[cmd]
    if current is not None and current.id == job.id and jobs.over is not None:
        if jobs.end is not None:
            raise ControlError(ErrorCode.REFUSED, ALREADY_ENDING.format(job=job.name, end=jobs.end))
        jobs.ask(end)
        report = dict(await asyncio.shield(jobs.over))  # answered once the line has really stopped
        if report.get("ended") == str(end):
            return report
        # The run ended on its own as the request came (its target printed, a fault): the request is then
        # the ledger change it is when no run is on the line, not an answer about a run that ignored it.
        job = await asyncio.to_thread(get_job, line.ledger, job.id)
    # Not on the line: a ledger change, as the CLI makes it when no daemon runs.
    if end is JobEnd.STOP:
        return {"job": job.name, "state": str((await asyncio.to_thread(stop_job, line.ledger, job.id)).state)}
    if end is JobEnd.PAUSE:
        return {"job": job.name, "state": str((await asyncio.to_thread(pause_job, line.ledger, job.id)).state)}
    rep = await asyncio.to_thread(finish_job, line.ledger, job.id)
    return {"job": job.name, "state": "finished", "returned": rep.returned, "in_doubt": rep.in_doubt}


def gates(verifiers: Iterable[VerifyRunner]) -> dict[str, pack_commands.Gate]:
    """Each verify station's reject gate, by its PLC's name (for the gate test)."""
    return {v.plc_name: pack_commands.Gate(v.plc, v.st.verify.gate_at, v.st.verify.confirm_margin)
            for v in verifiers}
