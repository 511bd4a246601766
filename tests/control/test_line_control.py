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
                # The belt runs again; the items left between print head and camera by the stop are judged on
                # their own prints (checked against the plant's record at the end).
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
        judged = conn.execute("SELECT i.seq, c.code, i.verdict, c.state FROM items i JOIN codes c ON c.id = i.code "
                              "ORDER BY i.seq").fetchall()
        outbox = conn.execute("SELECT code, payload FROM events WHERE uplink = 1").fetchall()
        journal = conn.execute("SELECT kind, code, payload FROM events WHERE kind LIKE 'alarm.%'").fetchall()
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
    # Against the plant's own record (which text the coder printed on which item, which defect the plant
    # put on it), not the agent's: the stop/start and pause/resume above left items between print head
    # and camera each time, and each must still get the verdict of its own print.
    expected = {"mismatch": {"mismatch", "foreign"}, "no_read": {"no_read"}, "low_grade": {"low_grade"},
                "missing_print": {"missing_print"}}
    assert judged, "no item judged"
    for seq, code, verdict, _state in judged:
        on_item = sim.record.printed.get(seq)
        defect = sim.record.defect.get(seq)
        if on_item is None:  # the coder printed nothing on it (its FIFO was flushed at a stop)
            assert verdict == "missing_print", (seq, code, verdict)
            continue
        assert on_item.endswith("/21/" + code), f"item {seq} carries {on_item!r}, the ledger bound {code!r}"
        if defect is None:
            assert verdict == "good", f"item {seq}: a good print judged {verdict}"
        else:
            assert verdict in expected[defect], f"item {seq}: plant defect {defect}, verdict {verdict}"
    kinds = {k for k, _c, _p in journal}
    assert "alarm.consecutive_rejects" not in kinds and "alarm.reject_unconfirmed" not in kinds, kinds
    # No decommissioning event for a code whose product passed the gate (the plant's record of the gate).
    passed = {sim.record.printed[s].rsplit("/21/", 1)[1] for s in model.passed if sim.record.printed.get(s)}
    void = {c for c, payload in outbox if '"decommissioning"' in payload}
    assert void, "no reject was decommissioned (the plant injects defects)"
    assert not (void & passed), f"decommissioned codes on products that passed the gate: {void & passed}"
    removed = {sim.record.printed[s].rsplit("/21/", 1)[1] for s in model.rejected if sim.record.printed.get(s)}
    assert void <= removed, "a code decommissioned whose product the gate did not remove"
