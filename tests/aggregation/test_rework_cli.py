"""`pack take-out`, `pack move` and `pack merge` through the CLI: PIN, audit with the OS user inside the
rework's transaction, exit codes, printed forms of the codes, refusals in English and in Chinese."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from agent import i18n
from agent.aggregation.events import EventContext
from agent.aggregation.model import plan_levels
from agent.aggregation.packs import Aggregator
from agent.ledger import Ledger
from agent.ledger.store import os_user
from tests.aggregation.conftest import SPEC
from tests.aggregation.test_cli import PIN, line, run
from tests.helpers import seed_codes

SSCC_A, SSCC_B = "106141410000000019", "106141410000000026"  # GS1 mod-10 check digits worked out apart


def pallets(tmp_path: Path) -> tuple[list[str], Path]:
    """The CLI floor (boxes B00000..5 packed, C00000 holding B00000..2) plus C00001 holding B00003..5,
    and two partial pallets with SSCC codes: A holds C00000, B holds C00001."""
    cfg, db = line(tmp_path)
    with Ledger(db) as ledger:
        seed_codes(ledger, [SSCC_A, SSCC_B], level="pallet", package_id="sscc")
        agg = Aggregator(ledger, plan_levels(SPEC), EventContext("urn:x:rp", None))
        agg.pack("case", "C00001", ["B00003", "B00004", "B00005"])
        agg.pack("pallet", SSCC_A, ["C00000"], partial_reason="end of shift")
        agg.pack("pallet", SSCC_B, ["C00001"], partial_reason="end of shift")
    return cfg, db


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with Ledger(db) as ledger:
        return [tuple(r) for r in ledger.conn.execute(sql)]


def test_take_out_needs_pin_and_reason_and_leaves_the_box_partial(tmp_path: Path) -> None:
    cfg, db = pallets(tmp_path)
    code, out = run("pack", "take-out", "I00001", "--pin", PIN, *cfg)
    assert code == 2 and "--reason" in out
    code, out = run("pack", "take-out", "I00001", "--reason", "damaged", "--pin", "0000", *cfg)
    assert code == 1 and "wrong operator PIN" in out
    code, out = run("pack", "take-out", "I00001", "--reason", "damaged", *cfg, stdin=PIN + "\n")
    assert code == 0, out
    assert "taken out I00001 from B00000" in out and "box B00000: 1 of 2" in out
    assert "partial: I00001 taken out: damaged" in out
    code, out = run("pack", "show", "B00000", *cfg)
    assert code == 0 and "1 of 2" in out and "I00001 taken out: damaged" in out and "closed" in out
    code, out = run("trace", "I00001", *cfg)
    assert code == 0 and "box B00000" not in out  # free now: in no pack
    code, out = run("pack", "take-out", "I00000", "--reason", "damaged", "--pin", PIN, *cfg)
    assert code == 1 and "'I00000' is the last item in 'B00000'; unlink 'B00000'" in out
    code, out = run("pack", "take-out", "ZZZ", "--reason", "x", "--pin", PIN, *cfg)
    assert code == 4
    user = os_user()
    assert rows(db, "SELECT os_user, action, result FROM audit ORDER BY id") == [
        (user, "pack.take_out", "refused: wrong operator PIN"),
        (user, "pack.take_out", "ok: 1 moved; B00000 closed 1/2"),
        (user, "pack.take_out", "refused: 'I00000' is the last item in 'B00000'; unlink 'B00000' instead of "
                                "emptying it"),
    ]
    args = json.loads(str(rows(db, "SELECT args FROM audit WHERE result LIKE 'ok%'")[0][0]))
    assert args == {"code": "I00001", "reason": "damaged"}  # never the PIN


def test_merge_and_move_take_the_codes_as_printed(tmp_path: Path) -> None:
    cfg, db = pallets(tmp_path)
    # The SSCCs with their AI 00 in brackets, as on the label's human-readable line.
    code, out = run("pack", "merge", f"(00){SSCC_A}", "--into", f"(00){SSCC_B}", "--reason", "合垛", "--pin", PIN,
                    *cfg)
    assert code == 0, out
    assert f"merged {SSCC_A} into {SSCC_B}: 1 moved" in out and f"pallet {SSCC_B}: 2 of 2" in out
    assert f"{SSCC_A} is now unpacked" in out
    children = rows(db, "SELECT k.code FROM pack_links l JOIN codes p ON p.id = l.parent JOIN codes k"
                        f" ON k.id = l.child WHERE p.code = '{SSCC_B}' ORDER BY k.code")
    assert children == [("C00000",), ("C00001",)]
    code, out = run("pack", "move", "C00000", "--to", f"00{SSCC_A}", "--pin", PIN, *cfg)
    assert code == 1 and f"pallet '{SSCC_A}' is unpacked; only a closed or parked pack is reworked" in out
    code, out = run("pack", "move", "B00000", "--to", "C00001", "--pin", PIN, *cfg)
    assert code == 1 and "too_many" in out and "4 box codes, a case holds 3" in out
    code, out = run("pack", "take-out", "B00005", "--reason", "crushed", "--pin", PIN, *cfg)
    assert code == 0 and "case C00001: 2 of 3" in out
    code, out = run("pack", "move", "B00000", "--to", "C00001", "--pin", PIN, *cfg)
    assert code == 0, out
    assert "moved B00000 from C00000 to C00001" in out and "case C00000: 2 of 3" in out
    assert "case C00001: 3 of 3" in out and "partial: B00000 moved to C00001" in out
    kinds = [r[0] for r in rows(db, "SELECT kind FROM events WHERE kind LIKE 'pack.%' ORDER BY seq")]
    assert kinds[-3:] == ["pack.merge", "pack.take_out", "pack.move"]
    results = [r[0] for r in rows(db, "SELECT result FROM audit WHERE action IN ('pack.merge', 'pack.move')"
                                      " ORDER BY id")]
    assert results == [f"ok: 1 moved; {SSCC_A} unpacked 0/2 -> {SSCC_B} 2/2",
                       f"refused: pallet '{SSCC_A}' is unpacked; only a closed or parked pack is reworked",
                       "refused: case 'C00001' rejected: too_many: 4 box codes, a case holds 3",
                       "ok: 1 moved; C00000 closed 2/3 -> C00001 3/3"]


def test_output_and_refusals_in_chinese(tmp_path: Path) -> None:
    cfg, _db = pallets(tmp_path)
    path = Path(cfg[1])
    doc = yaml.safe_load(path.read_text())
    doc["locale"] = "zh_CN"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        code, out = run("pack", "take-out", "I00000", "--reason", "破损", "--pin", PIN, *cfg)
        assert code == 0, out
        assert "已取出 I00000" in out and "B00000" in out
        code, out = run("pack", "take-out", "I00001", "--reason", "破损", "--pin", PIN, *cfg)
        assert code == 1 and "'I00001' 是 'B00000' 中最后一个 item" in out, out
        code, out = run("pack", "merge", SSCC_A, "--into", SSCC_A, "--pin", PIN, *cfg)
        assert code == 1 and "不能合并到它自己" in out, out
    finally:
        i18n.set_language()  # the config's language stays set in this process: give the next test its own
