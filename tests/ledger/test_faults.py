"""Resource faults as the ledger meets them: which errors are a full or failing disk, what the writer
tells its listeners, what a caller learns from a lost group, and forgiving losses a stopped run held.

The full ledger is real: `PRAGMA max_page_count` caps the writer connection at the file's size, so the
next write that needs a page fails SQLITE_FULL inside SQLite, as on a full disk."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from agent.jobs import JobError
from agent.ledger import CodeState, Ledger, LedgerError
from agent.ledger.faults import ResourceKind, resource_fault
from tests.helpers import seed_codes

# Result codes from sqlite.org/rescode.html: the primary code is the low byte of an extended one.
SQLITE_BUSY, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL = 5, 8, 10, 11, 13
SQLITE_IOERR_WRITE = 778  # SQLITE_IOERR | (3 << 8)
SQLITE_IOERR_FSYNC = 1034  # SQLITE_IOERR | (4 << 8)
SQLITE_READONLY_DBMOVED = 1032  # SQLITE_READONLY | (4 << 8)
SQLITE_CONSTRAINT_UNIQUE = 2067  # SQLITE_CONSTRAINT | (8 << 8)


def sqlite_error(code: int, text: str = "some error") -> sqlite3.Error:
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorcode = code
    return exc


@pytest.mark.parametrize(("exc", "kind"), [
    (sqlite_error(SQLITE_FULL, "database or disk is full"), ResourceKind.DISK_FULL),
    (sqlite_error(SQLITE_IOERR_WRITE, "disk I/O error"), ResourceKind.IO_ERROR),
    (sqlite_error(SQLITE_IOERR_FSYNC, "disk I/O error"), ResourceKind.IO_ERROR),
    (sqlite_error(SQLITE_READONLY_DBMOVED, "attempt to write a readonly database"), ResourceKind.READ_ONLY),
    (sqlite_error(SQLITE_BUSY, "database is locked"), None),
    (sqlite_error(SQLITE_CORRUPT, "database disk image is malformed"), None),
    (sqlite_error(SQLITE_CONSTRAINT_UNIQUE, "UNIQUE constraint failed"), None),
    (OSError(errno.ENOSPC, "No space left on device"), ResourceKind.DISK_FULL),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), ResourceKind.DISK_FULL),
    (OSError(errno.EIO, "Input/output error"), ResourceKind.IO_ERROR),
    (OSError(errno.EROFS, "Read-only file system"), ResourceKind.READ_ONLY),
    (OSError(errno.ENOENT, "No such file or directory"), None),
    (JobError("job WO-1 cannot go from paused to paused"), None),
    (ValueError("not a number"), None),
])
def test_which_errors_are_resource_faults(exc: BaseException, kind: ResourceKind | None) -> None:
    assert resource_fault(exc) == kind


def test_causes_context_and_groups_are_followed() -> None:
    full = sqlite_error(SQLITE_FULL, "database or disk is full")
    try:
        raise LedgerError("ledger commit of group 7 failed") from full
    except LedgerError as exc:
        chained = exc
    assert resource_fault(chained) is ResourceKind.DISK_FULL
    # A ROLLBACK after SQLite rolled back by itself: its own error, the full disk only as context.
    try:
        try:
            raise full
        except sqlite3.Error:
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")  # noqa: B904
    except sqlite3.Error as exc:
        in_context = exc
    assert resource_fault(in_context) is ResourceKind.DISK_FULL
    try:
        try:
            raise full
        except sqlite3.Error:
            raise KeyError("unrelated") from None
    except KeyError as exc:
        suppressed = exc
    assert resource_fault(suppressed) is None
    assert resource_fault(ExceptionGroup("run", [chained, OSError(errno.ENOSPC, "full")])) is ResourceKind.DISK_FULL
    assert resource_fault(ExceptionGroup("run", [chained, KeyError("a bug")])) is None


def cap(ledger: Ledger) -> None:
    """The file may not grow: the next page it needs is refused (SQLITE_FULL)."""
    with ledger.lock:
        pages = ledger.conn.execute("PRAGMA page_count").fetchone()[0]
        ledger.conn.execute(f"PRAGMA max_page_count = {pages}")


def uncap(ledger: Ledger) -> None:
    with ledger.lock:
        ledger.conn.execute("PRAGMA max_page_count = 1073741823")


def test_a_full_ledger_tells_the_listener_and_the_writer_with_the_cause(db_path: Path) -> None:
    ledger = Ledger(db_path)
    seen: list[BaseException] = []
    ledger.on_error(seen.append)
    try:
        seed_codes(ledger, [f"C{i:05d}" for i in range(2000)])
        cap(ledger)
        with pytest.raises(sqlite3.Error) as refused:
            # Enough journal to need new pages: SQLite refuses inside the statement.
            for i in range(2000):
                ledger.append_event("test.fill", {"pad": "x" * 500, "i": i})
        assert refused.value.sqlite_errorcode == SQLITE_FULL
        with pytest.raises(LedgerError) as lost:  # the group it rolled back: commit() says so, with the cause
            ledger.commit()
        assert resource_fault(lost.value) is ResourceKind.DISK_FULL
        assert getattr(lost.value.__cause__, "sqlite_errorcode", None) == SQLITE_FULL
        assert any(getattr(e, "sqlite_errorcode", None) == SQLITE_FULL for e in seen), seen
        assert ledger.commit_failures >= 1
    finally:
        ledger.close()
    # Nothing of the lost group is in the file; what was committed before is.
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'test.fill'").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM codes").fetchone()[0] == 2000
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_a_lost_group_is_reported_once_to_its_thread_and_not_after_forgive(db_path: Path) -> None:
    ledger = Ledger(db_path, group_window_s=60)  # only commit() ends groups here
    try:
        seed_codes(ledger, [f"C{i:05d}" for i in range(3000)])
        receipt = ledger.transition("C00000", CodeState.VOIDED)
        cap(ledger)
        with pytest.raises((LedgerError, sqlite3.Error)):
            for i in range(2000):
                ledger.append_event("test.fill", {"pad": "x" * 500, "i": i})
        assert receipt.failed  # the transition shared the group SQLite rolled back
        uncap(ledger)
        ledger.forgive_failures()
        ledger.transition("C00001", CodeState.VOIDED)
        ledger.commit()  # the earlier loss was handled: not reported again; this write is durable
        assert ledger.state_of("C00001") is CodeState.VOIDED
        assert ledger.state_of("C00000") is CodeState.AVAILABLE
        cap(ledger)
        with pytest.raises((LedgerError, sqlite3.Error)):
            for i in range(2000):
                ledger.append_event("test.fill", {"pad": "x" * 500, "i": i})
        uncap(ledger)
        ledger.transition("C00002", CodeState.VOIDED)
        with pytest.raises(LedgerError):  # a loss after forgive() is reported as before
            ledger.commit()
    finally:
        ledger.close()
