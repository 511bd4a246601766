"""`lineagent config check` on coder settings whose text the protocol cannot carry: a config error naming
the file, the line and the key, exit 1 (README, "A tour of the CLI"), never an internal error.

Why: the Videojet settings checked `void_text` and `user_field` with the codec's record checks, which
raise BadRecord; pydantic only turns ValueErrors into validation errors, so the CLI showed "internal
error: BadRecord ..." and exit 5. What each value breaks is from the manuals, written out here:
- WSI (P/N 462115-01 Rev AD) section 3: data characters 20h-7Fh only; 3.6: user field data 1-50
  characters; 3.1/3.5: names 1-30 characters;
- NGPCL (Markem-Imaje) section 4: { } | ~ delimit packets and fields and have no escape.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import make_line

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from agent.cli.main import main; main()"]
VIDEOJET = '    cij1:\n      type: videojet_wsi\n      url: "tcp://127.0.0.1:1"\n      model: "1620"\n'
MARKEM = '    cij1:\n      type: markem_ngpcl\n      url: "tcp://127.0.0.1:1"\n'


def config_check(tmp_path: Path, coder: str) -> tuple[Path, int, str]:
    line = make_line(tmp_path)
    line.write_text(line.read_text() + "devices:\n  coders:\n" + coder)
    proc = subprocess.run([*CLI, "config", "check", str(line)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "LANG": "C"}, timeout=120, check=False)
    return line, proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(("coder", "key", "why"), [
    (VIDEOJET + '      void_text: "VOID\\x01"\n', "void_text", "control byte 0x01 (section 3: 20h-7Fh only)"),
    (VIDEOJET + '      void_text: "VOÏD"\n', "void_text", "is not ASCII"),
    (VIDEOJET + '      user_field: ""\n', "user_field", "must be 1-30 characters"),
    (VIDEOJET + '      user_field: "SÉRIE"\n', "user_field", "is not ASCII"),
    (MARKEM + '      void_text: "{VOID}"\n', "void_text", "NGPCL control characters with no escape"),
], ids=["wsi-void-control-byte", "wsi-void-not-ascii", "wsi-field-empty", "wsi-field-not-ascii", "ngpcl-void-brace"])
def test_a_coder_text_the_protocol_cannot_carry_is_a_config_error_naming_file_line_and_key(
        tmp_path: Path, coder: str, key: str, why: str) -> None:
    line, code, out = config_check(tmp_path, coder)
    number = next(i for i, text in enumerate(line.read_text().splitlines(), 1) if text.strip().startswith(f"{key}:"))
    assert code == 1, out
    assert f"{line}:{number}: devices.coders.cij1.{key}:" in out and why in out
    assert "1 problem(s)" in out
    assert "internal error" not in out and "Traceback" not in out


@pytest.mark.parametrize("coder", [VIDEOJET + '      void_text: "VOID"\n      user_field: "SERIAL"\n',
                                   MARKEM + '      void_text: "VOID"\n'], ids=["wsi", "ngpcl"])
def test_texts_the_protocol_carries_pass(tmp_path: Path, coder: str) -> None:
    _, code, out = config_check(tmp_path, coder)
    assert code == 0, out
