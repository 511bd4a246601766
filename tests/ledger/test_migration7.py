"""Schema 6 -> 7 on a ledger with codes in every state: ids, states and references survive the rebuild,
the new state is allowed only from printed, and the file refuses every other move into it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.ledger import CodeState, Ledger
from agent.ledger.schema import MIGRATIONS, _split

STATES_6 = ["available", "allocated", "sent", "printed", "verified", "rejected", "in_doubt", "voided", "returned"]


def schema_6(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for number, sql in sorted(MIGRATIONS):
        if number <= 6:
            for statement in _split(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO packages(package_id, issuer, level, count, code_format, body_sha256, source, signed, "
                 "imported_at) VALUES ('p', 'i', 'item', 9, 'raw', 'x', 'txt', 0, 0)")
    conn.execute("INSERT INTO jobs(name, gtin, product_name, lot, target_qty, level, template, state, created_at) "
                 "VALUES ('j', '09506000134352', 'w', 'L', 9, 'item', 'raw', 'running', 0)")
    for i in range(1, len(STATES_6) + 1):
        conn.execute("INSERT INTO codes(id, code, level, package, state, job) VALUES (?, ?, 'item', 1, ?, 1)",
                     (i, f"C{i}", "available"))
    conn.execute("DROP TRIGGER codes_legal_transition")  # seed the states directly, then guard again
    for i, state in enumerate(STATES_6, start=1):
        conn.execute("UPDATE codes SET state = ? WHERE id = ?", (state, i))
    conn.execute("INSERT INTO items(job, code, seq, verdict) VALUES (1, 5, 5, 'good')")
    conn.close()


def test_six_to_seven_keeps_every_code_and_allows_escaped_only_from_printed(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    schema_6(db)
    led = Ledger(db)
    assert led.conn.execute("PRAGMA user_version").fetchone()[0] == max(n for n, _ in MIGRATIONS)  # 7 and any after it
    got = [tuple(r) for r in led.conn.execute("SELECT id, state FROM codes ORDER BY id")]
    assert got == list(enumerate(STATES_6, start=1))
    assert led.conn.execute("SELECT code FROM items").fetchone()[0] == 5
    assert led.conn.execute("SELECT COUNT(*) FROM conveyor_items").fetchone()[0] == 0
    led.transition("C4", CodeState.ESCAPED)  # printed -> escaped
    led.commit()
    led.close()
    raw = sqlite3.connect(db, isolation_level=None)
    for code in ("C1", "C2", "C3", "C5", "C6", "C7", "C8", "C9"):
        with pytest.raises(sqlite3.IntegrityError, match="illegal code transition"):
            raw.execute("UPDATE codes SET state = 'escaped' WHERE code = ?", (code,))
    with pytest.raises(sqlite3.IntegrityError, match="illegal code transition"):
        raw.execute("UPDATE codes SET state = 'rejected' WHERE code = 'C4'")  # escaped is final
    raw.close()
