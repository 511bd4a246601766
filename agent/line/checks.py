"""The simulated line's invariants, checked against the ledger, the receiver and the plant's own record.

Why in the package and not only in the tests: `lineagent demo` exits non-zero when one fails, so the
main command of the README proves the same properties the end-to-end tests assert.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def check_line(ledger: Path, printed: list[str], receiver_db: Path | None) -> list[Check]:
    """`printed`: every text the coder simulators printed, in order (the plant's truth)."""
    out: list[Check] = []
    twice = [t for t, n in Counter(printed).items() if n > 1]
    out.append(Check("no code printed twice", not twice,
                     f"{len(printed)} prints, {len(twice)} repeated" + (f": {twice[:3]}" if twice else "")))
    with _ro(ledger) as conn:
        no_event = conn.execute(
            "SELECT c.code FROM codes c JOIN items i ON i.code = c.id WHERE c.state = 'rejected' AND NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.code = c.code AND e.kind = 'code.rejected' AND e.uplink = 1)"
        ).fetchall()
        no_reason = conn.execute(
            "SELECT COUNT(*) FROM codes c JOIN items i ON i.code = c.id WHERE c.state = 'rejected' "
            "AND (i.verdict IS NULL OR i.verdict = 'good')").fetchone()[0]
        rejected = conn.execute("SELECT COUNT(*) FROM codes WHERE state = 'rejected'").fetchone()[0]
        out.append(Check("every reject has a reason and a decommissioning event", not no_event and not no_reason,
                         f"{rejected} rejected; {len(no_event)} without an event, {no_reason} without a reason"))
        wrong = conn.execute(
            "SELECT c.code, p.level, p.expected_count, COUNT(l.child) n FROM packs p JOIN codes c ON c.id = p.code "
            "LEFT JOIN pack_links l ON l.parent = p.code WHERE p.partial_reason IS NULL GROUP BY p.id "
            "HAVING n != p.expected_count").fetchall()
        packs = conn.execute("SELECT COUNT(*), SUM(partial_reason IS NOT NULL) FROM packs").fetchone()
        out.append(Check("every pack holds exactly its count unless force-closed", not wrong,
                         f"{packs[0]} packs ({packs[1] or 0} force-closed); {len(wrong)} wrong"
                         + (f": {wrong[:2]}" if wrong else "")))
        two_parents = conn.execute("SELECT COUNT(*) FROM pack_links GROUP BY child HAVING COUNT(*) > 1").fetchall()
        out.append(Check("no child in two parents", not two_parents, f"{len(two_parents)} children in two"))
        produced = conn.execute("SELECT COUNT(*) FROM events WHERE uplink = 1").fetchone()[0]
    if receiver_db is not None:
        with _ro(receiver_db) as rconn:
            received = rconn.execute("SELECT COUNT(*) FROM epcis_events").fetchone()[0]
        out.append(Check("the receiver holds every uplink event exactly once", produced == received,
                         f"{produced} produced, {received} distinct eventIDs received"))
    return out


def uplink_count(ledger: Path) -> int:
    with _ro(ledger) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events WHERE uplink = 1").fetchone()[0])
