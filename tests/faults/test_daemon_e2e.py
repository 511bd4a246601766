"""The daemon as an operator drives it (issue 10's end-to-end test): the plant in its own process,
`lineagent run` in another, every command typed through the CLI to the control socket (job start, stop,
pause, park and force-close the box being built, resume the parked one, finish mid-run); the daemon is
SIGKILLed mid-job, with packs being built, and started again. What counts is what the plant did (its own
record), what the ledger and the receiver hold afterwards, not what the CLI printed."""

from __future__ import annotations

import os
import pwd
import re
import sqlite3
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from agent import pins
from agent.demo import prepare
from agent.line.broker import Broker
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from tests.faults.audit import audit
from tests.faults.harness import TruthTail, drained, wait_for
from tests.faults.processes import AgentProcess, PlantProcess, cli

JOB = "WO-E2E"
PIN = "2468"
MUST_HOLD = ("no code sent to a coder twice (while a copy could still print)", "no code printed twice",
             "no code on two items (printed, or tied by the ledger to one it is not on)",
             "every verified item has exactly one commissioning event at the receiver",
             "every EPC at the receiver names a code of the ledger",
             "every uplink event exactly once at the receiver", "every verified item is packed",
             "PRAGMA integrity_check ok on the ledger and the receiver's store")


def q(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """The ledger as another process sees it (committed rows only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


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
    raw["security"]["operator_pin_hash"] = pins.hash_pin(PIN, n=2**14)
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

        # the box being built: set aside (parked), then the next one force-closed short with the PIN
        def on_a_filling_box(*args: str) -> str:
            """Just after a box closes none is being built and the daemon says so: ask again."""
            for _ in range(100):
                code, out = cli(*args, *conf)
                if "no box is being built on the line" not in out:
                    assert code == 0 and "(by the running daemon)" in out, out
                    return out
                time.sleep(0.1)  # the next bottle is a few pitches away
            raise AssertionError(f"never a box being built: {args}")

        out = on_a_filling_box("pack", "park", "--level", "box")
        m = re.search(r"parked box #(\d+): (\d) of 6", out)
        assert m, out
        parked = int(m.group(1))
        held = [str(r[0]) for r in q(ledger, "SELECT c.code FROM pack_build_children k JOIN codes c ON c.id = "
                                             "k.child WHERE k.build = ?", parked)]
        assert len(held) == int(m.group(2)) >= 1
        out = on_a_filling_box("pack", "close", "--level", "box", "--partial", "--reason", "end of shift",
                               "--pin", PIN)
        m = re.search(r"closed box #(\d+) as box (\S+): (\d) of 6 \(partial: end of shift\)", out)
        assert m, out
        short, short_n = m.group(2), int(m.group(3))

        # a crash mid-job, with a box (and a case, a pallet) being built: the running job and its packs
        # are resumed by the next daemon on its own
        def box_begun() -> bool:  # 1-3 of 6 in: the box is still being built when the kill lands
            n = q(ledger, "SELECT COUNT(*) FROM pack_build_children k JOIN pack_builds b ON b.id = k.build "
                          "WHERE b.state = 'open' AND b.level = 'box'")[0][0]
            return 1 <= int(n) <= 3  # type: ignore[call-overload]

        assert wait_for(box_begun, 60, 0.01)
        lives[-1].kill("sigkill while running")
        building = dict(q(ledger, "SELECT b.id, b.level FROM pack_builds b WHERE b.state = 'open'"))
        assert "box" in building.values(), building
        count = printed()
        spawn()
        assert wait_for(lambda: printed() > count + 30, 120), "the job did not resume after the kill"
        out = run("pack", "resume", held[0])
        assert f"resumed box #{parked}" in out, out
        aside = re.search(r"#(\d+) set aside", out)  # the box being built when the parked one came back
        assert wait_for(lambda: printed() > count + 60, 120), "the line did not run on after the resume"
        if aside:  # the box set aside by the resume: the operator closes it short
            out = run("pack", "close", f"#{aside.group(1)}", "--partial", "--reason", "end of lot", "--pin", PIN)
            assert "partial: end of lot" in out, out

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
        audited = conn.execute("SELECT os_user, action FROM audit WHERE action LIKE 'job.%' OR action LIKE 'pack.%' "
                               "ORDER BY id").fetchall()
        builds = {int(r[0]): (str(r[1]), str(r[2]), r[3], int(r[4])) for r in conn.execute(
            "SELECT b.id, b.level, b.state, b.reason, (SELECT COUNT(*) FROM pack_build_children k WHERE "
            "k.build = b.id AND k.added_at >= ?) FROM pack_builds b", (lives[1].life.spawned_at,))}
        short_pack = conn.execute("SELECT p.partial_reason, p.state, (SELECT COUNT(*) FROM pack_links l WHERE "
                                  "l.parent = p.code) FROM packs p JOIN codes c ON c.id = p.code WHERE c.code = ?",
                                  (short,)).fetchone()
        marks = ",".join("?" * len(held))
        resumed = conn.execute("SELECT COUNT(*) FROM pack_links l JOIN pack_builds b ON b.parent = l.parent "
                               f"JOIN codes c ON c.id = l.child WHERE b.id = ? AND c.code IN ({marks})",
                               (parked, *held)).fetchone()[0]
    finally:
        conn.close()
    assert job_state == "finished" and limbo == 0
    # the packs: the short box as the operator closed it; the parked box resumed with what it held; every
    # pack being built when the daemon was killed went on after the restart (a box takes a child every
    # item, a case every box), and the job's end closed it
    assert short_pack == ("end of shift", "closed", short_n)
    assert builds[parked][1] == "closed" and resumed == len(held)
    for build, level in building.items():
        _lvl, state, _reason, added_after = builds[build]
        assert state == "closed", (build, level, builds[build])
        if level in ("box", "case"):
            assert added_after > 0, f"the {level} being built at the kill (#{build}) took nothing after the restart"
    assert not [b for b, (_l, st, _r, _n) in builds.items() if st in ("open", "parked")]
    me = pwd.getpwuid(os.getuid()).pw_name
    assert [a for _u, a in audited if a.startswith("job.")] == [
        "job.create", "job.start", "job.stop", "job.start", "job.pause", "job.start", "job.finish"]
    assert {u for u, _a in audited} == {me}
    report = audit(truth_path=tmp_path / "plant" / "plant.jsonl", ledger=ledger,
                   receiver_db=tmp_path / "receiver.db", lives=[a.life for a in lives], job=JOB, target=600,
                   fifo_depth=24, finished=True)
    assert set(MUST_HOLD) <= {c.name for c in report.checks}
    failed = [c for c in report.checks if c.name in MUST_HOLD and not c.ok]
    assert not failed, report.text()
