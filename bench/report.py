"""The readable side of `scripts/bench`: docs/benchmarks.md and bench/results.png from results.json.

Why generated: a table copied by hand goes stale the day after; this one is rewritten by every run,
with the machine it ran on, the spread of repeated runs, and what each baseline is. The explanations
below are the only hand-written part; they say why each baseline is the like-for-like one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# Figure-name prefix -> (what the baseline is, why it is the right comparison).
BASELINES: dict[str, tuple[str, str]] = {
    "ledger.import": (
        "raw sqlite3 `executemany` INSERT of the same codes in one transaction, same WAL/FULL settings",
        "an import is one bulk transaction, so the bare bulk insert is what the database itself can do; "
        "the gap is signature and hash checks, per-line validation and the package row"),
    "ledger.allocate": (
        "raw sqlite3 UPDATE of the next 1,000 available rows per transaction",
        "allocation is batched in the agent too; the same batch size and commit per batch"),
    "ledger.transitions": (
        "raw sqlite3: per transition one single-row UPDATE and one journal INSERT, committed on the same "
        "10 ms group-commit timer",
        "the agent changes one code at a time (a print, a verdict), so a bulk executemany would compare a "
        "different workload; the baseline does the same single-row work under the same commit policy"),
    "aggregation": (
        "raw sqlite3 executemany of the same parent/child links",
        "the floor for writing the links; the gap is the packing rules, the EPCIS event with its hash and "
        "the journal"),
    "trace": (
        "one raw recursive CTE over the same links",
        "what the database alone needs to walk a pallet; the gap is building the answer"),
    "sync": (
        "a raw paho-mqtt publish loop of the same payloads to the same broker (QoS 1)",
        "the transport floor without outbox bookkeeping, acks or EPCIS documents"),
    "decode": (
        "pyzbar (QR) or zxing-cpp without the crop (DataMatrix) on the same frames",
        "the common open-source alternative, on the same images, read rate reported beside speed"),
    "verify": (
        "decode alone on the same frames",
        "what judging, grading and firing the reject add to reading the code"),
    "line": (
        "the same daemon on the same simulated line, every device connected and polled, no job (the PLC "
        "cycle, the status beat, the idle device probe, the uplink); `line.cpu_share_ready_no_items` is the "
        "job running with no products arriving, against the same baseline",
        "issue 10's comparison: what the agent costs on a line that is not producing; busy minus baseline "
        "is the cost of the items, and the ready figure splits it into being ready (coder primed, belt and "
        "gate polled) and the items themselves. The notes give each run's CPU by thread and its wall time, "
        "CPU seconds and the whole machine's busy cores side by side"),
    "coder": (
        "the link's theoretical rate for that protocol's bytes (baud / 10 bits per byte, every byte the "
        "protocol needs per record both ways)",
        "utilisation says how much of the wire the driver uses; single-slot coders also give the highest "
        "safe line rate"),
    "profile": ("none", "a profile, not a comparison"),
}


def _baseline_for(name: str) -> tuple[str, str, str]:
    for prefix, (what, why) in BASELINES.items():
        if name.startswith(prefix):
            return prefix, what, why
    return name, "(none)", ""


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if x != x:  # NaN
            return "–"
        return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.0f}"
    return str(x)


def _figures(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in results.items() if isinstance(v, dict) and "value" in v}


def write_report(results: dict[str, Any], json_path: Path, doc_path: Path) -> list[Path]:
    written = [_write_doc(results, doc_path)]
    png = json_path.with_suffix(".png")
    if _write_png(results, png):
        written.append(png)
    return written


def _write_doc(results: dict[str, Any], doc_path: Path) -> Path:
    m = results.get("machine", {})
    figs = _figures(results)
    lines = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench` (this file, `bench/results.json`, `bench/results.png`); do not edit by "
        "hand. Reproduce: `scripts/bench --quick` (a few minutes) or `scripts/bench` (the big runs); "
        "`--only PART`, `--repeat N`.",
        "",
        f"Run: {'quick' if results.get('quick') else 'full'}, {m.get('at', '?')}; {m.get('cpu', '?')}, "
        f"{m.get('cpu_count', '?')} cores, Python {m.get('python', '?')}, SQLite {m.get('sqlite', '?')}; "
        f"load average {m.get('load_avg_at_start', '?')} at start, {m.get('load_avg_at_end', '?')} at end. "
        "The machine is shared: wall-clock figures swing 2-3x with the neighbours' load, so CPU-time "
        "figures are given beside them and the spread of repeated runs is shown.",
        "",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in (m.get("libraries") or {}).items()),
        "",
        "| figure | value | unit | spread (runs) | baseline | ratio | target | met |",
        "|---|---:|---|---|---:|---:|---:|:-:|",
    ]
    for name, f in figs.items():
        spread = f.get("spread")
        spread_s = f"{_fmt(spread[0])} – {_fmt(spread[1])} ({len(f.get('runs', []))})" if spread else "–"
        met = {True: "yes", False: "**no**", None: "–"}[f.get("meets_target")]
        lines.append(f"| `{name}` | {_fmt(f['value'])} | {f['unit']} | {spread_s} | {_fmt(f.get('baseline'))} | "
                     f"{_fmt(f.get('ratio'))} | {_fmt(f.get('target'))} | {met} |")
    lines += ["", "## What each figure measured", ""]
    lines += [f"- `{name}`: {f.get('note') or '(no note)'}" for name, f in figs.items()]
    lines += ["", "## The baselines, and why each is the like-for-like one", ""]
    seen: set[str] = set()
    for name in figs:
        prefix, what, why = _baseline_for(name)
        if prefix in seen or what in ("(none)", "none"):
            continue
        seen.add(prefix)
        lines.append(f"- `{prefix}…`: {what}. Why: {why}.")
    missed = [(n, f) for n, f in figs.items() if f.get("meets_target") is False]
    lines += ["", "## Targets missed in this run", ""]
    lines += [f"- `{n}`: {_fmt(f['value'])} {f['unit']} against {_fmt(f.get('target'))}." for n, f in missed] or [
        "- none"]
    prof = Path("bench/profile.txt")
    if prof.exists():
        lines += ["", "## Where the line's time goes (profile at 2,000 items/min)", "",
                  "From `bench.profile` (py-spy over the simulated line, running threads only; full tree in "
                  "`bench/profile.txt`, not committed). The heaviest frames of the agent:", "", "```"]
        lines += prof.read_text().splitlines()[:60]
        lines += ["```"]
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text("\n".join(lines) + "\n")
    return doc_path


def _write_png(results: dict[str, Any], png: Path) -> bool:
    """One small panel per figure: ours beside the baseline, the target as a line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figs = [(n, f) for n, f in _figures(results).items() if f.get("baseline") is not None or f.get("target")]
    if not figs:
        return False
    cols = 4
    rows = math.ceil(len(figs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, f) in zip(axes.flat, figs, strict=False):
        labels, values, colours = ["ours"], [f["value"]], ["#1f77b4"]
        if f.get("baseline") is not None:
            labels.append("baseline")
            values.append(f["baseline"])
            colours.append("#aaaaaa")
        ax.bar(labels, values, color=colours)
        spread = f.get("spread")
        if spread:
            ax.errorbar([0], [f["value"]], yerr=[[f["value"] - spread[0]], [spread[1] - f["value"]]],
                        fmt="none", ecolor="black", capsize=4)
        if f.get("target") is not None:
            ax.axhline(f["target"], color="#d62728", linestyle="--", linewidth=1, label="target")
        ax.set_title(name, fontsize=8)
        ax.set_ylabel(f["unit"], fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(figs):]:
        ax.axis("off")
    fig.suptitle("lineagent benchmarks: ours (blue) against the same-run baseline (grey); red: target",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title above the panels
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return True
