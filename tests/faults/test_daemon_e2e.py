"""The daemon as an operator drives it (issue 10's end-to-end test): the plant in its own process,
`lineagent run` in another, every command typed through the CLI to the control socket; the daemon is
SIGKILLed mid-job and started again. What counts is what the plant did (its own record), what the
ledger and the receiver hold afterwards, not what the CLI printed."""

from __future__ import annotations

import os
import pwd
import sqlite3
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from agent.demo import prepare
from agent.line.broker import Broker
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from tests.faults.audit import audit
from tests.faults.harness import TruthTail, drained, wait_for
from tests.faults.processes import AgentProcess, PlantProcess, cli

JOB = "WO-E2E"
MUST_HOLD = ("no code sent to a coder twice (while a copy could still print)", "no code printed twice",
             "no code on two items (printed, or tied by the ledger to one it is not on)",
             "every verified item has exactly one commissioning event at the receiver",
             "every EPC at the receiver names a code of the ledger",
             "every uplink event exactly once at the receiver",
             "PRAGMA integrity_check ok on the ledger and the receiver's store")


@pytest.mark.timeout(900)
def test_an_operator_drives_the_daemon_through_stops_a_kill_and_a_finish(tmp_path: Path) -> None:
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(tmp_path, 800, Console(file=sink))
    assert cfg.source is not None
    ledger = cfg.resolve(cfg.storage.ledger)
    broker = Broker(tmp_path / "broker")
    broker.start()
    receiver = Receiver(broker.url, SqliteStore(tmp_path / "receiver.db"), client_id=f"e2e-{broker.port}")
    receiver.start()
    raw = yaml.safe_load(cfg.source.read_text())
    raw["mqtt"]["broker"] = broker.url
    cfg.source.write_text(yaml.safe_dump(raw, sort_keys=False))
    plant = PlantProcess(cfg.source, tmp_path / "plant", rate=900, seed=5, watchdog_s=1.0)  # no dry coder
    lives: list[AgentProcess] = []
    try:
        assert receiver.ready.wait(30)
        live = Path(plant.wait_ready()["live_config"])
        conf = ("--config", str(live))
        tail = TruthTail(tmp_path / "plant" / "plant.jsonl")

        def printed() -> int:
            tail.poll()
            return len(tail.printed_from)

        def belt(running: bool) -> bool:
            tail.poll()
            return tail.belt_running is running

        def spawn() -> AgentProcess:
            agent = AgentProcess(live, tmp_path / f"agent-{len(lives) + 1}.log", len(lives) + 1)
            lives.append(agent)
            status = ledger.with_name(ledger.name + ".status.json")
            assert wait_for(lambda: status.exists() and f'"pid": {agent.proc.pid}' in status.read_text(), 120), \
                agent.log_path.read_text()[-3000:]
            return agent

        def run(*args: str) -> str:
            code, out = cli(*args, *conf)
            assert code == 0, out
            return out

        code, out = cli("job", "create", JOB, "--product", "water500", "--lot", "L7", "--qty", "600",
                        "--packing-spec", "6x4x40", *conf)
        assert code == 0, out
        spawn()
        assert "running (by the running daemon)" in run("job", "start", JOB)
        assert wait_for(lambda: printed() > 20, 120), "the line never printed"

        # stop: answered once the line has stopped; nothing moves or prints afterwards
        assert "stopped (by the running daemon)" in run("job", "stop", JOB)
        assert wait_for(lambda: belt(False), 10)
        count = printed()
        time.sleep(1.0)  # while stopped nothing may print (this can only pass wrongly, never fail wrongly)
        assert printed() == count

        run("job", "start", JOB)
        assert wait_for(lambda: printed() > count + 10, 120), "the line did not run again after a stop"
        assert "paused" in run("job", "pause", JOB)
        assert wait_for(lambda: belt(False), 10)
        count = printed()
        run("job", "start", JOB)
        assert wait_for(lambda: printed() > count + 10, 120), "the line did not run again after a pause"

        # a crash mid-job: the running job is resumed by the next daemon on its own
        lives[-1].kill("sigkill while running")
        count = printed()
        spawn()
        assert wait_for(lambda: printed() > count + 30, 120), "the job did not resume after the kill"

        # finish mid-run: feeding stops, printed items reach their verdicts, unused codes go back
        out = run("job", "finish", JOB)
        assert "finished" in out and "unused codes returned" in out, out
        assert wait_for(lambda: belt(False), 10)
        assert wait_for(lambda: drained(ledger, tmp_path / "receiver.db"), 90), "the outbox was not drained"
        assert lives[-1].terminate() == 0
    finally:
        for agent in lives:
            if agent.alive():
                agent.terminate()
        plant.stop()
        receiver.stop()
        receiver.store.close()
        broker.kill()

    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        job_state = conn.execute("SELECT state FROM jobs WHERE name = ?", (JOB,)).fetchone()[0]
        limbo = conn.execute("SELECT COUNT(*) FROM codes c JOIN jobs j ON j.id = c.job WHERE j.name = ? "
                             "AND c.state IN ('allocated', 'sent')", (JOB,)).fetchone()[0]
        audited = conn.execute("SELECT os_user, action FROM audit WHERE action LIKE 'job.%' ORDER BY id").fetchall()
    finally:
        conn.close()
    assert job_state == "finished" and limbo == 0
    me = pwd.getpwuid(os.getuid()).pw_name
    assert [a for _u, a in audited] == ["job.create", "job.start", "job.stop", "job.start", "job.pause",
                                        "job.start", "job.finish"]
    assert {u for u, _a in audited} == {me}
    report = audit(truth_path=tmp_path / "plant" / "plant.jsonl", ledger=ledger,
                   receiver_db=tmp_path / "receiver.db", lives=[a.life for a in lives], job=JOB, target=600,
                   fifo_depth=24, finished=True)
    assert set(MUST_HOLD) <= {c.name for c in report.checks}
    failed = [c for c in report.checks if c.name in MUST_HOLD and not c.ok]
    assert not failed, report.text()
