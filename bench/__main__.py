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
from importlib import metadata
from pathlib import Path

from bench import merge

# Parts, in the order they run. Each module has run(quick: bool) -> dict[str, Figure].
PARTS: list[str] = [
    "bench.ledger",
    "bench.aggregation",
    "bench.sync",
    "bench.decode",
    "bench.verify",
    "bench.line",
    "bench.coder",
    "bench.profile",
]
# How often each part runs by default (quick, full): the cheap ones repeat so the report can give the
# spread a shared machine puts on them; the long ones (a live line, a broker drain) run once in quick.
REPEATS: dict[str, tuple[int, int]] = {
    "bench.ledger": (3, 3),
    "bench.aggregation": (3, 3),
    "bench.decode": (2, 3),
    "bench.verify": (2, 3),
    "bench.sync": (1, 2),
    "bench.line": (1, 2),
    "bench.coder": (1, 1),
    "bench.profile": (1, 1),
}
LIBRARIES = ("pymodbus", "paho-mqtt", "zxing-cpp", "opencv-python-headless", "pydantic", "orjson", "numpy",
             "cryptography", "pyserial")


def machine() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "sqlite": sqlite3.sqlite_version,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_avg_at_start": list(os.getloadavg()),
        "libraries": _versions(),
    }


def _versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


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
    ap.add_argument("--repeat", type=int, default=0, help="runs of every part (default: per part, see REPEATS)")
    ap.add_argument("--doc", default="docs/benchmarks.md", help="where the readable report goes ('' for none)")
    ap.add_argument("--update", action="store_true",
                    help="keep the figures of parts not run now from the existing results file")
    args = ap.parse_args()
    results: dict[str, object] = {"machine": machine(), "quick": args.quick}
    if args.update and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        results.update({k: v for k, v in old.items() if k not in ("machine", "quick")})
        results["machine_of_earlier_parts"] = old.get("machine")
    failed = []
    for part in PARTS:
        if args.only and not any(o in part for o in args.only):
            continue
        repeat = args.repeat or REPEATS.get(part, (1, 1))[0 if args.quick else 1]
        print(f"== {part}" + (f" (x{repeat})" if repeat > 1 else ""), flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(part)
            runs = [module.run(args.quick) for _ in range(repeat)]
        except Exception:
            traceback.print_exc()
            failed.append(part)
            continue
        figures = {key: merge([r[key] for r in runs if key in r]) for key in runs[0]}
        for key, fig in figures.items():
            results[key] = fig.as_json()
            b = fig.baseline
            base = f" (baseline {b:,.3f}, ratio {fig.ratio})" if b and abs(b) < 10 else (
                f" (baseline {b:,.1f}, ratio {fig.ratio})" if b else "")
            print(f"  {key}: {fig.value:,.2f} {fig.unit}{base} target {fig.target}", flush=True)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    results["machine"]["load_avg_at_end"] = list(os.getloadavg())  # type: ignore[index]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.doc:
        from bench.report import write_report
        for path in write_report(results, Path(args.out), Path(args.doc)):
            print(f"wrote {path}")
    if failed:
        print(f"failed parts: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
