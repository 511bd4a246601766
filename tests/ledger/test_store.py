"""The ledger store: group commit and durability, atomicity, the append-only journal, allocation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.ledger import CodeState, IllegalTransition, Ledger, LedgerError
from tests.helpers import seed_codes


def _other_view(path: Path, code: str) -> str | None:
    """What a second process would see: only committed data."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT state FROM codes WHERE code = ?", (code,)).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def test_transition_is_durable_only_after_its_group_commits(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=3600)  # never commits by time in this test
    seed_codes(led, ["A", "B"])
    r = led.transition("A", CodeState.ALLOCATED)
    assert not led.is_durable(r)
    assert _other_view(db_path, "A") == "available"
    led.commit()
    assert led.is_durable(r)
    assert _other_view(db_path, "A") == "allocated"


def test_group_commits_when_full(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=3600, group_max=3)
    seed_codes(led, [f"C{i}" for i in range(3)])
    receipts = [led.transition(f"C{i}", CodeState.ALLOCATED) for i in range(3)]
    assert all(led.is_durable(r) for r in receipts)
    assert _other_view(db_path, "C2") == "allocated"


def test_group_commits_when_window_passes(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=0.0)
    seed_codes(led, ["A"])
    r = led.transition("A", CodeState.ALLOCATED)
    assert led.is_durable(r)


def test_uncommitted_group_is_lost_on_close_without_commit_but_committed_is_kept(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=3600)
    seed_codes(led, ["A", "B"])
    led.transition("A", CodeState.ALLOCATED)
    led.commit()
    led.transition("B", CodeState.ALLOCATED)
    led.rollback()  # what a crash does to an uncommitted group
    led.close()
    again = Ledger(db_path)
    assert again.state_of("A") is CodeState.ALLOCATED
    assert again.state_of("B") is CodeState.AVAILABLE
    # the journal holds exactly the committed transition's event
    kinds = [r[0] for r in again.conn.execute("SELECT kind FROM events WHERE code IS NOT NULL")]
    assert kinds == ["code.allocated"]


def test_atomic_block_rolls_back_everything_inside(db_path: Path) -> None:
    led = Ledger(db_path)
    seed_codes(led, ["A", "B"])
    with pytest.raises(RuntimeError), led.atomic():
        led.transition("A", CodeState.ALLOCATED)
        led.transition("B", CodeState.ALLOCATED)
        raise RuntimeError("boom")
    led.commit()
    assert led.state_of("A") is CodeState.AVAILABLE and led.state_of("B") is CodeState.AVAILABLE


def test_journal_is_append_only(db_path: Path) -> None:
    led = Ledger(db_path)
    led.append_event("x", {"a": 1})
    led.commit()
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        led.conn.execute("UPDATE events SET kind = 'y'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        led.conn.execute("DELETE FROM events")


def test_a_code_cannot_be_held_twice(db_path: Path) -> None:
    led = Ledger(db_path)
    seed_codes(led, ["A"])
    with pytest.raises(sqlite3.IntegrityError):
        seed_codes(led, ["A"], package_id="p2")


def test_allocation_is_in_order_exclusive_and_refuses_short(db_path: Path) -> None:
    led = Ledger(db_path)
    seed_codes(led, [f"C{i:02d}" for i in range(10)])
    seed_codes(led, ["B1"], level="box", package_id="p2")
    led.conn.execute("INSERT INTO jobs(name, gtin, product_name, lot, target_qty, level, template, state,"
                     " created_at) VALUES ('j', '09506000134352', 'x', 'L', 5, 'item', 'raw', 'running', 0)")
    first = led.allocate(1, "item", 4)
    second = led.allocate(1, "item", 4)
    assert first == ["C00", "C01", "C02", "C03"] and second == ["C04", "C05", "C06", "C07"]
    with pytest.raises(LedgerError, match="only 2 codes of level 'item'"):
        led.allocate(1, "item", 3)
    assert led.conn.execute("SELECT COUNT(*) FROM codes WHERE state = 'allocated'").fetchone()[0] == 8
    assert led.allocate(1, "box", 1) == ["B1"]


def test_transition_many_is_all_or_nothing(db_path: Path) -> None:
    led = Ledger(db_path)
    seed_codes(led, ["A", "B", "C"])
    led.transition("A", CodeState.ALLOCATED)
    led.transition("B", CodeState.ALLOCATED)
    with pytest.raises(LedgerError, match="'C' is available"):
        led.transition_many(["A", "B", "C"], CodeState.SENT, expect=CodeState.ALLOCATED)
    assert led.state_of("A") is CodeState.ALLOCATED
    led.transition_many(["A", "B"], CodeState.SENT, expect=CodeState.ALLOCATED)
    assert led.state_of("B") is CodeState.SENT


def test_expect_guards_a_surprising_source_state(db_path: Path) -> None:
    led = Ledger(db_path)
    seed_codes(led, ["A"])
    led.transition("A", CodeState.ALLOCATED)
    with pytest.raises(LedgerError, match="expected sent"):
        led.transition("A", CodeState.VOIDED, expect=CodeState.SENT)


def test_audit_records_the_os_user(db_path: Path) -> None:
    led = Ledger(db_path)
    led.audit("job.start", {"job": "J1"}, "ok")
    row = led.conn.execute("SELECT os_user, action, args, result FROM audit").fetchone()
    assert row["os_user"] and row["action"] == "job.start" and '"J1"' in row["args"]


def test_refuses_a_newer_schema_and_a_non_ledger_file(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(LedgerError, match="newer than this lineagent knows"):  # a LedgerError: every caller refuses it
        Ledger(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a usable lineagent ledger"):
        Ledger(junk)


def test_walk_moves_through_legal_hops_with_one_event_or_not_at_all(db_path: Path) -> None:
    led = Ledger(db_path)
    seed_codes(led, ["P", "Q"])
    path = [CodeState.ALLOCATED, CodeState.PRINTED, CodeState.VERIFIED]
    r = led.walk("P", path, expect=CodeState.AVAILABLE, kind="pack.parent")
    assert led.state_of("P") is CodeState.VERIFIED and r.state is CodeState.VERIFIED
    row = led.conn.execute("SELECT kind, payload FROM events WHERE code = 'P'").fetchall()
    assert [(k, p) for k, p in row] == [("pack.parent", '{"from":"available","via":["allocated","printed"]}')]
    with pytest.raises(IllegalTransition):  # allocated -> verified skips printed: refused, nothing kept
        led.walk("Q", [CodeState.ALLOCATED, CodeState.VERIFIED], expect=CodeState.AVAILABLE)
    assert led.state_of("Q") is CodeState.AVAILABLE
    assert led.conn.execute("SELECT COUNT(*) FROM events WHERE code = 'Q'").fetchone()[0] == 0
    led.close()
