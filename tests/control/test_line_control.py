"""`lineagent job stop|start|pause|finish` and `alarm ack` against a running line, as an operator types
them: the CLI in its own process, the daemon's runtime on a simulated line (coder on a pty, pymodbus
PLC). What counts is what the plant and the ledger show afterwards, not what the CLI printed."""

from __future__ import annotations

import asyncio
import os
import pwd
import sqlite3
import sys
from pathlib import Path

from rich.console import Console

from agent.demo import prepare
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import Ledger
from agent.line.runtime import LineRuntime
from agent.line.simulated import SimSettings, SimulatedLine

LINEAGENT = str(Path(sys.executable).parent / "lineagent")


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(LINEAGENT, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, "COLUMNS": "200"})
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode()


def test_operator_drives_a_running_line_through_the_control_socket(tmp_path: Path) -> None:
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(tmp_path, 300, Console(file=sink))
    sim = SimulatedLine(cfg, tmp_path, SimSettings(rate_per_min=900, receiver=False))
    live = sim.start()
    assert live.source is not None
    conf = ["--config", str(live.source)]
    ledger = Ledger(live.resolve(live.storage.ledger))
    model = next(iter(sim.plcs.values())).model
    coder = next(iter(sim.coders.values()))
    try:
        job = create_job(ledger, JobSpec(name="WO-1", gtin="09506000134352", product_name="water", lot="L1",
                                         target_qty=300, template="dl", packing_spec="6x4x40"))
        start_job(ledger, job)
        runtime = LineRuntime(live.model_copy(update={"mqtt": None}), ledger, overrides=sim.overrides())

        async def until(cond: object, what: str, limit_s: float = 60) -> None:
            for _ in range(int(limit_s / 0.05)):  # a hang detector, not a timing assertion
                if callable(cond) and cond():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"never: {what}; runtime {runtime.state}, job {runtime.current}, printers "
                             f"{[(p.state, p.primed.is_set()) for p in runtime.printers.values()]}, "
                             f"verifiers {[v.state for v in runtime.verifiers.values()]}, alarms "
                             f"{[(a.source, a.key, a.detail) for a in runtime.board.active]}, belt {model.running}, "
                             f"watchdog trips {model.watchdog_trips}")

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            try:
                await until(lambda: model.running and model.counter > 20, "the line runs")
                code, out = await cli("job", "stop", "WO-1", *conf)
                assert code == 0, out
                assert "is stopped (by the running daemon)" in out
                # The line really stopped: the belt first, then the coder; nothing moves afterwards.
                assert not model.running
                count, printed = model.counter, len(coder.printed)
                await asyncio.sleep(0.5)
                assert (model.counter, len(coder.printed)) == (count, printed)

                code, out = await cli("job", "start", "WO-1", *conf)
                assert code == 0 and "running" in out, out
                # The belt runs again. (What the camera then makes of the items that were between print
                # head and camera across the stop is the restart-tracking defect of the faults issue; this
                # test is about the commands reaching the line, so it only asks that the belt moved.)
                await until(lambda: model.counter > count + 3, "the line runs again")
                code, out = await cli("job", "pause", "WO-1", *conf)
                assert code == 0 and "is paused" in out, out
                assert not model.running
                count = model.counter
                code, out = await cli("job", "start", "WO-2", *conf)
                assert code == 4 and "no job 'WO-2'" in out, out
                code, out = await cli("job", "start", "WO-1", *conf)
                assert code == 0, out
                await until(lambda: model.counter > count, "resumed")
                code, out = await cli("job", "finish", "WO-1", *conf)
                assert code == 0 and "finished" in out and "unused codes returned" in out, out
                assert not model.running
                code, out = await cli("alarm", "ack", *conf)
                assert code == 0 and "acknowledged" in out, out
            finally:
                stop.set()
                await asyncio.wait_for(task, 90)

        asyncio.run(scenario())
    finally:
        ledger.close()
        sim.stop()
    conn = sqlite3.connect(live.resolve(live.storage.ledger))
    try:
        state = conn.execute("SELECT state FROM jobs WHERE name='WO-1'").fetchone()[0]
        codes = dict(conn.execute("SELECT state, COUNT(*) FROM codes WHERE job IS NOT NULL AND level='item' "
                                  "GROUP BY state").fetchall())
        audit = conn.execute("SELECT os_user, action FROM audit WHERE action LIKE 'job.%' ORDER BY id").fetchall()
    finally:
        conn.close()
    assert state == "finished"
    assert codes.get("sent", 0) == 0 and codes.get("allocated", 0) == 0  # nothing left in limbo
    me = pwd.getpwuid(os.getuid()).pw_name
    assert [a for _u, a in audit][-5:] == ["job.stop", "job.start", "job.pause", "job.start", "job.finish"]
    assert {u for u, _a in audit[-5:]} == {me}
    printed = coder.printed
    assert len(printed) == len(set(printed)), "a code printed twice"
