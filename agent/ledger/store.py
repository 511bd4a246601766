"""The ledger store: SQLite in WAL mode with group commit and a transactional outbox.

Why group commit: an fsync per item costs 5-10x the item's own work on an industrial SSD, yet a code
must be durably `sent` before its bytes leave for the coder. So transitions accumulate in one open
SQLite transaction and are committed together when the group window ends, when the group is full,
or at once when a caller needs durability (`commit()` / `durable=True`). Each transition and its
journal event are written inside their own SAVEPOINT, so they are applied together or not at all,
and they become durable in the same commit. `Receipt.group` tells a caller which commit makes its
transition durable; `is_durable(receipt)` says whether that commit happened.

The connection is shared between threads behind one lock (asyncio executors call in from worker
threads); readers that must not wait on the writer open their own connection with `reader()`.

Why checkpoints run on a thread of their own: SQLite's automatic WAL checkpoint runs inside the
COMMIT that crosses the threshold, i.e. under the ledger lock and the connection's mutex, and with
synchronous=FULL it fsyncs the database file as well as the WAL. Every thread using the writer
connection (the feeder, packing, the verify station's writer) then stalled for the length of a
checkpoint, up to 300 ms on a busy line PC. So the writer connection has `wal_autocheckpoint=0`, and
a checkpointer thread with its own connection runs PASSIVE checkpoints, which never wait for and never
block the writer or the readers: a commit costs one WAL fsync, nothing more.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from agent.ledger.schema import migrate
from agent.ledger.states import ALLOCATABLE, TRANSITIONS, CodeState, UnknownCode, check_transition

_KIND = {s: f"code.{s.value}" for s in CodeState}

try:  # orjson: ~10x faster than json for the journal's payloads (every pack writes one)
    import orjson

    def _dumps(obj: Any) -> str:
        """Compact, sorted-key JSON; non-JSON values (dates, paths) as their str()."""
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str).decode()

except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare install working

    def _dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)


class LedgerError(RuntimeError):
    """A ledger operation that cannot be done as asked; the message says what and why."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that a transition is applied; durable once the ledger's commit group passes `group`."""

    code: str
    state: CodeState
    event_seq: int
    group: int


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
    ) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.group_window_s = group_window_s
        self.group_max = group_max
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns. Group commit keeps this affordable.
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute("PRAGMA cache_size=-65536")
            migrate(self._conn)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise LedgerError(f"{path} is not a usable lineagent ledger: {exc}") from exc
        self.checkpoints = 0  # PASSIVE checkpoints the checkpointer thread ran
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if str(path) != ":memory:":
            self._conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, args=(checkpoint_every_s,), name=f"ledger-checkpoint:{self.path.name}",
                daemon=True)
            self._checkpointer.start()
        self._group = 1  # the group currently collecting transitions
        self._committed = 0  # the last group made durable
        self._pending = 0
        self._group_started = 0.0
        self._savepoints = 0

    # ---- life cycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._lock:
            if self._conn.in_transaction:
                self.commit()
            if self._checkpointer is not None:
                with contextlib.suppress(sqlite3.Error):  # a reader still open: the next open finishes it
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

    def _checkpoint_loop(self, every_s: float) -> None:
        """Copy committed WAL pages into the database file without any lock the writer needs."""
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error:
            return  # the writer connection still checkpoints when it closes
        try:
            while not self._stop_checkpoints.wait(every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error:
                    continue  # PASSIVE does what it can; the next round retries
        finally:
            conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer connection, for reads inside the writer's view (take `lock` when threaded)."""
        return self._conn

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def reader(self) -> sqlite3.Connection:
        """A separate read-only connection that sees committed data and never blocks the writer."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    # ---- group commit -------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")
            self._group_started = time.monotonic()

    def commit(self) -> int:
        """Make everything applied so far durable; returns the group number now durable."""
        with self._lock:
            if self._savepoints:
                raise LedgerError("commit() inside an atomic() block; leave the block first")
            if self._conn.in_transaction:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise LedgerError(f"ledger commit failed ({exc}); nothing of this group is kept") from exc
                self._committed = self._group
                self._group += 1
                self._pending = 0
            return self._committed

    def rollback(self) -> None:
        """Drop every uncommitted transition of the open group (used when a commit failed)."""
        with self._lock:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._pending = 0
            self._savepoints = 0

    def maybe_commit(self) -> None:
        """Commit when the group window has passed or the group is full; call from a timer too."""
        with self._lock:
            if self._savepoints or not self._conn.in_transaction:
                return
            if (
                self._pending >= self.group_max
                or time.monotonic() - self._group_started >= self.group_window_s
            ):
                self.commit()

    def is_durable(self, receipt: Receipt) -> bool:
        return receipt.group <= self._committed

    @property
    def open_group(self) -> int:
        return self._group

    @contextmanager
    def atomic(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """All statements inside apply together or not at all; `durable=True` commits at the end."""
        with self._lock:
            self._begin()
            name = f"sp{self._savepoints}"
            self._conn.execute(f"SAVEPOINT {name}")
            self._savepoints += 1
            try:
                yield self._conn
            except BaseException:
                self._savepoints -= 1
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
                raise
            self._savepoints -= 1
            self._conn.execute(f"RELEASE {name}")
            self._pending += 1
            if durable:
                if self._savepoints:
                    raise LedgerError("durable=True inside another atomic() block")
                self.commit()
            elif not self._savepoints:
                self.maybe_commit()

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
            self._begin()
            cur = self._conn.execute(
                "INSERT INTO events(at, kind, code, job, uplink, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    time.time() if at is None else at,
                    kind,
                    code,
                    job,
                    int(uplink),
                    _dumps(payload or {}),
                ),
            )
            return int(cur.lastrowid or 0)

    def audit(self, action: str, args: dict[str, Any], result: str, *, user: str | None = None) -> None:
        """Record an operator action with the OS user who ran it; durable at once."""
        with self.atomic(durable=not self._savepoints):
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
        check and the change in one statement, the journal INSERT follows. Should that INSERT
        fail, the UPDATE is undone; should the undo fail too, the whole uncommitted group is
        rolled back and LedgerError raised, so a state is never kept without its event.
        """
        sources = self._sources(target, expect)
        now = time.time() if at is None else at
        with self._lock:
            self._begin()
            group = self._group
            row = self._conn.execute(
                f"UPDATE codes SET prev_state = state, state = ?, updated_at = ?, job = COALESCE(?, job) "
                f"WHERE code = ? AND state IN ({sources}) RETURNING id, prev_state, job",
                (target.value, now, job, code),
            ).fetchone()
            if row is None:
                self._refusal(code, target, expect)
            source = row[1]
            body = f'{{"from":"{source}"}}' if payload is None else _dumps({"from": source, **payload})
            try:
                cur = self._conn.execute(
                    "INSERT INTO events(at, kind, code, job, uplink, payload) VALUES (?, ?, ?, ?, ?, ?)",
                    (now, kind or _KIND[target], code, job if job is not None else row[2], int(uplink), body),
                )
            except sqlite3.Error as exc:
                self._undo(row[0], source, exc)
            self._pending += 1
            if not self._savepoints:
                self.maybe_commit()
            return Receipt(code, target, int(cur.lastrowid or 0), group)

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

    def _undo(self, code_id: int, source: str, exc: sqlite3.Error) -> NoReturn:
        try:
            self._conn.execute(
                "UPDATE codes SET state = prev_state, prev_state = NULL WHERE id = ? AND prev_state = ?",
                (code_id, source),
            )
        except sqlite3.Error:
            self.rollback()
            raise LedgerError(
                f"ledger write failed ({exc}) and could not be undone; the uncommitted group was "
                "rolled back (nothing durable was lost)"
            ) from exc
        raise LedgerError(f"ledger write failed ({exc}); the transition was not applied") from exc

    def transition_many(
        self,
        codes: Sequence[str],
        target: CodeState,
        *,
        expect: CodeState,
        kind: str | None = None,
        job: int | None = None,
    ) -> int:
        """Move many codes that are all in `expect` to `target` in one step, journaled as one event.

        Used where one physical act moves a batch (a FIFO refill, a reconcile after a stop). All or
        nothing: if any code is not in `expect`, nothing changes and the error names it.
        """
        check_transition("*", expect, target)
        if not codes:
            return self._group
        now = time.time()
        with self._lock:
            group = self._group
        with self._lock, self.atomic():
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
                "UPDATE codes SET state = ?, updated_at = ?, job = COALESCE(?, job) "
                "WHERE code IN (SELECT code FROM _batch)",
                (target.value, now, job),
            )
            self.append_event(
                kind or f"codes.{target.value}",
                {"from": expect.value, "count": len(codes), "codes": list(codes)},
                job=job,
                at=now,
            )
        return group

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
                    "UPDATE codes SET state = 'allocated', job = ?, updated_at = ? WHERE id IN "
                    "(SELECT id FROM codes INDEXED BY codes_pool WHERE level = ? "
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
