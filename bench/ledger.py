"""Ledger figures: signed-package import, batch allocation, single transitions under group commit.

Each beside a raw sqlite3 executemany doing the same rows in the same run (same WAL/FULL settings),
so the ratio says what our checks, journal and API cost over the bare database.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from agent.codes.importer import import_file
from agent.codes.package import generate_keys, load_signing_key, make_package
from agent.config import load_config
from agent.jobs import JobSpec, create_job
from agent.ledger import CodeState, Ledger
from bench import Figure

CONFIG = """\
site: {id: bench}
line: {id: L1}
security: {cloud_public_key: keys/public.pem}
"""


def _raw_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE codes(id INTEGER PRIMARY KEY, code TEXT NOT NULL, level TEXT, package INT,"
                 " state TEXT DEFAULT 'available', job INT, updated_at REAL)")
    conn.execute("CREATE UNIQUE INDEX codes_code ON codes(code)")
    conn.execute("CREATE TABLE events(seq INTEGER PRIMARY KEY, at REAL, kind TEXT, code TEXT, payload TEXT)")
    return conn


def _raw_single_transitions(raw: sqlite3.Connection, codes: list[str], *, window_s: float) -> tuple[float, float]:
    """Like for like with Ledger.transition: one UPDATE of one row and one journal INSERT per code, from
    Python, committed whenever the group window has passed (the ledger's commit policy)."""
    t0, c0 = time.perf_counter(), time.process_time()
    raw.execute("BEGIN")
    opened = time.monotonic()
    for c in codes:
        now = time.time()
        raw.execute("UPDATE codes SET state='sent', updated_at=? WHERE code=? AND state='allocated'", (now, c))
        raw.execute("INSERT INTO events(at, kind, code, payload) VALUES (?, 'code.sent', ?, '{}')", (now, c))
        if time.monotonic() - opened >= window_s:
            raw.execute("COMMIT")
            raw.execute("BEGIN")
            opened = time.monotonic()
    raw.execute("COMMIT")
    return time.perf_counter() - t0, time.process_time() - c0


def run(quick: bool) -> dict[str, Figure]:
    n = 200_000 if quick else 1_000_000
    out: dict[str, Figure] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        generate_keys(tmp / "keys")
        (tmp / "line.yaml").write_text(CONFIG)
        cfg = load_config(tmp / "line.yaml")
        codes = [f"C{i:012d}" for i in range(n)]
        pkg = tmp / "big.lapkg"
        pkg.write_bytes(make_package(codes, level="item", signing_key=load_signing_key(tmp / "keys/private.pem")))

        # Import: verify signature + hash, parse and check every line, insert, one commit.
        ledger = Ledger(tmp / "ledger.db")
        t0 = time.perf_counter()
        import_file(ledger, pkg, cfg)
        import_s = time.perf_counter() - t0
        raw = _raw_conn(tmp / "raw.db")
        t0 = time.perf_counter()
        raw.execute("BEGIN")
        raw.executemany("INSERT INTO codes(code, level, package) VALUES (?, 'item', 1)", ((c,) for c in codes))
        raw.execute("COMMIT")
        raw_import_s = time.perf_counter() - t0
        out["ledger.import_codes_per_s"] = Figure(
            n / import_s, "codes/s", n / raw_import_s, 100_000,
            note=f"{n:,}-code signed package in {import_s:.2f} s (target: 1,000,000 in under 10 s)")

        # Allocation in batches of 1,000 (each batch durable on return).
        job = create_job(ledger, JobSpec(name="bench", gtin="09506000134352", product_name="b", lot="L",
                                         target_qty=n))
        alloc_n = n // 2
        t0 = time.perf_counter()
        allocated: list[str] = []
        for _ in range(alloc_n // 1000):
            allocated.extend(ledger.allocate(job, "item", 1000))
        alloc_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(0, alloc_n, 1000):
            raw.execute("BEGIN")
            raw.execute("UPDATE codes SET state='allocated', job=1 WHERE id IN (SELECT id FROM codes "
                        "WHERE state='available' ORDER BY id LIMIT 1000)")
            raw.execute("COMMIT")
        raw_alloc_s = time.perf_counter() - t0
        out["ledger.allocate_codes_per_s"] = Figure(alloc_n / alloc_s, "codes/s", alloc_n / raw_alloc_s, 100_000)

        # Single-code transitions, each with its journal event, under 10 ms group commit.
        tn = min(100_000 if quick else 200_000, len(allocated))
        subset = allocated[:tn]
        ledger.group_window_s = 0.010
        t0, c0 = time.perf_counter(), time.process_time()
        for c in subset:
            ledger.transition(c, CodeState.SENT)
        ledger.commit()
        trans_s, trans_cpu = time.perf_counter() - t0, time.process_time() - c0
        raw_trans_s, raw_cpu = _raw_single_transitions(raw, subset, window_s=0.010)
        out["ledger.transitions_per_s"] = Figure(
            tn / trans_s, "transitions/s", tn / raw_trans_s, 20_000,
            note="each: one guarded state change + its journal event, 10 ms group commit, synchronous=FULL; "
                 "baseline: raw sqlite3 doing one single-row UPDATE + one INSERT per transition under the "
                 "same 10 ms commit timer")
        out["ledger.transitions_per_cpu_s"] = Figure(
            tn / trans_cpu, "transitions/cpu-s", tn / raw_cpu, 20_000,
            note=f"the same run in CPU seconds of this process ({trans_cpu / tn * 1e6:.1f} us per transition, "
                 f"raw {raw_cpu / tn * 1e6:.1f} us): steadier than wall time on a shared machine")
        raw.close()
        ledger.close()
    return out
