"""A fault run: the plant in its own process, the agent started, SIGKILLed at random moments and started
again N times, the broker killed, a proxy between agent and broker that drops, stalls and reorders; the
job run to its end; then the audit (tests/faults/audit.py) from outside the agent.

Why processes and not the runtime in the test's own loop: what must survive is a real kill -9, with the
coder's FIFO, the PLC's conveyor and the camera's trigger count going on meanwhile, as on a line.

Kill moments: a share of the kills hit the agent while it starts (a random moment in its first 1.5 s);
the others wait until the line runs again on this life's codes (an item printed with a code this life
sent), then kill after a random 0.3-2.5 s. A life that does not run the line within `resume_timeout_s`
is noted and killed anyway. The restart is immediate, as systemd's Restart= does it.

`python -m tests.faults.harness --kills 20 --dir /tmp/run` runs one outside pytest and prints the report.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from agent.demo import prepare
from agent.line.broker import Broker
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from tests.faults.audit import STARTUP_KILL, Report, audit
from tests.faults.processes import AgentProcess, Life, PlantProcess, cli
from tests.faults.proxy import ChaosProxy

JOB = "WO-FAULT"


@dataclass(frozen=True)
class RunSpec:
    kills: int = 10
    target: int = 300
    rate: float = 1200.0
    seed: int = 1
    broker_kills: int = 2
    proxy_faults: bool = True
    startup_kill_share: float = 0.3
    watchdog_s: float = 3.0
    resume_timeout_s: float = 20.0
    give_up_after: int = 3  # lives in a row that never ran the line: the rest of the kills are pointless
    stuck_after_s: float = 30.0  # last life: no item past the head for this long and not done: stuck
    finish_timeout_s: float = 600.0
    drain_timeout_s: float = 90.0


class TruthTail:
    """Reads the plant's record as it grows: which items were printed with which code, the belt state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.received: list[tuple[str, float]] = []  # (text, time the plant saw the coder accept it)
        self.items = 0
        self.last_item_at = time.monotonic()
        self.belt_running = False
        self.printed_from: dict[str, int] = {}  # text -> seq, for items printed
        self._partial = b""

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            r = json.loads(line)
            if r["k"] == "recv":
                self.received.append((r["text"], r["at"]))
            elif r["k"] == "item":
                self.items += 1
                self.last_item_at = time.monotonic()
                if r["text"] is not None:
                    self.printed_from[r["text"]] = r["seq"]
            elif r["k"] == "belt":
                self.belt_running = r["running"]

    def printed_since(self, after: float) -> bool:
        """An item was printed with a code the coder accepted after `after` (time.time())."""
        for text, at in reversed(self.received):  # newest first: only this life's records are looked at
            if at <= after:
                return False
            if text in self.printed_from:
                return True
        return False


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def job_progress(ledger: Path) -> tuple[int, int, str]:
    """(codes on products, codes sent and unconfirmed, job state), read-only. On products as the agent
    counts towards the target: printed, verified, rejected, and voided codes judged on an item (a reject
    whose print no read proved: the item was made)."""
    conn = _ro(ledger)
    try:
        job = conn.execute("SELECT id, level, state FROM jobs WHERE name = ?", (JOB,)).fetchone()
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM codes WHERE job = ? AND level = ? GROUP BY state",
                                   (job[0], job[1])).fetchall())
        judged_void = conn.execute("SELECT COUNT(*) FROM codes c WHERE c.job = ? AND c.level = ? AND "
                                   "c.state = 'voided' AND EXISTS (SELECT 1 FROM items i WHERE i.code = c.id)",
                                   (job[0], job[1])).fetchone()[0]
    finally:
        conn.close()
    done = sum(counts.get(s, 0) for s in ("printed", "verified", "rejected")) + judged_void
    return done, counts.get("sent", 0), job[2]


def drained(ledger: Path, receiver_db: Path) -> bool:
    conn, rconn = _ro(ledger), _ro(receiver_db)
    try:
        produced = conn.execute("SELECT COUNT(*) FROM events WHERE uplink = 1").fetchone()[0]
        stored = rconn.execute("SELECT COUNT(*) FROM epcis_events").fetchone()[0]
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()
        rconn.close()
    return bool(produced == stored)


def wait_for(cond: Any, limit_s: float, step_s: float = 0.05) -> bool:
    """Poll another process's state until `cond()` or the limit (a hang detector, not a timing test)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step_s)
    return bool(cond())


class Faults:
    """Proxy faults at random moments until stopped, from their own thread."""

    def __init__(self, proxy: ChaosProxy, rng: random.Random) -> None:
        self.proxy = proxy
        self.rng = rng
        self.stop = threading.Event()
        self.done: list[str] = []
        self.thread = threading.Thread(target=self._run, name="proxy-faults", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.rng.uniform(1.0, 3.0)):
            what = self.rng.choice(("drop", "stall", "reorder"))
            if what == "drop":
                self.proxy.drop()
            elif what == "stall":
                self.proxy.stall(self.rng.uniform(0.5, 3.0))
            else:
                self.proxy.reorder(self.rng.randint(1, 4))
            self.done.append(what)


class FaultRun:
    def __init__(self, spec: RunSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.rng = random.Random(spec.seed)
        self.lives: list[Life] = []
        self.broker_kills = 0
        self._timers: list[threading.Timer] = []
        self.notes: list[str] = []
        self.problems: list[str] = []  # what went wrong at the end of the run (the audit fails on any)
        self.sigterm_s: float | None = None

    def run(self) -> Report:
        spec, work = self.spec, self.workdir
        started = time.monotonic()
        with Path("/dev/null").open("w") as sink:
            cfg = prepare(work, spec.target + spec.kills * 60 + 200, Console(file=sink))
        assert cfg.source is not None
        ledger = cfg.resolve(cfg.storage.ledger)
        receiver_db = work / "receiver.db"
        broker = Broker(work / "broker")
        broker.start()
        receiver = Receiver(broker.url, SqliteStore(receiver_db), client_id=f"fault-receiver-{broker.port}")
        receiver.start()
        proxy = ChaosProxy(broker.port)
        proxy.start()
        raw = yaml.safe_load(cfg.source.read_text())
        raw["mqtt"]["broker"] = proxy.url
        cfg.source.write_text(yaml.safe_dump(raw, sort_keys=False))
        depth = int(raw["stations"]["printer"]["feed"]["target_depth"])
        plant = PlantProcess(cfg.source, work / "plant", rate=spec.rate, seed=spec.seed, watchdog_s=spec.watchdog_s)
        faults = Faults(proxy, random.Random(spec.seed + 1))
        finished = False
        agent: AgentProcess | None = None
        try:
            if not receiver.ready.wait(30):
                raise RuntimeError("the reference receiver did not subscribe")
            live = Path(plant.wait_ready()["live_config"])
            tail = TruthTail(work / "plant" / "plant.jsonl")
            code, out = cli("job", "create", JOB, "--product", "water500", "--lot", "LF", "--qty", str(spec.target),
                            "--packing-spec", "6x4x40", "--config", str(live))
            assert code == 0, out
            agent = self._spawn(live)
            if not wait_for(lambda: self._daemon_up(ledger, agent), 120):
                raise RuntimeError(f"the agent did not come up: {agent.log_path.read_text()[-3000:]}")
            code, out = cli("job", "start", JOB, "--config", str(live))
            assert code == 0, out
            if spec.proxy_faults:
                faults.thread.start()
            half = range(1, max(2, spec.kills // 2 + 1))  # early: a run that stops killing still has them
            broker_lives = set(self.rng.sample(half, min(spec.broker_kills, len(half))))
            for k in range(1, spec.kills + 1):
                if k in broker_lives:
                    self._kill_broker_later(broker, self.rng.uniform(0.0, 2.0))
                self._live_then_kill(agent, tail)
                agent = self._spawn(live)
                if self._never_ran_in_a_row() >= spec.give_up_after:
                    self.notes.append(f"stopped killing after {k} of {spec.kills} kills: {spec.give_up_after} "
                                      "lives in a row did not run the line")
                    break
            for _ in range(spec.broker_kills - len(self._timers)):  # the ones a short or stuck run did not reach
                self._kill_broker_later(broker, self.rng.uniform(0.0, 2.0))
            finished = self._until_done(agent, tail, ledger)
            faults.stop.set()
            for timer in self._timers:
                timer.join()
            if broker.proc is None:
                broker.start()
            code, out = cli("job", "finish", JOB, "--config", str(live))
            if code != 0:
                self.problems.append(f"job finish refused ({code}): {out.strip()[-300:]}")
            if not wait_for(lambda: drained(ledger, receiver_db), spec.drain_timeout_s, 0.2):
                self.problems.append(f"the outbox was not drained within {spec.drain_timeout_s:g} s")
            term = time.monotonic()
            exit_code = agent.terminate()
            self.sigterm_s = round(time.monotonic() - term, 1)
            if exit_code != 0:
                self.problems.append(f"the last agent exited {exit_code} on SIGTERM ({agent.life.end})")
        finally:
            faults.stop.set()
            if agent is not None and agent.alive():
                agent.terminate()
            plant_out = plant.stop()
            receiver.stop()
            receiver.store.close()
            broker.kill()
            proxy.close()
        return audit(truth_path=work / "plant" / "plant.jsonl", ledger=ledger, receiver_db=receiver_db,
                     lives=self.lives, job=JOB, target=spec.target, fifo_depth=depth, finished=finished,
                     problems=self.problems,
                     extra={"SIGTERM to exit s": self.sigterm_s, "broker kills": self.broker_kills,
                            "proxy faults": dict(_count(faults.done)),
                            "proxy": asdict(proxy.stats), "run time s": round(time.monotonic() - started),
                            "notes": self.notes,
                            "plant": [ln for ln in plant_out.splitlines() if "plant stopped" in ln]})

    # ---- the agent's lives ----------------------------------------------------------------------

    def _spawn(self, live: Path) -> AgentProcess:
        n = len(self.lives) + 1
        agent = AgentProcess(live, self.workdir / f"agent-{n:03d}.log", n)
        self.lives.append(agent.life)
        return agent

    @staticmethod
    def _daemon_up(ledger: Path, agent: AgentProcess) -> bool:
        try:
            st = json.loads(ledger.with_name(ledger.name + ".status.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(st.get("pid") == agent.proc.pid and time.time() - st.get("beat_at", 0) < 5)

    def _live_then_kill(self, agent: AgentProcess, tail: TruthTail) -> None:
        spec, life = self.spec, agent.life
        mark = self._mark(life)
        if self.rng.random() < spec.startup_kill_share:
            time.sleep(self.rng.uniform(0.0, 1.5))
            tail.poll()
            self._resumed(agent, tail, mark)
            agent.kill(STARTUP_KILL)
            return

        def running() -> bool:
            tail.poll()
            return self._resumed(agent, tail, mark) or not agent.alive()

        if not wait_for(running, spec.resume_timeout_s):
            life.notes.append(f"did not run the line within {spec.resume_timeout_s:g} s")
        if not agent.alive():
            life.notes.append(f"exited by itself with {agent.proc.returncode}")
        time.sleep(self.rng.uniform(0.3, 2.5))
        tail.poll()
        self._resumed(agent, tail, mark)
        agent.kill("sigkill while running")

    def _never_ran_in_a_row(self) -> int:
        """Ended lives, newest first, that had the chance to run the line and did not (start-up kills
        neither count nor break the streak)."""
        n = 0
        for life in reversed(self.lives[:-1]):
            if life.end == STARTUP_KILL:
                continue
            if life.resumed_s is not None:
                break
            n += 1
        return n

    def _mark(self, life: Life) -> float:
        """Records the coder accepted after this are this life's: the plant logs an accepted record within
        one clock tick (a pitch, 50 ms at 1,200/min), and the last life ended (killed) before this one."""
        prev = self.lives[life.number - 2] if life.number > 1 else None
        return (prev.ended_at or life.spawned_at) + 0.2 if prev is not None else life.spawned_at

    @staticmethod
    def _resumed(agent: AgentProcess, tail: TruthTail, mark: float) -> bool:
        if agent.life.resumed_s is None and tail.printed_since(mark):
            agent.life.resumed_s = time.time() - agent.life.spawned_at
        return agent.life.resumed_s is not None

    def _until_done(self, agent: AgentProcess, tail: TruthTail, ledger: Path) -> bool:
        """The last life: until the job's target is on products, nothing is left in the coder and the
        belt has stopped; False when the line is stuck, the agent died or the time is up."""
        spec = self.spec
        deadline = time.monotonic() + spec.finish_timeout_s
        tail.poll()
        tail.last_item_at = time.monotonic()  # "stuck" counts from this life's start
        mark = self._mark(agent.life)
        while time.monotonic() < deadline:
            tail.poll()
            self._resumed(agent, tail, mark)
            done, sent, _state = job_progress(ledger)
            if done >= spec.target and sent == 0 and not tail.belt_running:
                if agent.life.resumed_s is None and not tail.printed_since(mark):
                    agent.life.nothing_left = True  # the last kill came after the last code was on a product
                return True
            if not agent.alive():
                agent.life.notes.append(f"exited by itself with {agent.proc.returncode}")
                return False
            if time.monotonic() - tail.last_item_at > spec.stuck_after_s:
                agent.life.notes.append(f"line stuck: no item for {spec.stuck_after_s:g} s at {done} of {spec.target}")
                return False
            time.sleep(0.2)
        agent.life.notes.append(f"not done within {spec.finish_timeout_s:g} s")
        return False

    def _kill_broker_later(self, broker: Broker, after_s: float) -> None:
        def kill() -> None:
            broker.kill()
            self.broker_kills += 1
            time.sleep(self.rng.uniform(0.3, 2.0))
            broker.start()

        timer = threading.Timer(after_s, kill)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)


def _count(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--target", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1200.0, help="products per minute")
    parser.add_argument("--watchdog", type=float, default=3.0, help="the PLC's heartbeat watchdog, seconds")
    parser.add_argument("--broker-kills", type=int, default=2)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    spec = RunSpec(kills=args.kills, target=args.target or max(300, args.kills * 25), seed=args.seed,
                   rate=args.rate, watchdog_s=args.watchdog, broker_kills=args.broker_kills)
    report = FaultRun(spec, args.dir).run()
    report.save(args.dir / "report.json")
    print(report.text())


if __name__ == "__main__":
    main()
