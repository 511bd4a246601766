"""Schema 8 -> 9: the audit gains the boot clock; rows written before keep NULL there and still count
for the PIN lock-out (by the wall clock), rows written after carry this boot's id."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent import pins
from agent.clock import Stamp, boot_id, stamp
from agent.ledger import Ledger
from agent.ledger.schema import MIGRATIONS, _split


def test_old_audit_rows_survive_and_new_ones_carry_the_boot_clock(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, sql in sorted(MIGRATIONS):
        if number <= 8:
            for statement in _split(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    now = stamp().wall
    for i in range(5):
        conn.execute("INSERT INTO audit(at, os_user, action, args, result) VALUES (?, 'op', 'pack.unlink', '{}', ?)",
                     (now - 60 + i, pins.WRONG))
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] >= 9  # 9 and any after it
        rows = ledger.conn.execute("SELECT at, boot, boot_s FROM audit ORDER BY id").fetchall()
        assert [(r[1], r[2]) for r in rows] == [(None, None)] * 5
        # a minute old by the wall clock: the lock-out holds, about nine minutes to go
        until = pins.locked_until([Stamp(float(r[0]), r[1], r[2]) for r in rows])
        assert until is not None and 500 < until - now < 600
        ledger.audit("job.start", {"job": "WO-1"}, "ok")
        boot, boot_s = ledger.conn.execute("SELECT boot, boot_s FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    assert boot == boot_id() and boot_s > 0
