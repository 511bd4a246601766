"""End to end on the simulated line: real coder sim on a pty, real pymodbus PLC, real images through the
real decoder, real mosquitto and receiver; and the daemon's clean shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from agent.demo import run_demo
from agent.line.status import read_status, status_path


def test_simulated_line_keeps_every_invariant(tmp_path: Path) -> None:
    with Path(os.devnull).open("w") as sink:
        report = run_demo(tmp_path / "line", items=72, fresh=True, console=Console(file=sink),
                          rate_per_min=600.0, broker_restart=True)
    failed = [c for c in report.checks if not c.ok]
    assert failed == []
    names = {c.name for c in report.checks}
    assert "the receiver holds every uplink event exactly once" in names
    assert "no code printed twice" in names


def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    from agent.codes.package import generate_keys

    generate_keys(tmp_path / "keys", kind="ed25519")
    cfg = tmp_path / "line.yaml"
    cfg.write_text("site: {id: s}\nline: {id: L1}\nstorage: {ledger: ledger.db}\n"
                   "security: {cloud_public_key: keys/public.pem}\n")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "lineagent"), "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])
    path = status_path(tmp_path / "ledger.db")
    deadline = time.monotonic() + 20
    st = read_status(path)
    while time.monotonic() < deadline and (st is None or st.state != "idle"):
        time.sleep(0.05)  # waiting on another process, not in async code
        st = read_status(path)
    assert st is not None and st.alive() and st.pid == proc.pid
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert b"stopped cleanly" in out
    final = read_status(path)
    assert final is not None and final.state == "stopped"


def test_a_dead_coder_degrades_with_an_alarm_and_the_agent_lives_on(tmp_path: Path) -> None:
    import asyncio

    from agent.demo import prepare
    from agent.jobs import JobSpec, create_job, start_job
    from agent.ledger import Ledger
    from agent.line.runtime import LineRuntime, RuntimeState
    from agent.line.simulated import SimSettings, SimulatedLine

    with Path(os.devnull).open("w") as sink:
        cfg = prepare(tmp_path, 200, Console(file=sink))
    sim = SimulatedLine(cfg, tmp_path, SimSettings(rate_per_min=900, receiver=False))
    live = sim.start()
    ledger = Ledger(live.resolve(live.storage.ledger))
    try:
        job = create_job(ledger, JobSpec(name="WO-1", gtin="09506000134352", product_name="water", lot="L1",
                                         target_qty=200, template="dl", packing_spec="6x4x40"))
        start_job(ledger, job)
        runtime = LineRuntime(live.model_copy(update={"mqtt": None}), ledger, overrides=sim.overrides())

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            while sum(v.station.counts.total() if v.station else 0 for v in runtime.verifiers.values()) < 10:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(sim.kill_coder, "coder1")
            while not any(a.source == "coder1" for a in runtime.board.active):
                assert not task.done(), "the agent ended when its coder died"
                await asyncio.sleep(0.05)
            assert runtime.state is RuntimeState.RUNNING
            assert str(runtime.board.light(running=True)) == "red"
            stop.set()
            await asyncio.wait_for(task, 90)  # a hang detector, not a timing assertion

        asyncio.run(scenario())
        assert runtime.state is RuntimeState.STOPPED
        final = read_status(status_path(ledger.path))
        assert final is not None and any(a["source"] == "coder1" for a in final.alarms)
        printed = sim.coders["coder1"].printed
        assert len(printed) == len(set(printed))
        verified = ledger.conn.execute("SELECT COUNT(*) FROM codes WHERE state = 'verified'").fetchone()[0]
        assert 0 < verified <= len(printed)  # nothing verified that the coder did not print
    finally:
        ledger.close()
        sim.stop()
