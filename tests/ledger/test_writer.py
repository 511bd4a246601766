"""One writer: honest receipts, a failed commit loses its group only, the ledger's own commit timer.

The commit failures here are real SQLite ones: a foreign key checked at COMMIT (deferred) fails the
COMMIT itself, exactly where a full disk or an I/O error would, with the transaction still open.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.ledger import CodeState, GroupState, Ledger, LedgerError, Receipt
from tests.helpers import seed_codes

REPO = Path(__file__).resolve().parents[2]


def _committed_state(path: Path, code: str) -> str:
    """What another process sees: only what is on disk."""
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT state FROM codes WHERE code = ?", (code,)).fetchone()[0])
    finally:
        conn.close()


def _poison(ledger: Ledger) -> None:
    """Join the open group with a write whose foreign key is only checked by COMMIT, and fails there."""
    with ledger.atomic() as conn:
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute("INSERT INTO items(job, code, seq) VALUES (999, 999999, 1)")


def test_a_failed_commit_loses_only_its_group_and_every_receipt_of_it_says_so(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=3600)  # groups end only when asked: the test decides
    seed_codes(led, [f"C{i}" for i in range(6)])
    before = led.transition("C0", CodeState.ALLOCATED)
    led.commit()
    assert before.durable

    receipts: list[Receipt] = []

    def part(code: str) -> None:  # two parts of the agent, each on its own thread, same group
        receipts.append(led.transition(code, CodeState.ALLOCATED))

    threads = [threading.Thread(target=part, args=(c,)) for c in ("C1", "C2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    receipts.append(led.transition_many(["C3", "C4"], CodeState.ALLOCATED, expect=CodeState.AVAILABLE))
    _poison(led)
    with pytest.raises(LedgerError, match="FOREIGN KEY"):
        led.commit()

    assert len(receipts) == 3 and len({r.group for r in receipts}) == 1
    for r in receipts:
        assert r.failed and not r.durable and not led.is_durable(r)
        assert r.commit.state is GroupState.FAILED
        assert r.error is not None and "FOREIGN KEY" in r.error
        assert r.wait(0) is False
    assert before.durable  # the group before is untouched
    for code in ("C1", "C2", "C3", "C4"):  # the failed group is gone, in memory and on disk
        assert led.state_of(code) is CodeState.AVAILABLE
        assert _committed_state(db_path, code) == "available"
    assert _committed_state(db_path, "C0") == "allocated"

    after = led.transition("C5", CodeState.ALLOCATED)  # the next group is a fresh one and commits
    led.commit()
    assert after.durable and after.group != receipts[0].group
    assert all(r.failed for r in receipts)  # and a later commit does not revive the failed one
    assert led.commit_failures == 1
    led.close()


def test_commit_reports_a_loss_the_timer_found_first(db_path: Path) -> None:
    """A part that wrote, then calls commit() after the ledger's timer already ended (and lost) its
    group, is told: commit() returning means every write of the caller is on disk."""
    led = Ledger(db_path, group_window_s=0.05)
    seed_codes(led, ["A", "B"])
    outcome: dict[str, object] = {}
    wrote, go_on = threading.Event(), threading.Event()

    def part() -> None:
        r = led.transition("A", CodeState.ALLOCATED)
        wrote.set()
        go_on.wait()
        outcome["durable"] = r.durable
        try:
            led.commit()
            outcome["commit"] = "returned"
        except LedgerError as exc:
            outcome["commit"] = str(exc)

    t = threading.Thread(target=part)
    t.start()
    wrote.wait()
    _poison(led)  # joins the same group; the ledger's timer then ends it, and the COMMIT fails
    poisoned = led.transition("B", CodeState.ALLOCATED)
    assert poisoned.wait(timeout=60) is False and poisoned.failed
    go_on.set()
    t.join()
    assert outcome["durable"] is False
    assert "FOREIGN KEY" in str(outcome["commit"])
    lost = led.commit_group()  # this thread wrote into it too: told once, then its slate is clean
    assert lost.failed and lost.number == poisoned.group
    led.commit()
    assert led.commit_failures == 1
    led.close()


def test_a_durable_atomic_block_reports_its_failed_commit(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=3600)
    seed_codes(led, ["A"])
    with pytest.raises(LedgerError, match=r"commit of group \d+ failed"), led.atomic(durable=True) as conn:
        led.transition("A", CodeState.ALLOCATED)
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute("INSERT INTO items(job, code, seq) VALUES (999, 999999, 1)")
    assert led.state_of("A") is CodeState.AVAILABLE
    led.close()


def test_a_rolled_back_receipt_never_reads_durable(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=3600)
    seed_codes(led, ["A", "B", "C"])
    lost = led.transition("A", CodeState.ALLOCATED)
    led.rollback()
    assert lost.failed and not led.is_durable(lost) and lost.error == "rolled back by the caller"
    kept = led.transition("B", CodeState.ALLOCATED)
    led.commit()
    led.transition("C", CodeState.ALLOCATED)
    led.commit()
    assert kept.durable
    assert not lost.durable and not led.is_durable(lost)  # two commits later, still lost
    assert led.state_of("A") is CodeState.AVAILABLE
    led.close()


def _second_writer(path: Path, *, wait_s: float) -> subprocess.CompletedProcess[str]:
    """Another process (as the CLI is) writes the ledger; with wait_s=0 it does not wait for the lock."""
    script = (
        "import sys, sqlite3\n"
        f"conn = sqlite3.connect(sys.argv[1], timeout={wait_s}, isolation_level=None)\n"
        "conn.execute(\"INSERT INTO audit(at, os_user, action, args, result) VALUES (0, 'cli', 'x', '{}', 'ok')\")\n"
    )
    return subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_cli_can_write_while_the_daemon_is_idle(db_path: Path) -> None:
    # Held open: while a group is open the daemon holds the write lock (the test is not vacuous).
    led = Ledger(db_path, group_window_s=3600)
    seed_codes(led, ["A", "B"])
    led.transition("A", CodeState.ALLOCATED)
    held = _second_writer(db_path, wait_s=0)
    assert held.returncode != 0 and "locked" in held.stderr
    led.close()

    # The daemon's ledger ends its group on its own timer, with no caller committing: the lock is free.
    led = Ledger(db_path, group_window_s=0.05)
    r = led.transition("B", CodeState.ALLOCATED)
    assert r.wait(timeout=60), r.error  # ended by the writer's timer, not by this thread
    free = _second_writer(db_path, wait_s=0)
    assert free.returncode == 0, free.stderr
    assert not led.conn.in_transaction
    led.close()


def test_a_full_group_ends_before_the_call_that_filled_it_returns(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=3600, group_max=3)
    seed_codes(led, [f"C{i}" for i in range(4)])
    receipts = [led.transition(f"C{i}", CodeState.ALLOCATED) for i in range(3)]
    assert all(r.durable for r in receipts)
    fourth = led.transition("C3", CodeState.ALLOCATED)
    assert not fourth.durable and fourth.commit.state is GroupState.OPEN
    led.close()
    assert fourth.durable  # close() commits the open group


def test_many_threads_one_writer_every_receipt_ends_durable(db_path: Path) -> None:
    led = Ledger(db_path, group_window_s=0.002, group_max=50)
    codes = [f"C{i:04d}" for i in range(800)]
    seed_codes(led, codes)
    receipts: list[Receipt] = []
    errors: list[BaseException] = []

    def part(chunk: list[str]) -> None:
        try:
            for c in chunk:
                receipts.append(led.transition(c, CodeState.ALLOCATED))
                receipts.append(led.transition(c, CodeState.SENT))
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=part, args=(codes[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(r.wait(timeout=60) for r in receipts)
    assert led.conn.execute("SELECT COUNT(*) FROM codes WHERE state = 'sent'").fetchone()[0] == 800
    assert led.conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'code.sent'").fetchone()[0] == 800
    led.close()


def test_commit_inside_an_atomic_block_is_refused(db_path: Path) -> None:
    led = Ledger(db_path)
    seed_codes(led, ["A"])
    with pytest.raises(LedgerError, match="inside an atomic"), led.atomic():
        led.transition("A", CodeState.ALLOCATED)
        led.commit()
    assert led.state_of("A") is CodeState.AVAILABLE
    led.close()
