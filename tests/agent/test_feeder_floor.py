"""The feeder's confirm floor must not outlive a failed commit: printed codes whose confirmation the
ledger rolled back are confirmed again by the next report, never skipped and later put in doubt.
The commit failure is a real SQLite one (a deferred foreign key checked at COMMIT)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import feeder_store as store
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import CodeState, Ledger, LedgerError
from tests.helpers import seed_codes


def _poison(ledger: Ledger) -> None:
    with ledger.atomic() as conn:
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute("INSERT INTO items(job, code, seq) VALUES (999, 999999, 1)")


def test_a_rolled_back_confirmation_is_confirmed_again(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db", group_window_s=3600)  # groups end only when the test commits
    seed_codes(ledger, [f"C{i}" for i in range(6)])
    job = create_job(ledger, JobSpec(name="j", gtin="09506000134352", product_name="x", lot="L", target_qty=6))
    start_job(ledger, job)
    codes = ledger.allocate(job, "item", 6)
    store.record_sent(ledger, "cij1", job, [(i + 1, c) for i, c in enumerate(codes)])
    ledger.commit()
    assert store.confirm_upto(ledger, "cij1", 3) == 3  # seqs 1-3 printed: the floor moves to 3
    _poison(ledger)
    with pytest.raises(LedgerError):
        ledger.commit()  # the group holding those confirmations is rolled back
    assert [ledger.state_of(c) for c in codes[:3]] == [CodeState.SENT] * 3
    # The coder reports seq 4 printed: 1-3 must be confirmed again, not skipped below a stale floor.
    assert store.confirm_upto(ledger, "cij1", 4) == 4
    ledger.commit()
    assert [ledger.state_of(c) for c in codes[:4]] == [CodeState.PRINTED] * 4
    assert [ledger.state_of(c) for c in codes[4:]] == [CodeState.SENT] * 2
    ledger.close()
