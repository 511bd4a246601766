"""The operator's pack commands end to end through the CLI: PIN, audit, exit codes, trace, export, scan."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import yaml
from typer.testing import CliRunner

from agent import pins
from agent.aggregation.events import EventContext
from agent.aggregation.model import plan_levels
from agent.aggregation.packs import Aggregator
from agent.aggregation.setup import printer_from_config
from agent.cli.main import app
from agent.config import load_config
from agent.ledger import Ledger
from tests.aggregation.conftest import SPEC, make_floor
from tests.helpers import make_line

runner = CliRunner()
PIN = "4711"
PIN_HASH = pins.hash_pin(PIN)


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def line(tmp_path: Path) -> tuple[list[str], Path]:
    """A config with a 2/3/2 packing spec and an operator PIN, and a floor of packed boxes in its ledger."""
    path = make_line(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["security"]["operator_pin_hash"] = PIN_HASH
    doc["packing_specs"] = {"2x3x2": {"levels": [
        {"level": "item"}, {"level": "box", "count": 2, "parent_code": "preprinted"},
        {"level": "case", "count": 3, "parent_code": "print"}, {"level": "pallet", "count": 2, "parent_code": "mint"},
    ]}}
    path.write_text(yaml.safe_dump(doc))
    floor = make_floor(tmp_path / "ledger.db")
    for i in range(6):
        floor.agg.pack("box", floor.boxes[i], floor.items[2 * i: 2 * i + 2])
    floor.agg.pack("case", "C00000", floor.boxes[:3])
    floor.ledger.close()
    return ["--config", str(path)], tmp_path / "ledger.db"


def audit(db: Path) -> list[tuple[str, str]]:
    with Ledger(db) as ledger:
        return [(r[0], r[1]) for r in ledger.conn.execute("SELECT action, result FROM audit ORDER BY id")]


def test_trace_shows_ancestors_and_descendants(tmp_path: Path) -> None:
    cfg, _ = line(tmp_path)
    code, out = run("trace", "I00001", *cfg)
    assert code == 0
    assert out.index("case C00000") < out.index("box B00000") < out.index("item I00001")
    assert "job J1 lot LOT1" in out and "verified/closed" in out
    code, out = run("trace", "C00000", *cfg)
    assert code == 0 and "10 codes under C00000, 0 above" in out
    code, out = run("trace", "NOPE", *cfg)
    assert code == 4 and "'NOPE' is not in this ledger" in out


def test_export_pallet_json_and_csv(tmp_path: Path) -> None:
    cfg, _ = line(tmp_path)
    code, out = run("export", "pallet", "C00000", "--format", "json", *cfg)
    assert code == 0
    tree = json.loads(out)["hierarchy"]
    assert tree["code"] == "C00000" and [b["code"] for b in tree["children"]] == ["B00000", "B00001", "B00002"]
    code, out = run("export", "pallet", "C00000", "--format", "csv", *cfg)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 10 and rows[1]["parent"] == "C00000" and rows[2]["parent"] == "B00000"
    assert run("export", "pallet", "C00000", "--format", "xml", *cfg)[0] == 2


def test_destructive_operations_need_the_pin_and_are_audited(tmp_path: Path) -> None:
    cfg, db = line(tmp_path)
    code, out = run("pack", "unlink", "C00000", "--pin", "0000", *cfg)
    assert code == 1 and "wrong operator PIN" in out
    code, out = run("pack", "unlink", "B00000", "--pin", PIN, *cfg)
    assert code == 1 and "is inside 'C00000'; unlink that first (top-down)" in out
    code, out = run("pack", "unlink", "C00000", "--recursive", *cfg, stdin=PIN + "\n")
    assert code == 0 and "unlinked C00000: 3 children" in out and "unlinked B00000: 2 children" in out
    assert [a[0] for a in audit(db)] == ["pack.unlink"] * 3
    assert audit(db)[0][1] == "refused: wrong operator PIN"


def test_show_force_close_park_resume_replace(tmp_path: Path) -> None:
    cfg, db = line(tmp_path)
    with Ledger(db) as ledger:
        agg = Aggregator(ledger, plan_levels(SPEC), EventContext("urn:x:rp", None))
        agg.open("case", "C00001")
        agg.add("C00001", ["B00003"])
    assert run("pack", "park", "C00001", *cfg)[0] == 0
    code, out = run("pack", "show", "C00001", "--db", str(db))
    assert code == 0 and "parked" in out and "1 of 3" in out and "B00003" in out
    code, out = run("pack", "close", "C00001", *cfg)
    assert code == 1 and "too_few" in out and "1 box codes, a case holds 3" in out
    code, out = run("pack", "close", "C00001", "--partial", *cfg)
    assert code == 2 and "--partial needs --reason" in out
    code, out = run("pack", "close", "C00001", "--partial", "--reason", "end of shift", "--pin", PIN, *cfg)
    assert code == 0 and "closed C00001 (partial: end of shift)" in out
    code, out = run("pack", "replace", "C00001", "C00005", "--pin", PIN, *cfg)
    assert code == 0
    code, out = run("pack", "show", "C00005", *cfg)
    assert "end of shift" in out and "B00003" in out
    code, out = run("pack", "show", "I00000", *cfg)
    assert code == 4 and "is not a pack" in out


def test_manual_scan_mode_packs_and_shows_rejections(tmp_path: Path) -> None:
    cfg, _ = line(tmp_path)
    scans = "I00012\nI00013\nB00010\nI00014\nI00000\nB00011\nI00015\nCANCEL\n"
    code, out = run("scan", "box", "--job", "J1", *cfg, stdin=scans)
    assert code == 1
    assert "packed box B00010 with 2 item" in out
    assert "REJECTED box 'B00011' rejected: already_packed 'I00000'" in out
    assert "1 packed, 1 rejected" in out


def test_label_printer_config_checks_and_resolves_its_template(tmp_path: Path) -> None:
    path = make_line(tmp_path)
    doc = yaml.safe_load(path.read_text())
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "case.zpl").write_text("^XA^FO10,10^FH^FD{code}^FS^XZ\n")
    doc["devices"] = {"label_printers": {"case1": {"type": "zpl", "url": "tcp://127.0.0.1:9100",
                                                   "template": "labels/case.zpl"}}}
    path.write_text(yaml.safe_dump(doc))
    code, out = run("config", "check", str(path))
    assert code == 0, out
    printer = printer_from_config(load_config(path), "case1")
    assert printer.settings.template == tmp_path / "labels" / "case.zpl"
    assert "{code}" in printer.template
    doc["devices"]["label_printers"]["case1"]["template"] = "labels/case.txt"
    path.write_text(yaml.safe_dump(doc))
    code, out = run("config", "check", str(path))
    assert code == 1 and "a label template is a .zpl file" in out


def test_resume_and_decommission_through_the_cli(tmp_path: Path) -> None:
    cfg, db = line(tmp_path)
    with Ledger(db) as ledger:
        Aggregator(ledger, plan_levels(SPEC), EventContext("urn:x:rp", None)).open("case", "C00002")
    assert run("pack", "park", "C00002", *cfg)[0] == 0
    code, out = run("pack", "resume", "C00002", *cfg)
    assert code == 0 and "resumed C00002" in out
    code, out = run("pack", "resume", "C00002", *cfg)
    assert code == 1 and "case 'C00002' is open; resume needs it parked" in out
    code, out = run("pack", "decommission", "C00000", "--pin", PIN, *cfg)
    assert code == 1 and "holds 9 codes; decommission it with --recursive" in out
    code, out = run("pack", "decommission", "C00000", "--recursive", "--pin", PIN, *cfg)
    assert code == 0 and "decommissioned C00000: 10 codes" in out
    code, out = run("trace", "I00000", *cfg)
    assert code == 0 and "rejected" in out and "case C00000" not in out
    results = [r for a, r in audit(db) if a == "pack.decommission"]
    assert results[0].startswith("refused") and results[1] == "ok: 10"


def test_bare_scan_packs_for_the_running_job_at_the_first_parent_level(tmp_path: Path) -> None:
    cfg, _ = line(tmp_path)
    code, out = run("scan", *cfg, stdin="I00012\n")
    if "0 jobs are running" in out:  # the fixture leaves J1 created, not started
        assert code == 2
        assert run("job", "start", "J1", *cfg)[0] == 0
    code, out = run("scan", *cfg, stdin="I00012\nI00013\nB00010\n")
    assert code == 0, out
    assert "job J1: scan" in out and "packed box B00010 with 2 item" in out


def test_operator_pins_are_slow_hashes_locked_out_after_wrong_ones_and_never_stored(tmp_path: Path) -> None:
    cfg, db = line(tmp_path)
    for _ in range(5):
        code, out = run("pack", "unlink", "B00001", "--pin", "wrong-9753", *cfg)
        assert code == 1 and "wrong operator PIN" in out
    code, out = run("pack", "unlink", "B00001", "--pin", PIN, *cfg)  # the right PIN, but locked out
    assert code == 1 and "locked until" in out, out
    conn = sqlite3.connect(db)
    try:
        text = "\n".join(str(r) for r in conn.execute("SELECT * FROM audit"))
        journal = "\n".join(str(r) for r in conn.execute("SELECT payload FROM events"))
    finally:
        conn.close()
    assert "refused: locked out after wrong PINs" in text
    for secret in (PIN, "wrong-9753"):
        assert f"'{secret}'" not in text and f'"{secret}"' not in text and secret not in journal
    stored = PIN_HASH.split("$")
    assert stored[0] == "scrypt" and int(stored[1]) >= 2**14 and PIN not in PIN_HASH


def test_a_bare_sha256_pin_is_refused_by_config_check(tmp_path: Path) -> None:
    path = make_line(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["security"]["operator_pin_sha256"] = "03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4"
    path.write_text(yaml.safe_dump(doc))
    code, out = run("config", "check", str(path))
    assert code == 1 and "security.operator_pin_sha256" in out and "pin-hash" in out


def test_pin_hash_command_makes_a_hash_that_verifies(tmp_path: Path) -> None:
    code, out = run("keys", "pin-hash", "--pin", "246810")
    assert code == 0
    stored = out.split("operator_pin_hash:")[1].strip().strip('"')
    assert pins.verify_pin(stored, "246810") and not pins.verify_pin(stored, "246811")
    code, out = run("keys", "pin-hash", "--pin", "123")
    assert code == 2 and "at least 6" in out
