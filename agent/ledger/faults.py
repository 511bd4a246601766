"""Which ledger errors are resource faults (the disk is full, the disk fails) and which are not.

Why a classification of its own: a full disk, a failing disk and a file system remounted read-only
are not bugs and not a refusal of one operation; every write after them fails the same way, so the
line must stop (agent/line/resources.py) instead of each part of the agent failing on its own. They
reach the agent as sqlite3 errors with SQLite's result code (SQLITE_FULL 13, SQLITE_IOERR 10 and its
extended codes, SQLITE_READONLY 8: "Result and Error Codes", sqlite.org/rescode.html; Python 3.11
exposes them as `sqlite_errorcode`), as OSError (ENOSPC, EDQUOT, EIO, EROFS: POSIX.1-2017
<errno.h>) from files written beside the ledger, or as LedgerError chained to one of those. The
ledger's messages quote SQLite's text, so a LedgerError built from a group's failure reason without
a chained cause is still recognised by the words SQLite uses ("database or disk is full", "disk I/O
error").
"""

from __future__ import annotations

import errno
import sqlite3
from enum import StrEnum

SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_FULL = 13


class ResourceKind(StrEnum):
    DISK_FULL = "disk_full"
    IO_ERROR = "io_error"
    READ_ONLY = "read_only"


_ERRNO = {errno.ENOSPC: ResourceKind.DISK_FULL, errno.EDQUOT: ResourceKind.DISK_FULL,
          errno.EIO: ResourceKind.IO_ERROR, errno.EROFS: ResourceKind.READ_ONLY}
_SQLITE = {SQLITE_FULL: ResourceKind.DISK_FULL, SQLITE_IOERR: ResourceKind.IO_ERROR,
           SQLITE_READONLY: ResourceKind.READ_ONLY}
_WORDS = (("database or disk is full", ResourceKind.DISK_FULL), ("no space left on device", ResourceKind.DISK_FULL),
          ("disk i/o error", ResourceKind.IO_ERROR), ("attempt to write a readonly database", ResourceKind.READ_ONLY))


def resource_fault(exc: BaseException | None) -> ResourceKind | None:
    """The resource fault behind `exc` (itself, its causes, or every leaf of an exception group), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BaseExceptionGroup):
            kinds = [resource_fault(e) for e in exc.exceptions]
            return kinds[0] if kinds and all(kinds) else None
        kind = _one(exc)
        if kind is not None:
            return kind
        # The context too: a ROLLBACK that fails because SQLite already rolled back after SQLITE_FULL
        # raises "no transaction is active", with the real cause only as its context.
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def _one(exc: BaseException) -> ResourceKind | None:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in _SQLITE:
            return _SQLITE[code & 0xFF]
    elif isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    text = str(exc).lower()
    return next((kind for words, kind in _WORDS if words in text), None)
