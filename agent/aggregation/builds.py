"""Packs being built on the line, in the ledger from their first child to their close.

Why a build has no parent code until it closes (docs/architecture.md, Aggregation on the line): the
parent code comes with a physical act at the full pack (a label printed and read back, or a
pre-printed label scanned), a label read back wrong is voided and a fresh code printed, and the cloud
is told a pack's contents once, with one AggregationEvent ADD holding all of its children, when it is
closed. So the children are recorded as they are verified (`stage`, one ledger row each, in the
ledger's group commit), and `close` obtains nothing itself: it links the parent the station obtained
to exactly the children recorded, marks the build closed and takes the new pack into the next level's
build, all in one transaction. A kill loses no child: the build is read back on restart, and a child
verified but not yet recorded (the last group-commit window before the kill) is found by `orphans`.

Every function is blocking ledger work: the line runs them in its packing executor, the CLI directly.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.aggregation import rules
from agent.aggregation.model import AggregationError, LevelPlan, PackInfo, PackRejected, Violation
from agent.aggregation.packs import Aggregator
from agent.ledger import CodeState


class BuildState(StrEnum):
    OPEN = "open"  # the one the next child goes into (one per job and level)
    PARKED = "parked"  # set aside by an operator (or because its label failed); resumed or closed later
    CLOSED = "closed"  # became the pack `parent`
    REJECTED = "rejected"  # its close was refused by the packing rules; the pack left for the bench
    DROPPED = "dropped"  # emptied: an open build with no child left when another was resumed


UNFINISHED_BUILD = (BuildState.OPEN, BuildState.PARKED)
BUILD_REF = re.compile(r"#(\d+)")  # how an operator names a build with no code of its own: "#17"


@dataclass(frozen=True, slots=True)
class BuildInfo:
    id: int
    job: int
    level: str
    state: BuildState
    expected: int
    children: int
    parent: str | None
    reason: str | None
    opened_at: float

    @property
    def name(self) -> str:
        return f"{self.level} #{self.id}"

    @property
    def full(self) -> bool:
        return self.children >= self.expected


@dataclass(frozen=True, slots=True)
class Staged:
    """What `stage` did: the build now filling, its count, and the children it could not take."""

    build: int | None
    children: int
    expected: int
    taken: list[str] = field(default_factory=list)
    rest: list[str] = field(default_factory=list)  # the build is full: these go into the next one
    refused: list[Violation] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return self.build is not None and self.children >= self.expected


@dataclass(frozen=True, slots=True)
class Closed:
    build: BuildInfo
    pack: PackInfo | None = None
    rejected: PackRejected | None = None
    next: Staged | None = None


_BUILD_SQL = (
    "SELECT b.id, b.job, b.level, b.state, b.expected,"
    " (SELECT COUNT(*) FROM pack_build_children k WHERE k.build = b.id), c.code, b.reason, b.opened_at"
    " FROM pack_builds b LEFT JOIN codes c ON c.id = b.parent"
)


def _info(r: Any) -> BuildInfo:
    return BuildInfo(int(r[0]), int(r[1]), str(r[2]), BuildState(r[3]), int(r[4]), int(r[5]),
                     None if r[6] is None else str(r[6]), None if r[7] is None else str(r[7]), float(r[8]))


def find_build(conn: sqlite3.Connection, ref: str) -> BuildInfo | None:
    """The build an operator means by `ref`: "#17", or the code of a child in an unfinished build."""
    m = BUILD_REF.fullmatch(ref.strip())
    if m:
        r = conn.execute(_BUILD_SQL + " WHERE b.id = ?", (int(m.group(1)),)).fetchone()
    else:
        r = conn.execute(
            _BUILD_SQL + " JOIN pack_build_children k2 ON k2.build = b.id JOIN codes c2 ON c2.id = k2.child"
            " WHERE c2.code = ? AND b.state IN ('open', 'parked')", (ref,)).fetchone()
    return None if r is None else _info(r)


def children(conn: sqlite3.Connection, build: int) -> list[str]:
    rows = conn.execute("SELECT c.code FROM pack_build_children k JOIN codes c ON c.id = k.child WHERE k.build = ?"
                        " ORDER BY k.added_at, k.rowid", (build,)).fetchall()
    return [str(r[0]) for r in rows]


class Builds:
    """The builds of one ledger under one packing spec (the Aggregator's plans)."""

    def __init__(self, agg: Aggregator) -> None:
        self.agg = agg
        self.ledger = agg.ledger

    # ---- queries ------------------------------------------------------------------------------

    def info(self, build: int) -> BuildInfo:
        with self.ledger.lock:
            r = self.ledger.conn.execute(_BUILD_SQL + " WHERE b.id = ?", (build,)).fetchone()
        if r is None:
            raise AggregationError(f"no pack being built #{build}")
        return _info(r)

    def open_build(self, job: int, level: str) -> BuildInfo | None:
        with self.ledger.lock:
            r = self.ledger.conn.execute(_BUILD_SQL + " WHERE b.job = ? AND b.level = ? AND b.state = 'open'",
                                         (job, level)).fetchone()
        return None if r is None else _info(r)

    def unfinished(self, job: int | None = None, level: str | None = None) -> list[BuildInfo]:
        with self.ledger.lock:
            rows = self.ledger.conn.execute(
                _BUILD_SQL + " WHERE b.state IN ('open', 'parked') AND (? IS NULL OR b.job = ?)"
                " AND (? IS NULL OR b.level = ?) ORDER BY b.id", (job, job, level, level)).fetchall()
        return [_info(r) for r in rows]

    def latest_parked(self, job: int, level: str) -> BuildInfo | None:
        parked = [b for b in self.unfinished(job, level) if b.state is BuildState.PARKED]
        return parked[-1] if parked else None

    def find(self, ref: str) -> BuildInfo | None:
        with self.ledger.lock:
            return find_build(self.ledger.conn, ref)

    def children(self, build: int) -> list[str]:
        with self.ledger.lock:
            return children(self.ledger.conn, build)

    def orphans(self, job: int, plan: LevelPlan) -> list[str]:
        """Children of this job the line made but no build took: verified items (or closed packs of the
        level below) in no pack and never in a build, oldest first. After a kill these are the few
        verified in the last group-commit window, or a pack closed while the next level's build was
        full; they go into the open build, as they would have."""
        with self.ledger.lock:
            if plan.child_level in self.agg.plans:
                sql = ("SELECT c.code FROM packs p JOIN codes c ON c.id = p.code WHERE p.job = ? AND p.level = ?"
                       " AND p.state = 'closed' AND NOT EXISTS (SELECT 1 FROM pack_links l WHERE l.child = c.id)"
                       " AND NOT EXISTS (SELECT 1 FROM pack_build_children k WHERE k.child = c.id)"
                       " ORDER BY p.closed_at, p.id")
            else:
                sql = ("SELECT c.code FROM codes c WHERE c.job = ? AND c.level = ? AND c.state = 'verified'"
                       " AND NOT EXISTS (SELECT 1 FROM pack_links l WHERE l.child = c.id)"
                       " AND NOT EXISTS (SELECT 1 FROM pack_build_children k WHERE k.child = c.id)"
                       " ORDER BY c.updated_at, c.id")
            return [str(r[0]) for r in self.ledger.conn.execute(sql, (job, plan.child_level)).fetchall()]

    # ---- filling ------------------------------------------------------------------------------

    def stage(self, job: int, plan: LevelPlan, codes: Sequence[str]) -> Staged:
        """Take children into the open build of (job, level), opening one if needed, up to its count.

        A code already in a build is skipped (a restart found it as an orphan and its verdict came
        too); one the rules refuse (not verified, packed elsewhere, another job) is left out and said
        so in `refused`; the ones past the count come back in `rest` for the next build.
        """
        with self.ledger.atomic() as conn:
            return self._stage(conn, job, plan, codes)

    def _stage(self, conn: sqlite3.Connection, job: int, plan: LevelPlan, codes: Sequence[str]) -> Staged:
        row = conn.execute(_BUILD_SQL + " WHERE b.job = ? AND b.level = ? AND b.state = 'open'",
                           (job, plan.level)).fetchone()
        build = None if row is None else _info(row)
        have = build.children if build else 0
        wanted = list(dict.fromkeys(codes))
        if not wanted:
            return Staged(build.id if build else None, have, plan.count)
        known = rules.facts(conn, wanted)
        ids = [known[c].id for c in wanted if c in known]
        taken_before = {int(r[0]) for r in rules._rows(
            conn, "SELECT child FROM pack_build_children WHERE child IN ({})", ids)} if ids else set()
        fresh = [c for c in wanted if c not in known or known[c].id not in taken_before]
        bad = rules.check_children(plan, fresh, known, job=job, lot=self.agg.lot_of(conn, job),
                                   child_packs=plan.child_level in self.agg.plans) if fresh else []
        refused_codes = {v.code for v in bad}
        good = [c for c in fresh if c not in refused_codes]
        room = max(plan.count - have, 0)
        take, rest = good[:room], good[room:]
        now = time.time()
        if take:
            if build is None:
                cur = conn.execute("INSERT INTO pack_builds(job, level, state, expected, opened_at)"
                                   " VALUES (?, ?, 'open', ?, ?)", (job, plan.level, plan.count, now))
                build_id = int(cur.lastrowid or 0)
            else:
                build_id = build.id
            conn.executemany("INSERT INTO pack_build_children(child, build, added_at) VALUES (?, ?, ?)",
                             [(known[c].id, build_id, now) for c in take])
        else:
            build_id = build.id if build else 0
        if bad:
            self.ledger.append_event("pack.child_refused", {"level": plan.level, "build": build_id or None,
                                                            "violations": [str(v) for v in bad[:50]]}, job=job)
        return Staged(build_id or None, have + len(take), plan.count, take, rest, bad)

    def prune(self, build: int) -> list[str]:
        """Before a close: take out children that can no longer be packed (an item's verdict was
        withdrawn, a box was unpacked); the build waits for others in their place. Returns them."""
        b = self.info(build)
        plan = self.agg.plan(b.level)
        with self.ledger.atomic() as conn:
            if plan.child_level in self.agg.plans:
                gone = conn.execute(
                    "SELECT k.child, c.code FROM pack_build_children k JOIN codes c ON c.id = k.child"
                    " LEFT JOIN packs p ON p.code = k.child WHERE k.build = ? AND (p.state IS NULL OR"
                    " p.state != 'closed')", (build,)).fetchall()
            else:
                gone = conn.execute(
                    "SELECT k.child, c.code FROM pack_build_children k JOIN codes c ON c.id = k.child"
                    " WHERE k.build = ? AND c.state != ?", (build, CodeState.VERIFIED.value)).fetchall()
            if gone:
                conn.executemany("DELETE FROM pack_build_children WHERE child = ?", [(r[0],) for r in gone])
                self.ledger.append_event("pack.child_dropped", {"level": b.level, "build": build,
                                                                "codes": [r[1] for r in gone]}, job=b.job)
        return [str(r[1]) for r in gone]

    # ---- closing ------------------------------------------------------------------------------

    def close(self, build: int, parent: str, *, partial_reason: str | None = None,
              upper: LevelPlan | None = None) -> Closed:
        """Link `parent` to exactly the children recorded, mark the build closed and take the new pack
        into the `upper` level's open build: one durable transaction. A rule refusal marks the build
        rejected (its children stay recorded to it, so no restart takes them again)."""
        with self.ledger.atomic(durable=True) as conn:
            b = self.info(build)
            if b.state not in UNFINISHED_BUILD:
                raise AggregationError(f"{b.name} is {b.state}; only an open or parked pack closes")
            children = self.children(build)
            now = time.time()
            try:
                pack = self.agg.pack(b.level, parent, children, job=b.job, partial_reason=partial_reason)
            except PackRejected as exc:
                conn.execute("UPDATE pack_builds SET state = 'rejected', reason = ?, ended_at = ? WHERE id = ?",
                             (str(exc)[:500], now, build))
                return Closed(self.info(build), rejected=exc)
            conn.execute("UPDATE pack_builds SET state = 'closed', parent = ?, reason = ?, ended_at = ?"
                         " WHERE id = ?", (pack.code_id, partial_reason, now, build))
            staged = self._stage(conn, b.job, upper, [parent]) if upper is not None else None
        return Closed(self.info(build), pack=pack, next=staged)

    def reject(self, build: int, why: str) -> None:
        """The line's own close was refused by the rules before a parent was spent: the pack leaves for
        the operator's bench, its children stay recorded to it (no restart takes them again)."""
        with self.ledger.atomic() as conn:
            conn.execute("UPDATE pack_builds SET state = 'rejected', reason = ?, ended_at = ? WHERE id = ?"
                         " AND state IN ('open', 'parked')", (why[:500], time.time(), build))

    def drop_if_empty(self, build: int) -> bool:
        with self.ledger.atomic() as conn:
            cur = conn.execute(
                "UPDATE pack_builds SET state = 'dropped', ended_at = ? WHERE id = ? AND state IN ('open', 'parked')"
                " AND NOT EXISTS (SELECT 1 FROM pack_build_children k WHERE k.build = pack_builds.id)",
                (time.time(), build))
            return cur.rowcount > 0

    # ---- operator moves -----------------------------------------------------------------------

    def park(self, build: int, *, why: str | None = None) -> BuildInfo:
        """Set a build aside (暂存): it keeps its children, the next child goes into a new build."""
        with self.ledger.atomic(durable=True) as conn:
            b = self.info(build)
            if b.state is not BuildState.OPEN:
                raise AggregationError(f"{b.name} is {b.state}; only the pack being built is parked")
            if b.children == 0:
                raise AggregationError(f"{b.name} holds nothing yet; there is nothing to park")
            conn.execute("UPDATE pack_builds SET state = 'parked', reason = ? WHERE id = ?", (why, build))
            self.ledger.append_event("pack.build_parked", {"level": b.level, "build": build,
                                                           "children": b.children, "why": why}, job=b.job)
        return self.info(build)

    def resume(self, build: int) -> tuple[BuildInfo, BuildInfo | None]:
        """Make a parked build the one being built (提取). The build that was being built in its place is
        parked if it holds children (the operator swaps the two packs), dropped if it is empty."""
        with self.ledger.atomic(durable=True) as conn:
            b = self.info(build)
            if b.state is not BuildState.PARKED:
                raise AggregationError(f"{b.name} is {b.state}; only a parked pack resumes")
            current = self.open_build(b.job, b.level)
            swapped = None
            if current is not None:
                if current.children:
                    conn.execute("UPDATE pack_builds SET state = 'parked', reason = ? WHERE id = ?",
                                 (f"set aside for #{build}", current.id))
                    swapped = current.id
                else:
                    conn.execute("UPDATE pack_builds SET state = 'dropped', ended_at = ? WHERE id = ?",
                                 (time.time(), current.id))
            conn.execute("UPDATE pack_builds SET state = 'open', reason = NULL WHERE id = ?", (build,))
            self.ledger.append_event("pack.build_resumed", {"level": b.level, "build": build,
                                                            "children": b.children, "parked": swapped}, job=b.job)
        return self.info(build), (self.info(swapped) if swapped is not None else None)
