"""The operator's path through the CLI: keys, a package, import, stock, a job; exit codes scripts use."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agent.cli.main import app
from tests.helpers import make_line

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_package_import_stats_and_job(tmp_path: Path) -> None:
    line = make_line(tmp_path)
    cfg = ["--config", str(line)]
    pkg = tmp_path / "items.lapkg"
    code, out = run("codes", "make-package", "--level", "item", "--count", "20", "--key",
                    str(tmp_path / "keys/cloud/private.pem"), "--out", str(pkg),
                    "--encrypt-to", str(tmp_path / "keys/line/public.pem"), "--prefix", "X", "--start", "1")
    assert code == 0 and "20 item codes, signed, encrypted" in out
    code, out = run("codes", "import", str(pkg), *cfg)
    assert code == 0 and "imported 20 codes (20 item)" in out
    code, out = run("codes", "import", str(pkg), *cfg)
    assert code == 0 and "already imported" in out
    code, out = run("codes", "stats", *cfg, "--check")
    assert code == 0 and "available" in out and "20" in out
    code, out = run("job", "create", "WO-1", "--product", "water", "--lot", "L1", "--qty", "5",
                    "--expiry", "2027-01-31", *cfg)
    assert code == 0 and "09506000134352" in out
    assert run("job", "start", "WO-1", *cfg)[0] == 0
    code, out = run("job", "finish", "WO-1", *cfg)
    assert code == 0 and "finished" in out
    code, out = run("job", "list", *cfg)
    assert code == 0 and "WO-1" in out and "finished" in out


def test_refusals_exit_1_with_the_reason(tmp_path: Path) -> None:
    line = make_line(tmp_path)
    cfg = ["--config", str(line)]
    txt = tmp_path / "codes.txt"
    txt.write_text("A\nB\n")
    code, out = run("codes", "import", str(txt), "--level", "item", *cfg)
    assert code == 1 and "allow_unsigned_imports is false" in out
    code, out = run("job", "create", "W", "--gtin", "09506000134353", "--product-name", "x", "--lot", "L",
                    "--qty", "1", *cfg)
    assert code == 1 and "check digit" in out
    code, out = run("job", "start", "nope", *cfg)
    assert code == 4 and "no job 'nope'" in out  # not found: exit 4, as the README says
    code, out = run("codes", "stats", *cfg, "--check")
    assert code == 1 and "low stock" in out


def test_config_check_exit_codes(tmp_path: Path) -> None:
    line = make_line(tmp_path)
    code, out = run("config", "check", str(line))
    assert code == 0 and "OK" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(line.read_text().replace("storage:", "storag:"))
    code, out = run("config", "check", str(bad))
    assert code == 1 and "bad.yaml:3: storag: unknown key" in out


def test_keys_generate_refuses_overwrite(tmp_path: Path) -> None:
    assert run("keys", "generate", "--out", str(tmp_path / "k"))[0] == 0
    code, out = run("keys", "generate", "--out", str(tmp_path / "k"))
    assert code == 1 and "refusing to overwrite" in out
