"""Aggregation figures: packing 1,000,000 bottles into 6/4/40 packs, and trace latency at that size.

`aggregation.items_per_s` runs every pack through the full rules (read in the transaction, parent
commissioned, links, EPCIS AggregationEvent ADD journaled as an uplink row), boxes and cases closed
in bursts as a counting station does; `aggregation.single_pack_items_per_s` is the one-transaction-
per-pack camera station path. Their baseline is a raw sqlite3 executemany of the same links into
the same schema, the floor no checked path can beat. `trace.p99_ms` traces random codes of every
level (bottles, boxes, cases and pallets in the proportion they exist) with 1,000,000 items in the
ledger; its baseline is one raw recursive CTE per code (ancestors and descendants, no Python objects).

Each is also given in CPU time (`time.process_time`: `aggregation.items_per_cpu_s`, `trace.cpu_p99_ms`)
because the line PC and the CI box are shared: at a load of 3-6 on two cores the wall figures say
more about the neighbours than about the code, while CPU seconds per item stay put.

What the CPU per bottle buys beyond the links: the bottles are held as full Digital Link URLs, so
every event names each one by the SGTIN read out of its link (agent/epcis/identity.py; about a
quarter of the CPU), and every box, case and pallet code is commissioned (an ObjectEvent ADD) before
the event that packs it. Both are rules of the EPCIS identity, not overheads to bench around.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from agent.aggregation import trace as tracing
from agent.aggregation.burst import pack_burst
from agent.aggregation.events import EventContext
from agent.aggregation.model import plan_levels
from agent.aggregation.packs import Aggregator
from agent.config.model import PackingSpec
from agent.jobs import JobSpec, create_job
from agent.ledger import Ledger
from bench import Figure

SPEC = PackingSpec.model_validate({"levels": [
    {"level": "item"},
    {"level": "box", "count": 6, "parent_code": "preprinted"},
    {"level": "case", "count": 4, "parent_code": "preprinted"},
    {"level": "pallet", "count": 40, "parent_code": "mint"},
]})
PER_PALLET = 6 * 4 * 40


def _seed(ledger: Ledger, level: str, codes: list[str], job: int | None, state: str) -> None:
    with ledger.atomic(durable=True) as conn:
        cur = conn.execute(
            "INSERT INTO packages(package_id, issuer, level, count, code_format, body_sha256, source, signed,"
            " imported_at) VALUES (?, 'bench', ?, ?, 'raw', '-', 'txt', 0, 0)", (f"bench-{level}", level, len(codes)))
        conn.executemany("INSERT INTO codes(code, level, package, state, job) VALUES (?, ?, ?, ?, ?)",
                         [(c, level, cur.lastrowid, state, job) for c in codes])


def _floor(path: Path, n_items: int) -> tuple[Ledger, int, dict[str, list[str]]]:
    ledger = Ledger(path)
    job = create_job(ledger, JobSpec("bench", "09506000134352", "Water", "LOT1", n_items))
    pallets = n_items // PER_PALLET
    codes = {
        "item": [f"https://id.example.com/01/09506000134352/21/{i:010d}" for i in range(n_items)],
        "box": [f"BX{i:09d}" for i in range(n_items // 6)],
        "case": [f"CS{i:09d}" for i in range(n_items // 24)],
        "pallet": [f"00614141{i:010d}" for i in range(pallets)],
    }
    _seed(ledger, "item", codes["item"], job, "verified")
    for level in ("box", "case", "pallet"):
        _seed(ledger, level, codes[level], None, "available")
    return ledger, job, codes


def _aggregate(agg: Aggregator, job: int, codes: dict[str, list[str]], pallets: int, *, burst: bool) -> None:
    """Pallet by pallet: its 160 boxes, its 40 cases, then the pallet (as a palletiser would)."""
    items, boxes, cases = codes["item"], codes["box"], codes["case"]
    for p in range(pallets):
        box_packs = [(boxes[b], items[b * 6: b * 6 + 6]) for b in range(p * 160, p * 160 + 160)]
        case_packs = [(cases[c], boxes[c * 4: c * 4 + 4]) for c in range(p * 40, p * 40 + 40)]
        if burst:
            if pack_burst(agg, "box", box_packs, job=job) or pack_burst(agg, "case", case_packs, job=job):
                raise RuntimeError("a bench pack was rejected; the bench data is wrong")
        else:
            for parent, kids in box_packs:
                agg.pack("box", parent, kids, job=job)
            for parent, kids in case_packs:
                agg.pack("case", parent, kids, job=job)
        agg.pack("pallet", codes["pallet"][p], cases[p * 40: p * 40 + 40], job=job)
    agg.ledger.commit()


def _raw_links(path: Path, n_items: int) -> float:
    """The same links as bare executemany into the ledger schema (codes pre-seeded, no checks, no events)."""
    ledger, _, codes = _floor(path, n_items)
    ledger.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    ids: dict[str, int] = dict(conn.execute("SELECT code, id FROM codes"))
    items, boxes, cases = codes["item"], codes["box"], codes["case"]
    rows = [(ids[items[i]], ids[boxes[i // 6]], 0.0) for i in range(len(boxes) * 6)]
    rows += [(ids[boxes[i]], ids[cases[i // 4]], 0.0) for i in range(len(cases) * 4)]
    rows += [(ids[cases[i]], ids[codes["pallet"][i // 40]], 0.0) for i in range(len(codes["pallet"]) * 40)]
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO pack_links(child, parent, linked_at) VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] * 1000


def _raw_trace(conn: sqlite3.Connection, code: str) -> int:
    cid = conn.execute("SELECT id FROM codes WHERE code = ?", (code,)).fetchone()[0]
    up = conn.execute(
        "WITH RECURSIVE a(id) AS (SELECT ? UNION ALL SELECT l.parent FROM pack_links l JOIN a ON l.child = a.id)"
        " SELECT c.code, c.level, c.state FROM a JOIN codes c ON c.id = a.id", (cid,)).fetchall()
    down = conn.execute(
        "WITH RECURSIVE d(id) AS (SELECT ? UNION ALL SELECT l.child FROM pack_links l JOIN d ON l.parent = d.id)"
        " SELECT c.code, c.level, c.state FROM d JOIN codes c ON c.id = d.id", (cid,)).fetchall()
    return len(up) + len(down)


def run(quick: bool) -> dict[str, Figure]:
    n = 100_000 if quick else 1_000_000
    n -= n % PER_PALLET  # whole pallets: 6 x 4 x 40 = 960 bottles each
    out: dict[str, Figure] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        ledger, job, codes = _floor(tmp / "ledger.db", n)
        agg = Aggregator(ledger, plan_levels(SPEC), EventContext("urn:epc:id:sgln:0614141.00777.0", None))
        pallets = n // PER_PALLET
        # The one-pack-per-transaction station path on the first pallets (its rate does not depend on size).
        single = max(1, pallets // 10)
        t0 = time.perf_counter()
        _aggregate(agg, job, codes, single, burst=False)
        single_s = time.perf_counter() - t0
        rest = {k: v[single * {"item": PER_PALLET, "box": 160, "case": 40, "pallet": 1}[k]:] for k, v in codes.items()}
        t0, c0 = time.perf_counter(), time.process_time()
        _aggregate(agg, job, rest, pallets - single, burst=True)
        burst_s, burst_cpu = time.perf_counter() - t0, time.process_time() - c0
        raw_s = _raw_links(tmp / "raw.db", n)
        raw_rate = n / raw_s
        n_burst = (pallets - single) * PER_PALLET
        out["aggregation.items_per_s"] = Figure(
            n_burst / burst_s, "items/s", raw_rate, 20_000,
            note=f"{n_burst:,} bottles into 6/4/40 packs in {burst_s:.1f} s, boxes and cases closed in bursts of "
                 "a pallet's worth (every pack checked alone, linked, its AggregationEvent ADD journaled in the "
                 "same transaction), pallets one by one; baseline: raw executemany of the same links")
        out["aggregation.items_per_cpu_s"] = Figure(
            n_burst / burst_cpu, "items/cpu-s", None, 20_000,
            note=f"the same burst run in CPU seconds ({burst_cpu / n_burst * 1e6:.1f} us of CPU per bottle, "
                 f"{n_burst / burst_s:,.0f} items/s wall): what the line PC sustains when the agent has a core")
        out["aggregation.single_pack_items_per_s"] = Figure(
            single * PER_PALLET / single_s, "items/s", raw_rate, None,
            note=f"{single * PER_PALLET:,} bottles, one transaction per pack (the camera station path)")

        # Uniform over every code in the ledger: "trace any code", levels in the proportion they exist.
        everything = [c for level in ("item", "box", "case", "pallet") for c in codes[level]]
        rng = random.Random(7)
        sample = rng.sample(everything, 2000)
        conn = ledger.reader()
        ours, ours_cpu, raw = [], [], []
        for code in sample:
            t0, c0 = time.perf_counter(), time.process_time()
            tracing.trace(conn, code)
            ours.append(time.perf_counter() - t0)
            ours_cpu.append(time.process_time() - c0)
            t0 = time.perf_counter()
            _raw_trace(conn, code)
            raw.append(time.perf_counter() - t0)
        t0, c0 = time.perf_counter(), time.process_time()
        for pallet in codes["pallet"][:20]:
            tracing.trace(conn, pallet)
        pallet_ms = (time.perf_counter() - t0) / min(20, len(codes["pallet"])) * 1000
        pallet_cpu_ms = (time.process_time() - c0) / min(20, len(codes["pallet"])) * 1000
        out["trace.p99_ms"] = Figure(
            _p99(ours), "ms", _p99(raw), 5.0, higher_is_better=False,
            note=f"{len(sample)} codes drawn uniformly from the {len(everything):,} in the ledger ({n:,} items); "
                 f"a whole pallet (1,201 nodes) takes {pallet_ms:.1f} ms ({pallet_cpu_ms:.1f} ms CPU); "
                 "baseline: raw recursive CTE up and down")
        out["trace.cpu_p99_ms"] = Figure(
            _p99(ours_cpu), "ms", None, 5.0, higher_is_better=False,
            note=f"the same traces in CPU time (median {statistics.median(ours_cpu) * 1000:.2f} ms): the wall p99 "
                 "above on a loaded machine is mostly time spent waiting for a core")
        conn.close()
        ledger.close()
    return out
