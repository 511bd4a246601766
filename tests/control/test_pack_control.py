"""`lineagent pack park|close --partial|resume` of the pack being built, and `lineagent plc gate-test`, typed
as an operator types them (the CLI in its own process) against the daemon's runtime on a simulated line.
What counts is what the ledger, the reference receiver (the EPCIS events as they arrived over MQTT) and
the PLC simulator's own model show afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import sqlite3
import sys
from pathlib import Path

import yaml
from rich.console import Console

from agent import pins
from agent.config import load_config
from agent.demo import prepare
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import Ledger
from agent.line.runtime import LineRuntime
from agent.line.simulated import SimSettings, SimulatedLine

LINEAGENT = str(Path(sys.executable).parent / "lineagent")
PIN = "2468"


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(LINEAGENT, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, "COLUMNS": "250", "LANG": "C.UTF-8"})
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode()


def q(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """The ledger file as another process sees it (committed rows only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def build_children(db: Path, build: int) -> list[str]:
    return [str(r[0]) for r in q(db, "SELECT c.code FROM pack_build_children k JOIN codes c ON c.id = k.child "
                                     "WHERE k.build = ?", build)]


def links(db: Path, parent: str) -> set[str]:
    return {str(r[0]) for r in q(db, "SELECT k.code FROM pack_links l JOIN codes p ON p.id = l.parent "
                                     "JOIN codes k ON k.id = l.child WHERE p.code = ?", parent)}


def test_operator_parks_closes_and_resumes_the_pack_being_built_and_tests_the_gate(tmp_path: Path) -> None:
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(tmp_path, 500, Console(file=sink))
    assert cfg.source is not None
    raw = yaml.safe_load(cfg.source.read_text())
    raw["security"]["operator_pin_hash"] = pins.hash_pin(PIN, n=2**14)
    cfg.source.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg.source)
    sim = SimulatedLine(cfg, tmp_path, SimSettings(rate_per_min=600, defect_share=0.0))
    live = sim.start()
    assert live.source is not None
    conf = ["--config", str(live.source)]
    db = live.resolve(live.storage.ledger)
    ledger = Ledger(db)
    model = next(iter(sim.plcs.values())).model
    coder = next(iter(sim.coders.values()))
    seen: dict[str, object] = {}
    try:
        job = create_job(ledger, JobSpec(name="WO-1", gtin="09506000134352", product_name="water", lot="L1",
                                         target_qty=500, template="dl", packing_spec="6x4x40"))
        start_job(ledger, job)
        runtime = LineRuntime(live, ledger, overrides=sim.overrides(), drain_s=20)

        def box() -> dict[str, int]:
            pl = runtime.packline
            return pl.snapshot()["box"] if pl is not None else {}

        async def until(cond: object, what: str, limit_s: float = 90) -> None:
            for _ in range(int(limit_s / 0.05)):  # a hang detector, not a timing assertion
                if callable(cond) and cond():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"never: {what}; box {box()}, alarms "
                                 f"{[(a.source, a.key, a.detail) for a in runtime.board.active]}")

        def counts() -> tuple[object, ...]:
            return q(db, "SELECT (SELECT COUNT(*) FROM pack_builds WHERE state = 'parked'),"
                         " (SELECT COUNT(*) FROM packs WHERE partial_reason IS NOT NULL),"
                         " (SELECT COUNT(*) FROM events WHERE kind LIKE 'pack.build_%')")[0]

        async def on_a_filling_box(*args: str) -> tuple[int, str]:
            """A box closes every 6 items; just after, none is being built and the daemon says so (exit 1,
            "no box is being built"): then the operator waits for the next bottle and asks again."""
            for _ in range(20):
                await until(lambda: box().get("open", 0) >= 1, "a box filling")
                code, out = await cli(*args)
                if "no box is being built on the line" not in out:
                    return code, out
            raise AssertionError(f"never a box being built: {args}")

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            try:
                await until(lambda: box().get("closed", 0) >= 1 and box().get("open", 0) >= 1, "a box closed")
                # Refusals: each says why, exits non-zero, and moves nothing.
                before = counts()
                code, out = await cli("pack", "resume", "--level", "box", *conf)
                assert code == 1 and "no parked box of job 'WO-1'" in out, out
                code, out = await cli("pack", "park", "--level", "crate", *conf)
                assert code == 1 and "'crate' is not a pack level being built on this line (known: box, case, " \
                    "pallet)" in out, out
                code, out = await cli("pack", "park", "NOPE-1", *conf)
                assert code == 4 and "'NOPE-1' is not in this ledger" in out, out  # read by the CLI
                code, out = await cli("pack", "close", "--level", "box", "--partial", "--reason", "x", "--pin",
                                      "1357", *conf)
                assert code == 1 and "wrong operator PIN" in out, out
                code, out = await cli("pack", "park", "--level", "box", "NOPE-1", *conf)
                assert code == 2, out
                assert counts() == before

                code, out = await on_a_filling_box("pack", "park", "--level", "box", *conf)
                assert code == 0 and "(by the running daemon)" in out, out
                m = re.search(r"parked box #(\d+): (\d) of 6", out)
                assert m, out
                parked, k = int(m.group(1)), int(m.group(2))
                held = build_children(db, parked)
                assert len(held) == k >= 1
                seen["parked"] = held
                await until(lambda: box().get("build") not in (None, parked) and box().get("open", 0) >= 1,
                            "the next box filling")
                code, out = await on_a_filling_box("pack", "close", "--level", "box", "--partial", "--reason",
                                                   "end of shift", "--pin", PIN, *conf)
                assert code == 0, out
                m = re.search(r"closed box #(\d+) as box (\S+): (\d) of 6 \(partial: end of shift\)", out)
                assert m, out
                seen["short"], seen["short_n"] = m.group(2), int(m.group(3))
                await until(lambda: box().get("open", 0) >= 1, "another box filling")
                code, out = await cli("pack", "resume", held[0], *conf)
                assert code == 0 and f"resumed box #{parked}: {k} of 6" in out, out
                await until(lambda: q(db, "SELECT state FROM pack_builds WHERE id = ?", parked)[0][0] == "closed",
                            "the resumed box filled and closed")
                seen["resumed"] = str(q(db, "SELECT c.code FROM pack_builds b JOIN codes c ON c.id = b.parent "
                                            "WHERE b.id = ?", parked)[0][0])

                # The gate test: refused while the job runs, and while printed items wait for their verdict on
                # the belt (the job paused); once the job is finished it reaches the PLC.
                code, out = await cli("plc", "gate-test", *conf)
                assert code == 1 and "not while job 'WO-1' runs" in out, out
                code, out = await cli("job", "pause", "WO-1", *conf)
                assert code == 0, out
                rejected, confirms = list(model.rejected), model.confirms
                code, out = await cli("plc", "gate-test", *conf)
                assert code == 1 and "printed items of job 'WO-1' wait for their verdict on the belt" in out, out
                assert (model.rejected, model.confirms, model.running) == (rejected, confirms, False)
                code, out = await cli("job", "finish", "WO-1", *conf)
                assert code == 0, out
                printed, removed = len(coder.printed), len(model.rejected)
                code, out = await cli("plc", "gate-test", *conf)
                assert code == 0 and "counted an item leaving through the gate (by the running daemon)" in out, out
                pitch = int(re.search(r"pitch (\d+) fired", out).group(1))  # type: ignore[union-attr]
                # The test pitch is the last the gate removed; any before it were rejects still on their way
                # to the gate when the line stopped; the confirm sensor counted each.
                assert model.rejected[-1] == pitch and pitch not in model.rejected[:removed]
                assert model.confirms - confirms == len(model.rejected) - removed
                assert not model.running  # stopped again after the test
                assert len(coder.printed) == printed  # nothing printed on the test's pitches
            finally:
                stop.set()
                await asyncio.wait_for(task, 120)

        asyncio.run(scenario())
    finally:
        ledger.close()
        sim.stop()

    short, resumed, held = str(seen["short"]), str(seen["resumed"]), list(seen["parked"])  # type: ignore[call-overload]
    # In the ledger: the short box holds what the CLI said, force-closed with the operator's reason; the
    # resumed box holds what was parked in it, filled up to its count.
    row = q(db, "SELECT p.partial_reason, p.state FROM packs p JOIN codes c ON c.id = p.code WHERE c.code = ?", short)
    assert row == [("end of shift", "closed")]
    assert len(links(db, short)) == seen["short_n"]
    inside = links(db, resumed)
    assert set(held) <= inside and len(inside) == 6
    verified = {str(r[0]) for r in q(db, "SELECT code FROM codes WHERE level = 'item' AND state = 'verified'")}
    assert links(db, short) | inside <= verified
    # At the receiver: one AggregationEvent ADD per pack, its children as packed. The EPCs written out by
    # hand from config/line.sim.yaml (EPC TDS 2.x 6.3.1, company prefix 9506000, the GTIN's indicator digit
    # first in the item reference): bottles are GTIN 09506000134352, boxes GTIN 19506000134359.
    rec = sqlite3.connect(tmp_path / "receiver.db")
    try:
        adds = [json.loads(b) for (b,) in rec.execute("SELECT body FROM epcis_events WHERE event_type = "
                                                      "'AggregationEvent'")]
    finally:
        rec.close()
    for parent, children in ((short, links(db, short)), (resumed, inside)):
        got = [e for e in adds if e["parentID"] == f"urn:epc:id:sgtin:9506000.113435.{parent}"]
        assert len(got) == 1 and got[0]["action"] == "ADD", [e["parentID"] for e in adds]
        assert sorted(got[0]["childEPCs"]) == sorted(f"urn:epc:id:sgtin:9506000.013435.{c}" for c in children)
    # Audited with the operator from the socket's peer credentials; the PIN in no record.
    me = pwd.getpwuid(os.getuid()).pw_name
    audit = q(db, "SELECT os_user, action, args, result FROM audit WHERE action LIKE 'pack.%' OR action = 'gate.test' "
                  "ORDER BY id")
    assert {u for u, *_ in audit} == {me}
    done = [(a, str(r)[:3]) for _u, a, _x, r in audit if "is being built on the line" not in str(r)]  # retried
    assert done == [("pack.resume", "ref"), ("pack.park", "ref"), ("pack.close", "ref"),
                    ("pack.park", "ok:"), ("pack.close", "ok:"), ("pack.resume", "ok:"), ("gate.test", "ref"),
                    ("gate.test", "ref"), ("gate.test", "ok:")]
    assert not any(PIN in str(x) or "1357" in str(x) for row in audit for x in row)
