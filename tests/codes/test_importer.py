"""Imports: every refusal leaves the ledger unchanged and says what and where; re-import is a no-op."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.codes.importer import ImportRefused, import_file
from agent.codes.package import MAGIC, load_public, load_signing_key, make_package
from agent.config import load_config
from agent.ledger import Ledger
from tests.helpers import make_line


def _snapshot(ledger: Ledger) -> tuple[int, int, int]:
    c = ledger.conn
    return (c.execute("SELECT COUNT(*) FROM codes").fetchone()[0],
            c.execute("SELECT COUNT(*) FROM packages").fetchone()[0],
            c.execute("SELECT COUNT(*) FROM events").fetchone()[0])


@pytest.fixture
def line(tmp_path: Path) -> Path:
    return make_line(tmp_path, unsigned=True)


def _package(line: Path, codes: list[str], level: str = "item", *, encrypt: bool = False) -> bytes:
    keys = line.parent / "keys"
    return make_package(codes, level=level, signing_key=load_signing_key(keys / "cloud" / "private.pem"),
                        encrypt_to=load_public(keys / "line" / "public.pem") if encrypt else None)


def _refused(ledger: Ledger, path: Path, line: Path, **kw: str) -> ImportRefused:
    before = _snapshot(ledger)
    with pytest.raises(ImportRefused) as err:
        import_file(ledger, path, load_config(line), **kw)  # type: ignore[arg-type]
    assert _snapshot(ledger) == before, "a refused import changed the ledger"
    return err.value


def test_signed_encrypted_package_imports_once(line: Path, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    p = tmp_path / "a.lapkg"
    p.write_bytes(_package(line, ["A1", "A2", "A3"], encrypt=True))
    cfg = load_config(line)
    first = import_file(ledger, p, cfg)
    assert (first.count, first.source, first.already_imported) == (3, "signed", False)
    again = import_file(ledger, p, cfg)
    assert again.already_imported and _snapshot(ledger)[0] == 3


def test_txt_and_csv_import(line: Path, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    txt = tmp_path / "small.txt"
    txt.write_text("S1\r\nS2\nS3\n")
    assert import_file(ledger, txt, load_config(line), level="item").count == 3
    csv = tmp_path / "mixed.csv"
    csv.write_text("code,level\nB1,box\nC1,case\n")
    res = import_file(ledger, csv, load_config(line))
    assert res.levels == {"box": 1, "case": 1}
    rows = dict(ledger.conn.execute("SELECT code, level FROM codes").fetchall())
    assert rows == {"S1": "item", "S2": "item", "S3": "item", "B1": "box", "C1": "case"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("A1\n\nA3\n", "line 2: empty line"),
        ("A1\nA 2\n", "line 2: code 'A 2' contains whitespace"),
        ("A1\nA\x072\n", "control or an invisible character (U+0007) at column 2"),
        ("A1\nA2\nA1\n", "line 3: duplicate code 'A1' (first on line 1)"),
        ("", "holds no codes"),
        ("X" * 600 + "\n", "more than 512"),
    ],
)
def test_malformed_txt_is_refused_with_line_numbers(line: Path, tmp_path: Path, content: str, expected: str) -> None:
    ledger = Ledger(tmp_path / "l.db")
    p = tmp_path / "bad.txt"
    p.write_text(content)
    assert expected in str(_refused(ledger, p, line, level="item"))


def test_duplicate_against_held_codes_names_the_package(line: Path, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    first = tmp_path / "first.txt"
    first.write_text("A1\nA2\n")
    import_file(ledger, first, load_config(line), level="item")
    second = tmp_path / "second.txt"
    second.write_text("B1\nB2\nA2\n")
    err = _refused(ledger, second, line, level="item")
    assert "line 3: code 'A2' is already held (package file:" in str(err)


def test_wrong_levels_are_refused(line: Path, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    p = tmp_path / "x.txt"
    p.write_text("A1\n")
    assert "level 'pallet' is not in code_sources.levels" in str(_refused(ledger, p, line, level="pallet"))
    assert "needs --level" in str(_refused(ledger, p, line))
    csv = tmp_path / "x.csv"
    csv.write_text("A1,item\nA2,crate\nA3\n")
    text = str(_refused(ledger, csv, line))
    assert "line 2: level 'crate'" in text and "line 3: expected 2 columns" in text
    pkg = tmp_path / "x.lapkg"
    pkg.write_bytes(_package(line, ["P1"], level="pallet"))
    assert "package level 'pallet'" in str(_refused(ledger, pkg, line))


def test_unsigned_files_refused_unless_allowed(tmp_path: Path) -> None:
    line = make_line(tmp_path, unsigned=False)
    ledger = Ledger(tmp_path / "l.db")
    p = tmp_path / "x.txt"
    p.write_text("A1\n")
    assert "allow_unsigned_imports is false" in str(_refused(ledger, p, line, level="item"))


def test_tampered_and_forged_packages_are_refused(line: Path, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    data = _package(line, ["A1", "A2"])
    tampered = tmp_path / "t.lapkg"
    tampered.write_bytes(data.replace(b"A2\n", b"A9\n"))
    assert "body sha256" in str(_refused(ledger, tampered, line))
    head, body = data[len(MAGIC):].split(b"\n", 1)
    header = json.loads(head)
    header["manifest"]["level"] = "box"
    relabelled = tmp_path / "r.lapkg"
    relabelled.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + body)
    assert "signature does not verify" in str(_refused(ledger, relabelled, line))


def test_a_duplicate_inside_a_signed_package_is_refused(line: Path, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    p = tmp_path / "d.lapkg"
    p.write_bytes(_package(line, ["A1", "A2", "A1"]))
    assert "line 3: duplicate code 'A1'" in str(_refused(ledger, p, line))


def test_report_lists_the_first_fifty_and_counts_the_rest(line: Path, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    p = tmp_path / "many.txt"
    p.write_text("\n" * 80 + "A\n")
    err = _refused(ledger, p, line, level="item")
    assert err.total == 80 and len(err.problems) == 50 and "and 30 more" in str(err)
