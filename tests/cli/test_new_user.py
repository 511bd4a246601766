"""What a new user hit on the demo line (issue: the daemon an operator can drive), each as it happens.

Expectations are written out here: the exit codes of the README (0 ok, 1 refused, 4 not found), the
files a Chinese line really receives (GBK/GB18030 text, a trailing blank line, trailing spaces), and
names that rich would take for markup.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from agent.cli.main import app
from agent.ledger import CodeState, Ledger
from tests.helpers import make_line

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_version() -> None:
    code, out = run("--version")
    assert code == 0 and out.startswith("lineagent ")


def test_a_mistyped_db_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "ledgre.db"
    for args in (["job", "list"], ["codes", "stats"], ["job", "start", "WO-1"], ["trace", "X"]):
        code, out = run(*args, "--db", str(missing))
        assert code == 4, (args, out)
        assert "no ledger at" in out
    assert not missing.exists()


def test_import_creates_the_ledger_and_a_missing_file_is_not_found(tmp_path: Path) -> None:
    line = make_line(tmp_path, unsigned=True)
    code, out = run("codes", "import", str(tmp_path / "nope.txt"), "--level", "item", "--config", str(line))
    assert code == 4 and "no such file" in out


def _import_txt(tmp_path: Path, data: bytes, *extra: str) -> tuple[int, str, Path]:
    line = make_line(tmp_path, unsigned=True)
    txt = tmp_path / "码包.txt"
    txt.write_bytes(data)
    db = tmp_path / "l.db"
    code, out = run("codes", "import", str(txt), "--level", "item", "--config", str(line), "--db", str(db), *extra)
    return code, out, db


def _codes(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT code FROM codes ORDER BY id")]
    finally:
        conn.close()


def test_txt_with_trailing_blank_lines_and_spaces_imports(tmp_path: Path) -> None:
    code, out, db = _import_txt(tmp_path, b"A001  \r\nA002\t\r\nA003\r\n\r\n\r\n")
    assert code == 0, out
    assert _codes(db) == ["A001", "A002", "A003"]


def test_gbk_txt_is_detected_and_encoding_can_be_given(tmp_path: Path) -> None:
    # Codes with Chinese characters as a GBK tool writes them (not valid UTF-8).
    data = "批次A001\n批次A002\n".encode("gbk")
    code, out, db = _import_txt(tmp_path, data)
    assert code == 0, out
    assert _codes(db) == ["批次A001", "批次A002"]
    code, out = run("codes", "import", str(tmp_path / "码包.txt"), "--level", "item", "--config",
                    str(tmp_path / "line.yaml"), "--db", str(tmp_path / "l2.db"), "--encoding", "klingon")
    assert code == 1 and "unknown encoding 'klingon'" in out


def test_invisible_characters_are_never_part_of_a_code(tmp_path: Path) -> None:
    for bad, name in (("\u200b", "U+200B"), ("\ufeff", "U+FEFF"), ("\u00a0", "U+00A0")):
        sub = tmp_path / name
        sub.mkdir()
        code, out, db = _import_txt(sub, f"A001\nA0{bad}02\n".encode())
        assert code == 1, out
        assert name in out and "line 2" in out
        assert not db.exists() or _codes(db) == []


def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    line = make_line(tmp_path, unsigned=True)
    fifo = tmp_path / "codes.txt"
    os.mkfifo(fifo)
    code, out = run("codes", "import", str(fifo), "--level", "item", "--config", str(line),
                    "--db", str(tmp_path / "l.db"))
    assert code == 1 and "not a regular file" in out


def test_markup_in_a_path_is_printed_as_is(tmp_path: Path) -> None:
    odd = tmp_path / "[bold]x[/]"
    code, out = run("job", "list", "--db", str(odd / "l.db"))
    assert code == 4
    assert "[bold]x[/]" in out


def test_config_check_uses_the_environment_then_etc(tmp_path: Path) -> None:
    line = make_line(tmp_path)
    code, out = run("config", "check", env={"LINEAGENT_CONFIG": str(line)})
    assert code == 0 and "OK" in out
    code, out = run("config", "check", env={"LINEAGENT_CONFIG": str(tmp_path / "missing.yaml")})
    assert code == 4 and "missing.yaml" in out


def test_job_list_counts_items_not_packaging_and_speaks_json(tmp_path: Path) -> None:
    line = make_line(tmp_path, unsigned=True)
    db = tmp_path / "l.db"
    items = tmp_path / "items.txt"
    items.write_text("".join(f"I{i}\n" for i in range(5)))
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("B1\nB2\n")
    cfg = ["--config", str(line), "--db", str(db)]
    assert run("codes", "import", str(items), "--level", "item", *cfg)[0] == 0
    assert run("codes", "import", str(boxes), "--level", "box", *cfg)[0] == 0
    assert run("job", "create", "WO-1", "--product", "water", "--lot", "L1", "--qty", "5", *cfg)[0] == 0
    ledger = Ledger(db)
    try:
        job = ledger.conn.execute("SELECT id FROM jobs").fetchone()[0]
        for level, n in (("item", 3), ("box", 2)):
            for c in ledger.allocate(job, level, n):
                ledger.transition(c, CodeState.PRINTED)
        ledger.commit()
    finally:
        ledger.close()
    code, out = run("job", "list", "--json", *cfg)
    assert code == 0, out
    (row,) = json.loads(out)
    assert (row["name"], row["good"], row["rejected"], row["target"]) == ("WO-1", 3, 0, 5)
    code, out = run("codes", "stats", "--json", *cfg)
    assert code == 0
    stats = json.loads(out)
    assert stats["available"] == {"item": 2}


def test_a_ledger_from_a_newer_lineagent_is_refused_by_every_command(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    Ledger(db).close()
    conn = sqlite3.connect(db)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute(f"PRAGMA user_version = {version + 3}")
    conn.commit()
    conn.close()
    for args in (["job", "list"], ["status"], ["codes", "stats"], ["trace", "X"], ["sync", "status"]):
        code, out = run(*args, "--db", str(db))
        assert code == 1, (args, out)
        assert "is newer than this lineagent knows" in out and "Traceback" not in out, (args, out)
