"""Run every benchmark part and write bench/results.json (figures + machine facts)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sqlite3
import sys
import time
import traceback
from pathlib import Path

# Parts, in the order they run. Each module has run(quick: bool) -> dict[str, Figure].
PARTS: list[str] = [
    "bench.ledger",
    "bench.aggregation",
    "bench.sync",
    "bench.decode",
    "bench.verify",
    "bench.line",
    "bench.coder",
]


def machine() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "sqlite": sqlite3.sqlite_version,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes in all")
    ap.add_argument("--only", action="append", default=[], help="run only parts whose name contains this")
    ap.add_argument("--out", default="bench/results.json")
    args = ap.parse_args()
    results: dict[str, object] = {"machine": machine(), "quick": args.quick}
    failed = []
    for part in PARTS:
        if args.only and not any(o in part for o in args.only):
            continue
        print(f"== {part}", flush=True)
        t0 = time.perf_counter()
        try:
            figures = importlib.import_module(part).run(args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(part)
            continue
        for key, fig in figures.items():
            results[key] = fig.as_json()
            base = f" (baseline {fig.baseline:,.1f}, ratio {fig.ratio})" if fig.baseline else ""
            print(f"  {key}: {fig.value:,.2f} {fig.unit}{base} target {fig.target}", flush=True)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    if failed:
        print(f"failed parts: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
