"""WAL checkpoints run on the ledger's own checkpointer thread, never inside a commit of the writer."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

from agent.ledger import Ledger
from tests.helpers import seed_codes


def codes_in_main_file(db: Path, tmp: Path) -> int:
    """Codes readable from the database file alone, without its WAL: only checkpointed pages count."""
    copy = tmp / "main-only.db"
    shutil.copyfile(db, copy)
    with sqlite3.connect(copy) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'codes'").fetchone() is None:
            return 0  # not even the schema was checkpointed
        return int(conn.execute("SELECT COUNT(*) FROM codes").fetchone()[0])


def test_commits_leave_checkpoints_to_the_checkpointer_thread(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = Ledger(db, checkpoint_every_s=3600)  # the checkpointer waits: no checkpoint happens
    assert ledger.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    seed_codes(ledger, [f"C{i:06d}" for i in range(5000)])  # far past SQLite's 1000-page auto threshold
    assert codes_in_main_file(db, tmp_path) == 0  # committed, but only in the WAL
    assert any(t.name.startswith("ledger-checkpoint:") for t in threading.enumerate())
    ledger.close()  # the last checkpoint on close puts everything in the main file
    assert codes_in_main_file(db, tmp_path) == 5000
    assert not (tmp_path / "ledger.db-wal").exists() or (tmp_path / "ledger.db-wal").stat().st_size == 0


def test_the_checkpointer_copies_committed_pages_while_the_writer_stays_open(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = Ledger(db, checkpoint_every_s=0.01)
    seed_codes(ledger, [f"C{i:06d}" for i in range(2000)])
    seen = ledger.checkpoints
    done = threading.Event()
    while not done.wait(0.01):  # bounded by pytest-timeout, not a timing assert
        if ledger.checkpoints >= seen + 2:
            done.set()
    assert codes_in_main_file(db, tmp_path) == 2000
    ledger.close()
