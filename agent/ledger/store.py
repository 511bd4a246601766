"""The ledger store: SQLite in WAL mode, group commit by one writer, a transactional outbox.

Why group commit: an fsync per item costs 5-10x the item's own work on an industrial SSD, yet a code
must be durably `sent` before its bytes leave for the coder. So writes join one open transaction,
the group, which the writer (agent.ledger.writer) ends when its window passes, when it is full, or at
once when a caller needs durability (`commit()` / `durable=True`). Each write returns a `Receipt`
bound to its group: `receipt.durable` turns true when that group's COMMIT returned, `receipt.failed`
when the group was lost (and `receipt.error` says why); never both, never one after the other.

Every state change of a code goes through `transition`, `walk` or `transition_many` (and `allocate`, which
takes codes from the pool): a guarded UPDATE that only matches legal source states, from the one
table in agent.ledger.states; the file itself refuses any other move (a trigger, migration 6).

Readers that must not wait on the writer open their own connection with `reader()`; reads that must
see the open group's uncommitted writes go through `conn` holding `lock`.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from agent.ledger.core import EVENT_SQL, LedgerCore, dumps, os_user
from agent.ledger.receipts import LedgerError, Receipt, durable_group
from agent.ledger.states import ALLOCATABLE, TRANSITIONS, CodeState, UnknownCode, check_transition

__all__ = ["Ledger", "LedgerError", "Receipt", "os_user"]

_KIND = {s: f"code.{s.value}" for s in CodeState}


class Ledger(LedgerCore):
    # ---- codes --------------------------------------------------------------------------------

    def code_row(self, code: str) -> sqlite3.Row:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, code, level, package, state, job FROM codes WHERE code = ?", (code,)
            ).fetchone()
        if row is None:
            raise UnknownCode(code)
        return row  # type: ignore[no-any-return]

    def state_of(self, code: str) -> CodeState:
        return CodeState(self.code_row(code)["state"])

    def transition(
        self,
        code: str,
        target: CodeState,
        *,
        kind: str | None = None,
        payload: dict[str, Any] | None = None,
        uplink: bool = False,
        job: int | None = None,
        expect: CodeState | Iterable[CodeState] | None = None,
        at: float | None = None,
    ) -> Receipt:
        """Move one code to `target` and journal it, atomically; raises IllegalTransition.

        `expect` narrows the legal source states for a caller that knows where the code must be
        (the feeder only confirms codes it sent), so a surprise is an error, not a silent change.

        Hot path (tens of thousands a second): one guarded UPDATE ... RETURNING does the state
        check and the change in one statement, the journal INSERT follows, both inside a savepoint
        so that a failed INSERT undoes the UPDATE: a state is never kept without its event.
        """
        update = self._update_sql(target, expect)
        now = time.time() if at is None else at
        conn, w = self._conn, self._w
        with self._lock:
            g = w.group()
            conn.execute("SAVEPOINT t")
            try:
                row = conn.execute(update, (target.value, now, job, code)).fetchone()
                if row is None:
                    conn.execute("RELEASE t")
                    self._refusal(code, target, expect)
                source = row[0]
                body = f'{{"from":"{source}"}}' if payload is None else dumps({"from": source, **payload})
                cur = conn.execute(EVENT_SQL, (now, kind or _KIND[target], code,
                                                job if job is not None else row[1], int(uplink), body))
                conn.execute("RELEASE t")
            except sqlite3.Error as exc:
                self._undo_savepoint("t", exc)
            w.outbox_rows += uplink
            w.wrote()
            return Receipt(code, target, int(cur.lastrowid or 0), g.number, g)

    def walk(
        self,
        code: str,
        path: Sequence[CodeState],
        *,
        expect: CodeState,
        kind: str | None = None,
        payload: dict[str, Any] | None = None,
        job: int | None = None,
        at: float | None = None,
    ) -> Receipt:
        """Move one code from `expect` through every state of `path`, each hop a guarded transition,
        journaled as one event (`from`, `via`); all hops or none.

        For one physical act that the table models as several moves: a pack's label code printed
        and read in the same instant goes available -> allocated -> printed -> verified.
        """
        if not path:
            raise LedgerError(f"code {code!r}: walk() needs at least one step")
        now = time.time() if at is None else at
        conn, w = self._conn, self._w
        with self._lock:
            g = w.group()
            conn.execute("SAVEPOINT w")
            try:
                source, row = expect, None
                for hop in path:
                    row = conn.execute(self._update_sql(hop, source), (hop.value, now, job, code)).fetchone()
                    if row is None:
                        conn.execute("ROLLBACK TO w")
                        conn.execute("RELEASE w")
                        self._refusal(code, hop, source)
                    source = hop
                assert row is not None
                body = dumps({"from": expect.value, "via": [h.value for h in path[:-1]], **(payload or {})})
                cur = conn.execute(EVENT_SQL, (now, kind or _KIND[path[-1]], code,
                                                job if job is not None else row[1], 0, body))
                conn.execute("RELEASE w")
            except sqlite3.Error as exc:
                self._undo_savepoint("w", exc)
            w.wrote()
            return Receipt(code, path[-1], int(cur.lastrowid or 0), g.number, g)

    def _undo_savepoint(self, name: str, exc: sqlite3.Error) -> NoReturn:
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
        self._w.check(exc)
        raise LedgerError(f"ledger write failed ({exc}); the transition was not applied") from exc

    @staticmethod
    @functools.cache
    def _update_for(target: CodeState, expect: frozenset[CodeState] | None) -> str:
        """The guarded UPDATE: it matches only a code in a legal source state for `target`."""
        legal = {s for s, nxt in TRANSITIONS.items() if target in nxt}
        if expect is not None:
            legal &= expect
        # Literal values: they come from our own enum, never from input.
        sources = ", ".join(f"'{s.value}'" for s in sorted(legal)) or "NULL"
        return ("UPDATE codes SET prev_state = state, state = ?, updated_at = ?, job = COALESCE(?, job) "
                f"WHERE code = ? AND state IN ({sources}) RETURNING prev_state, job")

    def _update_sql(self, target: CodeState, expect: CodeState | Iterable[CodeState] | None) -> str:
        if expect is None:
            return self._update_for(target, None)
        exp = frozenset({expect}) if isinstance(expect, CodeState) else frozenset(expect)
        return self._update_for(target, exp)

    def _refusal(self, code: str, target: CodeState, expect: CodeState | Iterable[CodeState] | None) -> NoReturn:
        """The guarded UPDATE matched nothing: say precisely why."""
        current = CodeState(self.code_row(code)["state"])  # raises UnknownCode
        check_transition(code, current, target)  # raises IllegalTransition
        allowed = {expect} if isinstance(expect, CodeState) else set(expect or ())
        raise LedgerError(
            f"code {code!r} is {current}, expected {' or '.join(sorted(allowed))} before {target}"
        )

    def transition_many(
        self,
        codes: Sequence[str],
        target: CodeState,
        *,
        expect: CodeState,
        kind: str | None = None,
        job: int | None = None,
        at: float | None = None,
    ) -> Receipt:
        """Move many codes that are all in `expect` to `target` in one step, journaled as one event.

        Used where one physical act moves a batch (a FIFO refill, a reconcile after a stop, the
        labels of a burst of packs). All or nothing: if any code is not in `expect`, nothing changes
        and the error names it. The receipt's `code` is the first code, `count` how many moved.
        """
        check_transition("*", expect, target)
        if not codes:
            return Receipt("", target, 0, 0, durable_group(), count=0)
        now = time.time() if at is None else at
        with self._lock, self.atomic():
            g = self._w.group()
            self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS _batch(code TEXT PRIMARY KEY)")
            self._conn.execute("DELETE FROM _batch")
            self._conn.executemany("INSERT INTO _batch(code) VALUES (?)", ((c,) for c in codes))
            bad = self._conn.execute(
                "SELECT b.code, c.state FROM _batch b LEFT JOIN codes c ON c.code = b.code "
                "WHERE c.state IS NULL OR c.state != ? LIMIT 5",
                (expect.value,),
            ).fetchall()
            if bad:
                detail = ", ".join(f"{r[0]!r} is {r[1] or 'unknown'}" for r in bad)
                raise LedgerError(f"cannot move {len(codes)} codes {expect} -> {target}: {detail}")
            self._conn.execute(
                "UPDATE codes SET prev_state = state, state = ?, updated_at = ?, job = COALESCE(?, job) "
                "WHERE code IN (SELECT code FROM _batch)",
                (target.value, now, job),
            )
            seq = self.append_event(
                kind or f"codes.{target.value}",
                {"from": expect.value, "count": len(codes), "codes": list(codes)},
                job=job,
                at=now,
            )
        return Receipt(codes[0], target, seq, g.number, g, count=len(codes))

    def allocate(self, job: int, level: str, count: int) -> list[str]:
        """Reserve the next `count` pooled codes of `level` for `job`; durable before returning.

        Raises LedgerError when fewer than `count` are in the pool: a short allocation would let a
        coder run dry mid-batch, so the caller decides what to do with an honest answer instead.
        """
        if count <= 0:
            return []
        # Literal states, not parameters: the planner must see them to use the partial index.
        pool = ", ".join(f"'{s.value}'" for s in sorted(ALLOCATABLE))
        with self._lock:
            with self.atomic():
                rows = self._conn.execute(
                    "UPDATE codes SET prev_state = state, state = 'allocated', job = ?, updated_at = ? "
                    "WHERE id IN (SELECT id FROM codes INDEXED BY codes_pool WHERE level = ? "
                    f" AND state IN ({pool}) ORDER BY id LIMIT ?) RETURNING id, code",
                    (job, time.time(), level, count),
                ).fetchall()
                if len(rows) < count:
                    raise LedgerError(
                        f"only {len(rows)} codes of level {level!r} are available, {count} asked "
                        "for; import a code package for this level"
                    )
                rows.sort(key=lambda r: r[0])
                codes = [r[1] for r in rows]
                self.append_event(
                    "codes.allocated",
                    {"level": level, "count": count, "first": codes[0], "last": codes[-1]},
                    job=job,
                )
            self.commit()
        return codes

    def counts(self) -> list[sqlite3.Row]:
        """Codes per level, package and state (for `codes stats`)."""
        with self._lock:
            return self._conn.execute(
                "SELECT c.level, p.package_id, c.state, COUNT(*) AS n FROM codes c "
                "JOIN packages p ON p.id = c.package GROUP BY c.level, p.package_id, c.state "
                "ORDER BY c.level, p.package_id, c.state"
            ).fetchall()
