"""Packs being built (agent/aggregation/builds.py) on a real ledger file: filling, closing into the level
above, what a restart finds, park and resume; and the pack commands on them with no daemon (the CLI on
the ledger). Expectations are written out by hand from the packing spec (a box holds 2, a case 3)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from agent import pins
from agent.aggregation import operations
from agent.aggregation.builds import Builds, BuildState
from agent.aggregation.model import AggregationError, Reason, plan_levels
from agent.cli.main import app
from agent.config.model import PackingSpec
from agent.ledger import Ledger
from tests.aggregation.conftest import Floor, make_floor
from tests.helpers import make_line

PIN = "8642"
SPEC_3X2 = [{"level": "item"}, {"level": "box", "count": 3, "parent_code": "print"},
            {"level": "case", "count": 2, "parent_code": "print"}]


def test_children_fill_a_box_up_to_its_count_and_the_rest_go_into_the_next(floor: Floor) -> None:
    b = Builds(floor.agg)
    box = floor.agg.plan("box")
    one = b.stage(floor.job, box, ["I00000"])
    assert (one.children, one.full, one.rest) == (1, False, [])
    two = b.stage(floor.job, box, ["I00001", "I00002", "I00000"])  # I00000 again: already in, skipped
    assert two.build == one.build and two.taken == ["I00001"] and two.rest == ["I00002"] and two.full
    bad = b.stage(floor.job, box, ["B00005", "NOPE"])  # a box code among items, a code of no package
    assert bad.taken == [] and {v.reason for v in bad.refused} == {Reason.WRONG_LEVEL, Reason.FOREIGN}
    assert b.children(two.build or 0) == ["I00000", "I00001"]

    out = b.close(two.build or 0, "B00000", upper=floor.agg.plan("case"))
    assert out.pack is not None and out.build.state is BuildState.CLOSED and out.build.parent == "B00000"
    assert floor.agg.children_of("B00000") == ["I00000", "I00001"]
    assert out.next is not None and out.next.taken == ["B00000"]  # the box went into the case being built
    with floor.ledger.lock:
        adds = [json.loads(p)["epcis"] for (p,) in floor.ledger.conn.execute(
            "SELECT payload FROM events WHERE kind = 'aggregation.add'")]
    assert len(adds) == 1 and adds[0]["action"] == "ADD"
    # A context built in code names raw codes under RFC 6963's example namespace (agent/epcis/identity.py).
    assert adds[0]["childEPCs"] == ["urn:example:lineagent:code:I00000", "urn:example:lineagent:code:I00001"]
    assert b.open_build(floor.job, "box") is None  # the next child opens a new box
    assert b.stage(floor.job, box, ["I00002"]).build != two.build


def test_a_restart_finds_what_no_build_took_and_never_a_child_taken_before(floor: Floor) -> None:
    b = Builds(floor.agg)
    box, case = floor.agg.plan("box"), floor.agg.plan("case")
    first = b.stage(floor.job, box, ["I00000", "I00001"])
    b.close(first.build or 0, "B00000", upper=case)
    b.stage(floor.job, box, ["I00002"])
    # Every item of the floor is verified: all but the three taken are waiting to be packed, in order.
    assert b.orphans(floor.job, box) == floor.items[3:]
    # Emptied by an operator, B00000's items are loose again, but a build took them once: not again.
    operations.unlink(floor.agg, "B00000")
    assert b.orphans(floor.job, box) == floor.items[3:]
    # A closed box no case took (closed by hand) is waiting for a case; B00000, unpacked, is not.
    floor.agg.pack("box", "B00009", ["I00010", "I00011"], job=floor.job)
    assert b.orphans(floor.job, case) == ["B00009"]


def test_park_sets_the_box_aside_and_resume_swaps_it_back(floor: Floor) -> None:
    b = Builds(floor.agg)
    box = floor.agg.plan("box")
    a = b.stage(floor.job, box, ["I00000"]).build or 0
    assert b.park(a).state is BuildState.PARKED
    c = b.stage(floor.job, box, ["I00001"]).build or 0
    assert c != a
    resumed, set_aside = b.resume(a)
    assert resumed.id == a and resumed.state is BuildState.OPEN
    assert set_aside is not None and set_aside.id == c and set_aside.state is BuildState.PARKED
    assert b.stage(floor.job, box, ["I00002"]).build == a  # the next child goes into the resumed box
    before = [(x.id, x.state, x.children) for x in b.unfinished(floor.job)]
    for move in (lambda: b.resume(a), lambda: b.park(c)):  # a's open; c is parked already
        try:
            move()
        except AggregationError:
            pass
        else:
            raise AssertionError("a move of the wrong state was done")
    assert [(x.id, x.state, x.children) for x in b.unfinished(floor.job)] == before


def cli_line(tmp_path: Path) -> tuple[list[str], Floor]:
    """A config whose boxes (3) get a code from the box pool with no printer, and whose cases (2) get a
    printed label; a floor of verified items in its ledger."""
    path = make_line(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["security"]["operator_pin_hash"] = pins.hash_pin(PIN, n=2**14)
    doc["packing_specs"] = {"3x2": {"levels": SPEC_3X2}}
    (tmp_path / "case.zpl").write_text("^XA^FD{code}^FS^XZ")
    doc["devices"] = {"label_printers": {"zebra": {"type": "zpl", "url": "tcp://127.0.0.1:9",
                                                   "template": "case.zpl"}}}
    doc["stations"] = {"boxer": {"type": "aggregate", "level": "box"},
                       "caser": {"type": "aggregate", "level": "case", "label_printer": "zebra"}}
    path.write_text(yaml.safe_dump(doc))
    floor = make_floor(tmp_path / "ledger.db", plans=plan_levels(PackingSpec.model_validate({"levels": SPEC_3X2})))
    return ["--config", str(path)], floor


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_the_pack_commands_on_a_box_being_built_with_no_daemon(tmp_path: Path) -> None:
    cfg, floor = cli_line(tmp_path)
    box = floor.agg.plan("box")
    build = Builds(floor.agg).stage(floor.job, box, ["I00000", "I00001"]).build
    floor.ledger.close()

    code, out = run("pack", "park", f"#{build}", *cfg)
    assert code == 0 and f"parked box #{build}: 2 of 3" in out and "daemon" not in out, out
    code, out = run("pack", "park", "--level", "box", *cfg)
    assert code == 1 and "--level names the pack being built on a running line, and no daemon answers" in out
    code, out = run("pack", "show", "I00001", *cfg)
    assert code == 0 and f"box #{build} being built" in out and "I00000, I00001" in out, out
    code, out = run("pack", "resume", "I00001", *cfg)
    assert code == 0 and f"resumed box #{build}: 2 of 3" in out, out
    code, out = run("pack", "close", f"#{build}", *cfg)
    assert code == 1 and f"box #{build} holds 2 of 3; closing it short needs --partial and a reason" in out
    code, out = run("pack", "close", f"#{build}", "--partial", "--reason", "end of lot", "--pin", PIN, *cfg)
    assert code == 0 and f"closed box #{build} as box B" in out and "2 of 3 (partial: end of lot)" in out, out
    parent = out.split(" as box ")[1].split(":")[0]

    with Ledger(tmp_path / "ledger.db") as ledger:
        b = Builds(floor.agg.__class__(ledger, floor.agg.plans, floor.agg.ctx))
        assert tuple(ledger.conn.execute("SELECT partial_reason FROM packs p JOIN codes c ON c.id = p.code "
                                         "WHERE c.code = ?", (parent,)).fetchone()) == ("end of lot",)
        case = b.open_build(floor.job, "case")
        assert case is not None and b.children(case.id) == [parent]  # the box went into the case being built
        kids = [r[0] for r in ledger.conn.execute("SELECT k.code FROM pack_links l JOIN codes k ON k.id = l.child "
                                                  "JOIN codes p ON p.id = l.parent WHERE p.code = ?", (parent,))]
        assert sorted(kids) == ["I00000", "I00001"]
        before = ledger.conn.execute("SELECT COUNT(*) FROM packs").fetchone()[0]
    # A case gets a printed label when it closes: that is the running line's work, not the CLI's.
    code, out = run("pack", "close", f"#{case.id}", "--partial", "--reason", "x", "--pin", PIN, *cfg)
    assert code == 1 and "gets a printed label when it closes: close it on the running line" in out, out
    code, out = run("pack", "resume", "NOPE", *cfg)
    assert code == 4 and "'NOPE' is not in this ledger" in out
    with Ledger(tmp_path / "ledger.db") as ledger:
        assert ledger.conn.execute("SELECT COUNT(*) FROM packs").fetchone()[0] == before
        audit = [(a, r.split(":")[0]) for a, r in ledger.conn.execute(
            "SELECT action, result FROM audit WHERE action LIKE 'pack.%' ORDER BY id")]
    assert audit == [("pack.park", "ok"), ("pack.resume", "ok"), ("pack.close", "refused"), ("pack.close", "ok"),
                     ("pack.close", "refused")]
