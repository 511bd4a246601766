"""The ledger file enforces the state table itself (migration 6), and no code writes states around it."""

from __future__ import annotations

import itertools
import re
import sqlite3
from pathlib import Path

import pytest

from agent.ledger import CodeState, Ledger
from agent.ledger.schema import MIGRATIONS, migrate
from agent.ledger.states import legal_pairs
from tests.helpers import seed_codes

REPO = Path(__file__).resolve().parents[2]


def test_the_trigger_allows_exactly_the_pairs_of_the_table(db_path: Path) -> None:
    led = Ledger(db_path)
    rows = led.conn.execute("SELECT source, target FROM code_transitions").fetchall()
    assert {(r[0], r[1]) for r in rows} == {(s.value, t.value) for s, t in legal_pairs()}
    led.close()


def test_the_trigger_table_changes_only_by_migration(db_path: Path) -> None:
    led = Ledger(db_path)
    for sql in ("INSERT INTO code_transitions VALUES ('in_doubt', 'sent')",
                "UPDATE code_transitions SET target = 'sent' WHERE source = 'in_doubt'",
                "DELETE FROM code_transitions"):
        with pytest.raises(sqlite3.IntegrityError, match="only by a schema migration"):
            led.conn.execute(sql)
    led.close()


PAIRS = list(itertools.product(CodeState, CodeState))
WALK = {CodeState.AVAILABLE: [], CodeState.ALLOCATED: ["allocated"], CodeState.SENT: ["allocated", "sent"],
        CodeState.PRINTED: ["allocated", "sent", "printed"],
        CodeState.VERIFIED: ["allocated", "sent", "printed", "verified"],
        CodeState.REJECTED: ["allocated", "sent", "printed", "rejected"],
        CodeState.IN_DOUBT: ["allocated", "sent", "in_doubt"], CodeState.VOIDED: ["voided"],
        CodeState.RETURNED: ["allocated", "returned"],
        CodeState.ESCAPED: ["allocated", "sent", "printed", "escaped"]}


def test_every_raw_update_is_judged_by_the_file(tmp_path: Path) -> None:
    """Around the ledger's API (a second process, a hand-typed sqlite3 session): legal moves pass,
    every other move is refused by the trigger, and a value outside the enum by the CHECK."""
    db = tmp_path / "l.db"
    led = Ledger(db)
    seed_codes(led, [f"R{i}" for i in range(len(PAIRS))])
    led.close()
    raw = sqlite3.connect(db, isolation_level=None)
    legal = {(s.value, t.value) for s, t in legal_pairs()}
    for i, (source, target) in enumerate(PAIRS):
        for step in WALK[source]:
            raw.execute("UPDATE codes SET state = ? WHERE code = ?", (step, f"R{i}"))
        if source is target:
            continue  # not a move: updating other columns of a code stays possible
        if (source.value, target.value) in legal:
            raw.execute("UPDATE codes SET state = ? WHERE code = ?", (target.value, f"R{i}"))
        else:
            with pytest.raises(sqlite3.IntegrityError, match="illegal code transition"):
                raw.execute("UPDATE codes SET state = ? WHERE code = ?", (target.value, f"R{i}"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        raw.execute("INSERT INTO codes(code, level, package, state) VALUES ('X', 'item', 1, 'reused')")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE codes SET state = 'printed ' WHERE code = 'R0'")
    raw.close()


def test_migration_6_keeps_every_code_and_every_reference(tmp_path: Path) -> None:
    """A file made by the code before migration 6, with codes in use, upgrades in place."""
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    old = [(n, sql) for n, sql in MIGRATIONS if n < 6]
    import agent.ledger.schema as schema

    saved = schema.MIGRATIONS
    schema.MIGRATIONS = old
    try:
        assert migrate(conn) == 5
    finally:
        schema.MIGRATIONS = saved
    conn.execute("INSERT INTO packages(package_id, issuer, level, count, code_format, body_sha256, source, signed,"
                 " imported_at) VALUES ('p', 't', 'item', 3, 'raw', '-', 'txt', 0, 0)")
    conn.execute("INSERT INTO jobs(name, gtin, product_name, lot, target_qty, level, template, state, created_at)"
                 " VALUES ('j', '09506000134352', 'x', 'L', 3, 'item', 'raw', 'running', 0)")
    conn.executemany("INSERT INTO codes(id, code, level, package, state, prev_state, job)"
                     " VALUES (?, ?, 'item', 1, ?, ?, 1)",
                     [(7, "A", "printed", "sent"), (8, "B", "in_doubt", "sent"), (9, "C", "available", None)])
    conn.execute("INSERT INTO items(job, code, seq) VALUES (1, 7, 1)")
    conn.execute("INSERT INTO coder_feed(coder, seq, code, job, sent_at) VALUES ('c1', 1, 8, 1, 0)")
    conn.close()

    led = Ledger(db)
    assert led.conn.execute("PRAGMA user_version").fetchone()[0] == max(n for n, _ in MIGRATIONS)
    assert led.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert [tuple(r) for r in led.conn.execute("SELECT id, code, state, prev_state FROM codes ORDER BY id")] == [
        (7, "A", "printed", "sent"), (8, "B", "in_doubt", "sent"), (9, "C", "available", None)]
    assert led.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert led.conn.execute("SELECT c.code FROM items i JOIN codes c ON c.id = i.code").fetchone()[0] == "A"
    indexes = {r[0] for r in led.conn.execute(
        "SELECT name FROM sqlite_master WHERE tbl_name = 'codes' AND type = 'index'")}
    assert {"codes_code", "codes_pool", "codes_job"} <= indexes
    with pytest.raises(sqlite3.IntegrityError, match="illegal code transition"):
        led.conn.execute("UPDATE codes SET state = 'sent' WHERE code = 'B'")
    led.transition("B", CodeState.PRINTED, expect=CodeState.IN_DOUBT)
    led.close()


# ---- no state change bypasses the guarded path ------------------------------------------------

# `UPDATE codes SET ... state = ...` (before its WHERE), or a REPLACE into codes, in any source text:
# string pieces split over lines and concatenations are still one match, since the pattern spans them.
_RAW_STATE_WRITE = re.compile(
    r"UPDATE\s+(?:OR\s+\w+\s+)?[\"'`\[]?codes[\"'`\]]?\s+SET\b(?:(?!WHERE).){0,400}?(?<![\w.])state\s*="
    r"|(?:INSERT\s+OR\s+REPLACE|REPLACE)\s+INTO\s+[\"'`\[]?codes\b",
    re.IGNORECASE | re.DOTALL,
)
# The guarded path itself: the only file allowed to write codes.state.
_GUARDED = {"agent/ledger/store.py"}


def _raw_state_writes(text: str) -> list[str]:
    return [m.group(0) for m in _RAW_STATE_WRITE.finditer(text)]


def test_the_scanner_finds_what_it_must() -> None:
    assert _raw_state_writes('conn.execute("UPDATE codes SET state = \'verified\' WHERE id = ?")')
    assert _raw_state_writes('x = ("UPDATE codes SET job = ?, "\n     "state = ? WHERE id = ?")')
    assert _raw_state_writes("update  codes set updated_at=?, state='sent' where code=?")
    assert _raw_state_writes('"INSERT OR REPLACE INTO codes(code, state) VALUES (?, ?)"')
    assert not _raw_state_writes('"UPDATE codes SET job = ? WHERE state = \'sent\'"')
    assert not _raw_state_writes('"UPDATE packs SET state = \'closed\' WHERE code = ?"')
    assert not _raw_state_writes('"UPDATE codes SET prev_state = NULL WHERE id = ?"')


def test_no_state_change_bypasses_the_guarded_path() -> None:
    """Every product source (bench/ is left out on purpose: its raw-sqlite baselines write their
    own scratch files, not a ledger, to measure what the bare database costs)."""
    offenders = []
    for folder in ("agent", "drivers", "scripts"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".py", ".sql", ".sh") and not (folder == "scripts" and path.is_file()):
                continue
            if not path.is_file():
                continue
            rel = path.relative_to(REPO).as_posix()
            hits = _raw_state_writes(path.read_text(errors="replace"))
            if hits and rel not in _GUARDED:
                offenders += [f"{rel}: {h[:80]!r}" for h in hits]
    assert offenders == [], ("state changes must go through Ledger.transition / transition_many:\n"
                             + "\n".join(offenders))


def test_the_guarded_file_writes_state_only_in_its_guarded_statements() -> None:
    hits = _raw_state_writes((REPO / "agent/ledger/store.py").read_text())
    # transition (guarded by legal sources), transition_many (checked by check_transition first),
    # allocate (from the pool states only).
    assert len(hits) == 3, hits
