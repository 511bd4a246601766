"""The ledger store: SQLite in WAL mode, group commit by one writer, a transactional outbox.

Why group commit: an fsync per item costs 5-10x the item's own work on an industrial SSD, yet a code
must be durably `sent` before its bytes leave for the coder. So writes join one open transaction,
the group, which the writer (agent.ledger.writer) ends when its window passes, when it is full, or at
once when a caller needs durability (`commit()` / `durable=True`). Each write returns a `Receipt`
bound to its group: `receipt.durable` turns true when that group's COMMIT returned, `receipt.failed`
when the group was lost (and `receipt.error` says why); never both, never one after the other.

Every state change of a code goes through `transition` or `transition_many` (and `allocate`, which
takes codes from the pool): a guarded UPDATE that only matches legal source states, from the one
table in agent.ledger.states; the file itself refuses any other move (a trigger, migration 6).

Readers that must not wait on the writer open their own connection with `reader()`; reads that must
see the open group's uncommitted writes go through `conn` holding `lock`.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from agent.ledger.checkpoint import Checkpointer
from agent.ledger.receipts import Group, LedgerError, Receipt, durable_group
from agent.ledger.schema import migrate
from agent.ledger.states import ALLOCATABLE, TRANSITIONS, CodeState, UnknownCode, check_transition
from agent.ledger.writer import Writer, WriterLock

__all__ = ["Ledger", "LedgerError", "Receipt", "os_user"]

_KIND = {s: f"code.{s.value}" for s in CodeState}

try:  # orjson: ~10x faster than json for the journal's payloads (every pack writes one)
    import orjson

    def _dumps(obj: Any) -> str:
        """Compact, sorted-key JSON; non-JSON values (dates, paths) as their str()."""
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str).decode()

except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare install working

    def _dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)


_EVENT_SQL = "INSERT INTO events(at, kind, code, job, uplink, payload) VALUES (?, ?, ?, ?, ?, ?)"


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


class Ledger:
    def __init__(
        self,
        path: str | Path,
        *,
        group_window_s: float = 0.010,
        group_max: int = 5000,
        synchronous: str = "FULL",
        checkpoint_every_s: float = 0.5,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        memory = str(path) == ":memory:"
        if not memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=busy_timeout_s)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns. Group commit keeps this affordable.
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            conn.execute("PRAGMA cache_size=-65536")
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerError(f"{path} is not a usable lineagent ledger: {exc}") from exc
        self._conn = conn
        self._checkpointer: Checkpointer | None = None
        if not memory:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # see agent.ledger.checkpoint
            self._checkpointer = Checkpointer(self.path, checkpoint_every_s)
        self._w = Writer(conn, window_s=group_window_s, group_max=group_max, name=self.path.name)
        self._lock = self._w.lock

    # ---- life cycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Commit the open group, stop the writer and checkpointer threads, close the file."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._w.close()
        with self._lock:
            if self._checkpointer is not None:
                with contextlib.suppress(sqlite3.Error):  # a reader still open: the next open finishes it
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer connection, for reads inside the writer's view (take `lock` when threaded)."""
        return self._conn

    @property
    def lock(self) -> WriterLock:
        """Held, the connection is the holder's: reads see the open group, writes join it."""
        return self._lock

    @property
    def checkpoints(self) -> int:
        return self._checkpointer.count if self._checkpointer is not None else 0

    @property
    def group_window_s(self) -> float:
        return self._w.window_s

    @group_window_s.setter
    def group_window_s(self, value: float) -> None:
        self._w.window_s = value

    @property
    def group_max(self) -> int:
        return self._w.group_max

    @property
    def commit_failures(self) -> int:
        """Groups lost since the ledger opened (each one's receipts say why)."""
        return self._w.failures

    def reader(self) -> sqlite3.Connection:
        """A separate read-only connection that sees committed data and never blocks the writer."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    # ---- group commit -------------------------------------------------------------------------

    def commit(self) -> int:
        """Make everything written so far durable; returns the number of the group now durable.

        Raises LedgerError if that group's COMMIT failed: the group was rolled back, every receipt of
        it reads failed, and the caller must not act on any of it.
        """
        with self._lock:
            return self._w.end_now().number

    def commit_group(self) -> Group:
        """Like commit(), but returns the group that ended (durable or failed) instead of raising."""
        with self._lock:
            return self._w.end_now(raise_on_failure=False)

    def rollback(self, reason: str = "rolled back by the caller") -> None:
        """Abandon the open group (a test's stand-in for a crash); its receipts all read failed.

        Not a recovery step: after a failed commit the writer has already rolled the group back, and
        a rollback then would throw away the next group, other threads' writes.
        """
        with self._lock:
            self._w.abandon(reason)

    def maybe_commit(self) -> None:
        """End the group if its window passed or it is full (the writer's timer does this anyway)."""
        with self._lock:
            self._w.due()

    def is_durable(self, receipt: Receipt) -> bool:
        return receipt.durable

    @property
    def open_group(self) -> int:
        return self._w.open_number

    @contextmanager
    def atomic(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """All statements inside apply together or not at all; `durable=True` commits at the end.

        The lock is held for the whole block, so no group ends in the middle of it. With
        `durable=True` a failed commit raises LedgerError after the block.
        """
        w = self._w
        with self._lock:
            w.group()
            name = f"sp{w.savepoints}"
            self._conn.execute(f"SAVEPOINT {name}")
            w.savepoints += 1
            try:
                yield self._conn
            except BaseException as exc:
                w.savepoints -= 1
                try:
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                except sqlite3.Error:
                    w.check(exc)
                raise
            w.savepoints -= 1
            try:
                self._conn.execute(f"RELEASE {name}")
            except sqlite3.Error as exc:
                w.check(exc)
                raise LedgerError(f"ledger write failed ({exc}); the block was not applied") from exc
            if durable:
                if w.savepoints:
                    raise LedgerError("durable=True inside another atomic() block")
                w.end_now()
            else:
                w.wrote()

    # ---- the journal --------------------------------------------------------------------------

    def append_event(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        code: str | None = None,
        job: int | None = None,
        uplink: bool = False,
        at: float | None = None,
    ) -> int:
        """Append to the journal inside the caller's atomic block (or the open group)."""
        with self._lock:
            self._w.group()
            try:
                cur = self._conn.execute(_EVENT_SQL, (time.time() if at is None else at, kind, code, job,
                                                      int(uplink), _dumps(payload or {})))
            except sqlite3.Error as exc:
                self._w.check(exc)
                raise
            return int(cur.lastrowid or 0)

    def audit(self, action: str, args: dict[str, Any], result: str, *, user: str | None = None) -> None:
        """Record an operator action with the OS user who ran it; durable at once."""
        with self.atomic(durable=not self._w.savepoints):
            self._conn.execute(
                "INSERT INTO audit(at, os_user, action, args, result) VALUES (?, ?, ?, ?, ?)",
                (time.time(), user or os_user(), action, json.dumps(args, default=str), result),
            )

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
        sources = self._sources(target, expect)
        now = time.time() if at is None else at
        conn, w = self._conn, self._w
        with self._lock:
            g = w.group()
            conn.execute("SAVEPOINT t")
            try:
                row = conn.execute(
                    "UPDATE codes SET prev_state = state, state = ?, updated_at = ?, job = COALESCE(?, job) "
                    f"WHERE code = ? AND state IN ({sources}) RETURNING prev_state, job",
                    (target.value, now, job, code),
                ).fetchone()
                if row is None:
                    conn.execute("RELEASE t")
                    self._refusal(code, target, expect)
                source = row[0]
                body = f'{{"from":"{source}"}}' if payload is None else _dumps({"from": source, **payload})
                cur = conn.execute(_EVENT_SQL, (now, kind or _KIND[target], code,
                                                job if job is not None else row[1], int(uplink), body))
                conn.execute("RELEASE t")
            except sqlite3.Error as exc:
                self._undo_savepoint("t", exc)
            w.wrote()
            return Receipt(code, target, int(cur.lastrowid or 0), g.number, g)

    def _undo_savepoint(self, name: str, exc: sqlite3.Error) -> NoReturn:
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
        self._w.check(exc)
        raise LedgerError(f"ledger write failed ({exc}); the transition was not applied") from exc

    @staticmethod
    @functools.cache
    def _sources_for(target: CodeState, expect: frozenset[CodeState] | None) -> str:
        legal = {s for s, nxt in TRANSITIONS.items() if target in nxt}
        if expect is not None:
            legal &= expect
        # Literal values: they come from our own enum, never from input.
        return ", ".join(f"'{s.value}'" for s in sorted(legal)) or "NULL"

    def _sources(self, target: CodeState, expect: CodeState | Iterable[CodeState] | None) -> str:
        if expect is None:
            return self._sources_for(target, None)
        exp = frozenset({expect}) if isinstance(expect, CodeState) else frozenset(expect)
        return self._sources_for(target, exp)

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
