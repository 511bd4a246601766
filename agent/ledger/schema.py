"""Versioned schema migrations for the ledger.

Each migration is plain SQL applied in one transaction with its version bump, so a crash mid-way
leaves the file at the previous version. Later parts of the agent append migrations here; a
migration is never edited once released, because ledgers on lines in the field already ran it.
"""

from __future__ import annotations

import sqlite3

# Numbers reserved while parts land: 2 sync (outbox delivery), 3 aggregation, 4 verification, 5 feeder,
# 6 the state guard (CHECK and transition trigger on codes), 7 restart tracking and the escaped state,
# 8 the packs being built on the line.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE packages (
            id           INTEGER PRIMARY KEY,
            package_id   TEXT NOT NULL UNIQUE,   -- manifest id, or sha256 of an unsigned file
            issuer       TEXT NOT NULL,
            level        TEXT NOT NULL,
            count        INTEGER NOT NULL,
            code_format  TEXT NOT NULL,
            body_sha256  TEXT NOT NULL,
            source       TEXT NOT NULL CHECK (source IN ('signed', 'txt', 'csv', 'minted')),
            signed       INTEGER NOT NULL,
            created_at   TEXT,
            imported_at  REAL NOT NULL,
            file_name    TEXT
        );

        CREATE TABLE jobs (
            id            INTEGER PRIMARY KEY,
            name          TEXT NOT NULL UNIQUE,
            gtin          TEXT NOT NULL,
            product_name  TEXT NOT NULL,
            lot           TEXT NOT NULL,
            expiry        TEXT,                  -- ISO date
            target_qty    INTEGER NOT NULL,
            level         TEXT NOT NULL,         -- the level of the codes printed on items
            packing_spec  TEXT,
            template      TEXT NOT NULL,
            state         TEXT NOT NULL,
            created_at    REAL NOT NULL,
            started_at    REAL,
            finished_at   REAL
        );

        CREATE TABLE codes (
            id          INTEGER PRIMARY KEY,
            code        TEXT NOT NULL,
            level       TEXT NOT NULL,
            package     INTEGER NOT NULL REFERENCES packages(id),
            state       TEXT NOT NULL DEFAULT 'available',
            prev_state  TEXT,                    -- the state before the last transition
            job         INTEGER REFERENCES jobs(id),
            updated_at  REAL
        );
        -- The guarantee: a code can be held once, so it can be allocated once.
        CREATE UNIQUE INDEX codes_code ON codes(code);
        CREATE INDEX codes_pool ON codes(level, id) WHERE state IN ('available', 'returned');
        CREATE INDEX codes_job ON codes(job, state) WHERE job IS NOT NULL;

        -- One physical product on the line, tied to its code and conveyor sequence number.
        CREATE TABLE items (
            id          INTEGER PRIMARY KEY,
            job         INTEGER NOT NULL REFERENCES jobs(id),
            code        INTEGER NOT NULL UNIQUE REFERENCES codes(id),
            seq         INTEGER,
            verdict     TEXT,
            grade       TEXT,
            printed_at  REAL,
            judged_at   REAL
        );

        -- A parent (box, case, pallet) is a code too; packs hold its aggregation state.
        CREATE TABLE packs (
            id              INTEGER PRIMARY KEY,
            code            INTEGER NOT NULL UNIQUE REFERENCES codes(id),
            level           TEXT NOT NULL,
            job             INTEGER REFERENCES jobs(id),
            state           TEXT NOT NULL,
            expected_count  INTEGER NOT NULL,
            partial_reason  TEXT,
            created_at      REAL NOT NULL,
            closed_at       REAL
        );
        -- child is the primary key: a child is in at most one parent, by construction.
        CREATE TABLE pack_links (
            child      INTEGER PRIMARY KEY REFERENCES codes(id),
            parent     INTEGER NOT NULL REFERENCES codes(id),
            linked_at  REAL NOT NULL
        );
        CREATE INDEX pack_links_parent ON pack_links(parent);

        -- The append-only journal of every fact; rows with uplink=1 are the transactional outbox.
        CREATE TABLE events (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            at       REAL NOT NULL,
            kind     TEXT NOT NULL,
            code     TEXT,
            job      INTEGER,
            uplink   INTEGER NOT NULL DEFAULT 0,
            payload  TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_code ON events(code) WHERE code IS NOT NULL;
        CREATE INDEX events_uplink ON events(seq) WHERE uplink = 1;
        CREATE TRIGGER events_append_only_u BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'the event journal is append-only'); END;
        CREATE TRIGGER events_append_only_d BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'the event journal is append-only'); END;

        CREATE TABLE audit (
            id       INTEGER PRIMARY KEY,
            at       REAL NOT NULL,
            os_user  TEXT NOT NULL,
            action   TEXT NOT NULL,
            args     TEXT NOT NULL,
            result   TEXT NOT NULL
        );
        """,
    ),
    (
        2,
        """
        -- Sync: delivery state of the outbox (events with uplink=1). The journal stays append-only; a
        -- batch is a fixed seq range of it, so a resent batch rebuilds to the same events and eventIDs.
        CREATE TABLE sync_batches (
            id         INTEGER PRIMARY KEY,      -- sent in this order: order is kept per line
            first_seq  INTEGER NOT NULL,
            last_seq   INTEGER NOT NULL,
            events     INTEGER NOT NULL,
            created_at REAL NOT NULL,
            sent_at    REAL,                     -- last publish; NULL = due now
            attempts   INTEGER NOT NULL DEFAULT 0,
            acked_at   REAL,                     -- the receiver's ack arrived: delivered
            outcome    TEXT,                     -- 'stored', or 'invalid: <why>' from the receiver
            resend     INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX sync_batches_open ON sync_batches(id) WHERE acked_at IS NULL;
        CREATE TABLE sync_state (
            key    TEXT PRIMARY KEY,             -- 'cursor': last outbox seq put into a batch
            value  TEXT NOT NULL
        );
        -- Downlink: every signed message accepted or refused, for replay protection and audit.
        CREATE TABLE sync_commands (
            id        INTEGER PRIMARY KEY,
            at        REAL NOT NULL,
            msg_id    TEXT,
            seq       INTEGER,
            kind      TEXT,
            status    TEXT NOT NULL,
            detail    TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE sync_chunks (
            package_id  TEXT NOT NULL,
            idx         INTEGER NOT NULL,
            total       INTEGER NOT NULL,
            data        BLOB NOT NULL,
            PRIMARY KEY (package_id, idx)
        );
        """,
    ),
    (
        3,
        """
        -- Aggregation: what packs went through (replace, unlink, park, force-close), kept for audit.
        CREATE TABLE pack_history (
            id      INTEGER PRIMARY KEY,
            at      REAL NOT NULL,
            action  TEXT NOT NULL,
            code    INTEGER NOT NULL REFERENCES codes(id),  -- the pack (or child) acted on
            other   INTEGER REFERENCES codes(id),           -- replace: the new code; unlink: the parent
            detail  TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX pack_history_code ON pack_history(code);
        CREATE INDEX pack_history_other ON pack_history(other) WHERE other IS NOT NULL;
        CREATE INDEX packs_unfinished ON packs(level, state) WHERE state IN ('open', 'parked');
        -- The SSCC serial counter: minted once, never again, even across restarts.
        CREATE TABLE sscc_series (
            series       TEXT PRIMARY KEY,               -- '<extension>:<company prefix>'
            package      INTEGER NOT NULL REFERENCES packages(id),
            next_serial  INTEGER NOT NULL
        );
        """,
    ),
    (
        5,
        """
        -- The FIFO feeder: which code went to which coder under which seq. UNIQUE(code) makes "a code
        -- is pushed once, ever, to one coder" a property of the file, not only of the feeder's logic.
        CREATE TABLE coder_feed (
            coder    TEXT NOT NULL,
            seq      INTEGER NOT NULL,
            code     INTEGER NOT NULL UNIQUE REFERENCES codes(id),
            job      INTEGER NOT NULL REFERENCES jobs(id),
            sent_at  REAL NOT NULL,
            PRIMARY KEY (coder, seq)
        ) WITHOUT ROWID;
        -- Per coder: everything up to settled_seq is settled (printed or in doubt); print_count is the
        -- coder's own counter at that moment, so counter-only coders can be reconciled after a crash.
        CREATE TABLE coder_marks (
            coder        TEXT PRIMARY KEY,
            settled_seq  INTEGER NOT NULL,
            print_count  INTEGER,
            at           REAL NOT NULL
        );
        """,
    ),
    (
        6,
        """
        -- One authority for code states, enforced by the file as well as by the code: a CHECK on the
        -- values, and a trigger that refuses every move not in code_transitions, which holds exactly
        -- the pairs of agent.ledger.states.TRANSITIONS (tests/ledger/test_schema_guard.py checks that
        -- they agree, so a change of the table needs a migration that changes these rows too).
        -- Why OR chains and a lookup table, not IN lists: SQLite builds an IN list's lookup table
        -- afresh on every execution, which made each transition 10 us slower; these cost ~1 us.
        -- SQLite cannot add a CHECK to a column, so codes is rebuilt (foreign keys off meanwhile:
        -- see migrate()); ids are kept, so every reference to a code still holds.
        CREATE TABLE codes_v6 (
            id          INTEGER PRIMARY KEY,
            code        TEXT NOT NULL,
            level       TEXT NOT NULL,
            package     INTEGER NOT NULL REFERENCES packages(id),
            state       TEXT NOT NULL DEFAULT 'available' CHECK (
                        state = 'available' OR state = 'allocated' OR state = 'sent' OR
                        state = 'printed' OR state = 'verified' OR state = 'rejected' OR
                        state = 'in_doubt' OR state = 'voided' OR state = 'returned'),
            prev_state  TEXT CHECK (prev_state IS NULL OR
                        prev_state = 'available' OR prev_state = 'allocated' OR prev_state = 'sent' OR
                        prev_state = 'printed' OR prev_state = 'verified' OR prev_state = 'rejected' OR
                        prev_state = 'in_doubt' OR prev_state = 'voided' OR prev_state = 'returned'),
            job         INTEGER REFERENCES jobs(id),
            updated_at  REAL
        );
        INSERT INTO codes_v6(id, code, level, package, state, prev_state, job, updated_at)
            SELECT id, code, level, package, state, prev_state, job, updated_at FROM codes;
        DROP TABLE codes;
        ALTER TABLE codes_v6 RENAME TO codes;
        CREATE UNIQUE INDEX codes_code ON codes(code);
        CREATE INDEX codes_pool ON codes(level, id) WHERE state IN ('available', 'returned');
        CREATE INDEX codes_job ON codes(job, state) WHERE job IS NOT NULL;

        CREATE TABLE code_transitions (
            source  TEXT NOT NULL,
            target  TEXT NOT NULL,
            PRIMARY KEY (source, target)
        ) WITHOUT ROWID;
        INSERT INTO code_transitions(source, target) VALUES
            ('available', 'allocated'), ('available', 'voided'),
            ('allocated', 'sent'), ('allocated', 'printed'), ('allocated', 'voided'), ('allocated', 'returned'),
            ('sent', 'printed'), ('sent', 'in_doubt'), ('sent', 'returned'),
            ('printed', 'verified'), ('printed', 'rejected'),
            ('verified', 'rejected'),
            ('in_doubt', 'printed'), ('in_doubt', 'voided'),
            ('returned', 'allocated'), ('returned', 'voided');
        CREATE TRIGGER code_transitions_fixed_i BEFORE INSERT ON code_transitions
            BEGIN SELECT RAISE(ABORT, 'code_transitions changes only by a schema migration'); END;
        CREATE TRIGGER code_transitions_fixed_u BEFORE UPDATE ON code_transitions
            BEGIN SELECT RAISE(ABORT, 'code_transitions changes only by a schema migration'); END;
        CREATE TRIGGER code_transitions_fixed_d BEFORE DELETE ON code_transitions
            BEGIN SELECT RAISE(ABORT, 'code_transitions changes only by a schema migration'); END;
        CREATE TRIGGER codes_legal_transition BEFORE UPDATE OF state ON codes
            WHEN NEW.state IS NOT OLD.state AND NOT EXISTS (
                SELECT 1 FROM code_transitions WHERE source = OLD.state AND target = NEW.state)
            BEGIN SELECT RAISE(ABORT, 'illegal code transition (see agent/ledger/states.py)'); END;
        """,
    ),
    (
        7,
        """
        -- Tracking that survives a restart, and the `escaped` state (agent/verify/binding.py).
        -- 1. `escaped`: printed on a product that left the line with no verdict carried out at the gate
        --    (passed unjudged under a reject-only gate, or a reject the gate sensor did not confirm).
        --    Never reported void. The CHECK on codes.state must name it, and SQLite cannot change a
        --    CHECK, so codes is rebuilt as in migration 6 (ids kept; references checked before commit).
        CREATE TABLE codes_v7 (
            id          INTEGER PRIMARY KEY,
            code        TEXT NOT NULL,
            level       TEXT NOT NULL,
            package     INTEGER NOT NULL REFERENCES packages(id),
            state       TEXT NOT NULL DEFAULT 'available' CHECK (
                        state = 'available' OR state = 'allocated' OR state = 'sent' OR state = 'printed' OR
                        state = 'verified' OR state = 'rejected' OR state = 'in_doubt' OR state = 'voided' OR
                        state = 'returned' OR state = 'escaped'),
            prev_state  TEXT CHECK (prev_state IS NULL OR
                        prev_state = 'available' OR prev_state = 'allocated' OR prev_state = 'sent' OR
                        prev_state = 'printed' OR prev_state = 'verified' OR prev_state = 'rejected' OR
                        prev_state = 'in_doubt' OR prev_state = 'voided' OR prev_state = 'returned' OR
                        prev_state = 'escaped'),
            job         INTEGER REFERENCES jobs(id),
            updated_at  REAL
        );
        INSERT INTO codes_v7(id, code, level, package, state, prev_state, job, updated_at)
            SELECT id, code, level, package, state, prev_state, job, updated_at FROM codes;
        DROP TABLE codes;
        ALTER TABLE codes_v7 RENAME TO codes;
        CREATE UNIQUE INDEX codes_code ON codes(code);
        CREATE INDEX codes_pool ON codes(level, id) WHERE state IN ('available', 'returned');
        CREATE INDEX codes_job ON codes(job, state) WHERE job IS NOT NULL;
        DROP TRIGGER code_transitions_fixed_i;
        INSERT INTO code_transitions(source, target) VALUES ('printed', 'escaped');
        CREATE TRIGGER code_transitions_fixed_i BEFORE INSERT ON code_transitions
            BEGIN SELECT RAISE(ABORT, 'code_transitions changes only by a schema migration'); END;
        CREATE TRIGGER codes_legal_transition BEFORE UPDATE OF state ON codes
            WHEN NEW.state IS NOT OLD.state AND NOT EXISTS (
                SELECT 1 FROM code_transitions WHERE source = OLD.state AND target = NEW.state)
            BEGIN SELECT RAISE(ABORT, 'illegal code transition (see agent/ledger/states.py)'); END;

        -- 2. Which code is on which conveyor position, durable when the binding is made, so a restart
        --    tracks the items in flight with their own code. One row per item between print head and
        --    gate (seq: the PLC counter, unwrapped, continued across restarts); deleted once the item's
        --    fate at the gate is recorded. verdict NULL: not judged yet; released 1: release_fire written.
        CREATE TABLE conveyor_items (
            station   TEXT NOT NULL,
            seq       INTEGER NOT NULL,
            coder     TEXT,
            feed_seq  INTEGER,
            code      INTEGER REFERENCES codes(id),
            verdict   TEXT,
            reason    TEXT,
            released  INTEGER NOT NULL DEFAULT 0,
            bound_at  REAL NOT NULL,
            PRIMARY KEY (station, seq)
        ) WITHOUT ROWID;
        -- Per verify station: the newest item bound and the coder feed seq printed on it, the base from
        -- which a restart proves (PLC counter against coder counter) what passed the head meanwhile.
        CREATE TABLE conveyor_marks (
            station   TEXT PRIMARY KEY,
            seq       INTEGER NOT NULL,
            coder     TEXT,
            feed_seq  INTEGER,
            at        REAL NOT NULL
        );
        """,
    ),
    (
        8,
        """
        -- The pack being built on the line, before it has a parent code (agent/aggregation/builds.py):
        -- its children are recorded as they are verified, so a kill loses none of them; the parent code
        -- (a label printed and read back, an SSCC minted) is obtained when it closes, and the build then
        -- points at the pack it became. One open build per job and level: where the next child goes.
        CREATE TABLE pack_builds (
            id          INTEGER PRIMARY KEY,
            job         INTEGER NOT NULL REFERENCES jobs(id),
            level       TEXT NOT NULL,
            state       TEXT NOT NULL CHECK (state IN ('open', 'parked', 'closed', 'rejected', 'dropped')),
            expected    INTEGER NOT NULL,
            parent      INTEGER REFERENCES codes(id),
            reason      TEXT,
            opened_at   REAL NOT NULL,
            ended_at    REAL
        );
        CREATE UNIQUE INDEX pack_builds_one_open ON pack_builds(job, level) WHERE state = 'open';
        CREATE INDEX pack_builds_unfinished ON pack_builds(job, level, state) WHERE state IN ('open', 'parked');
        -- child is the primary key: a child is taken into a build once, ever; a row stays when its build
        -- closes, so a child later unlinked from its pack is not taken again by a restart.
        CREATE TABLE pack_build_children (
            child     INTEGER PRIMARY KEY REFERENCES codes(id),
            build     INTEGER NOT NULL REFERENCES pack_builds(id),
            added_at  REAL NOT NULL
        );
        CREATE INDEX pack_build_children_build ON pack_build_children(build);
        """,
    ),
    (
        9,
        """
        -- The audit's own clock beside its wall time: the boot's id and seconds since boot
        -- (CLOCK_BOOTTIME, agent/clock.py). An expiry counted from the audit by another process (the
        -- PIN lock-out) is measured on it, so setting the wall clock cannot end it early. NULL in rows
        -- written before this migration: those are measured by the wall clock.
        ALTER TABLE audit ADD COLUMN boot TEXT;
        ALTER TABLE audit ADD COLUMN boot_s REAL;
        """,
    ),
]


class SchemaTooNew(RuntimeError):
    pass


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to the newest version; returns it. Refuses a file newer than this code."""
    version = current_version(conn)
    ordered = sorted(MIGRATIONS)
    numbers = [n for n, _ in ordered]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"duplicate ledger migration numbers: {numbers}")
    newest = ordered[-1][0]
    if version > newest:
        raise SchemaTooNew(
            f"ledger schema version {version} is newer than this lineagent knows ({newest}); "
            "upgrade lineagent instead of opening it with an older one"
        )
    if version == newest:
        return version
    # Foreign keys off while migrating: a table rebuild (migration 6) drops and renames a table others
    # reference, which SQLite only allows with them off; foreign_key_check proves every reference
    # still holds before each migration commits. (The pragma is a no-op inside a transaction.)
    fks = int(conn.execute("PRAGMA foreign_keys").fetchone()[0])
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        for number, sql in ordered:
            if number <= version:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split(sql):
                    conn.execute(statement)
                broken = conn.execute("PRAGMA foreign_key_check").fetchmany(5)
                if broken:
                    raise sqlite3.IntegrityError(f"migration {number} would break references: {broken}")
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            version = number
    finally:
        conn.execute(f"PRAGMA foreign_keys={'ON' if fks else 'OFF'}")
    return version


def _split(sql: str) -> list[str]:
    """Split a migration into statements; triggers hold ';' inside BEGIN...END, so keep them whole."""
    out: list[str] = []
    buf: list[str] = []
    for line in sql.splitlines():
        stripped = line.split("--", 1)[0].rstrip()
        if not stripped.strip():
            continue
        buf.append(stripped)
        joined = "\n".join(buf)
        if stripped.endswith(";") and (
            "CREATE TRIGGER" not in joined.upper() or joined.upper().rstrip(";").rstrip().endswith("END")
        ):
            out.append(joined)
            buf = []
    if buf:
        out.append("\n".join(buf))
    return out
