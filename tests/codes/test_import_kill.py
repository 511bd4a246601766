"""A kill -9 in the middle of a large import leaves the ledger exactly as before."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from agent.ledger import Ledger
from tests.helpers import make_line, seed_codes

CHILD = """
import sys
from pathlib import Path
from agent.codes import importer
from agent.codes.importer import import_file
from agent.config import load_config
from agent.ledger import Ledger

real = importer._chunks
def announcing(codes, levels):
    for n, (done, chunk) in enumerate(real(codes, levels)):
        if n == 3:  # half-way through the inserts, inside the transaction: tell the parent, then wait
            print("MID-IMPORT", flush=True)
            sys.stdin.readline()
        yield done, chunk
importer._chunks = announcing
ledger = Ledger(sys.argv[1])
import_file(ledger, Path(sys.argv[2]), load_config(sys.argv[3]), level="item")
print("DONE", flush=True)
"""


def test_kill_minus_9_mid_import_leaves_the_ledger_unchanged(tmp_path: Path) -> None:
    line = make_line(tmp_path, unsigned=True)
    db = tmp_path / "ledger.db"
    led = Ledger(db)
    seed_codes(led, ["EXISTING1", "EXISTING2"])
    led.close()
    big = tmp_path / "big.txt"
    big.write_text("".join(f"K{i:09d}\n" for i in range(300_000)))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(big), str(line)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "MID-IMPORT"
    # the child holds an open transaction with 150,000 codes inserted; the WAL has them
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM codes").fetchone()[0] == 2
    assert conn.execute("SELECT COUNT(*) FROM packages").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'package.imported'").fetchone()[0] == 0
    conn.close()
    # and the same import then goes through whole
    from agent.codes.importer import import_file
    from agent.config import load_config

    result = import_file(Ledger(db), big, load_config(line), level="item")
    assert result.count == 300_000
