"""The `lineagent top` screen: a snapshot dict (agent/cli/top_source.py) in, lines of text out.

Why plain lines and not rich tables or panels: the view must fit an 80x24 terminal over SSH without
wrapping or scrolling. Every line is built as one no-wrap Text and cut to the width with an ellipsis,
and when there are more lines than rows, the least important go first (priority 0 is never dropped:
daemon alive, stack light, job, alarms). Rates need two snapshots, so they come from `Rates`, which
keeps the recent ones; the first frame (and `--once`) shows a dash for them, never an invented figure.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text

SEVERITY_STYLE = {"stop": "bold white on red", "warning": "black on yellow", "info": "cyan"}
LIGHT_STYLE = {"green": "bold green", "amber": "bold yellow", "red": "bold red", "off": "dim"}
GOOD_WORDS = ("running", "printing", "connected", "feeding", "idle", "done", "ready", "ok", "primed", "open")
BAD_WORDS = ("fault", "error", "lost", "disconnect", "down", "fail", "degraded", "stopped", "offline", "dead")
ALARM = -1  # priority of alarm rows: like the header (0) never dropped, only counted when too many
KEEP_S = 65.0  # history kept for the 60 s rates


class Rates:
    """Items per minute and read rate over a window, from the snapshots seen so far.

    Why from successive snapshots rather than timestamps in the ledger: the same code serves a socket
    source later, which will send counters, not rows. A new job restarts the history.
    """

    def __init__(self) -> None:
        self._h: deque[tuple[float, int, int, int]] = deque()  # (at, printed, judged, good)
        self._job: object = None

    def add(self, snap: dict[str, Any]) -> None:
        job = snap.get("job")
        key = job["id"] if job else None
        if key != self._job:
            self._h.clear()
            self._job = key
        if job is None:
            return
        at = float(snap["at"])
        if self._h and at <= self._h[-1][0]:
            return
        self._h.append((at, int(job["printed"]), int(job["judged"]), int(job["good"])))
        while len(self._h) > 2 and at - self._h[1][0] >= KEEP_S:
            self._h.popleft()

    def _span(self, window_s: float) -> tuple[tuple[float, int, int, int], tuple[float, int, int, int]] | None:
        if len(self._h) < 2:
            return None
        last = self._h[-1]
        first = next((s for s in self._h if last[0] - s[0] <= window_s), self._h[-2])
        if first is last:
            first = self._h[-2]
        return (first, last) if last[0] > first[0] else None

    def covered(self, window_s: float) -> float:
        """How many seconds of the window the history covers (a fresh view covers less than 60 s)."""
        span = self._span(window_s)
        return 0.0 if span is None else span[1][0] - span[0][0]

    def per_min(self, window_s: float) -> float | None:
        """Items printed per minute over the last window_s seconds (or the history there is)."""
        span = self._span(window_s)
        if span is None:
            return None
        a, b = span
        return max(0, b[1] - a[1]) * 60.0 / (b[0] - a[0])

    def read_rate(self, window_s: float) -> float | None:
        """Good reads / items judged over the window; None when nothing was judged in it."""
        span = self._span(window_s)
        if span is None:
            return None
        a, b = span
        judged = b[2] - a[2]
        return (b[3] - a[3]) / judged if judged > 0 else None


def _state_style(word: object) -> str:
    w = str(word).lower()
    if any(b in w for b in BAD_WORDS):
        return "bold red"
    if any(g in w for g in GOOD_WORDS):
        return "green"
    return "yellow"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _window(rates: Rates, window_s: float) -> str:
    """The window a rate is over, as it really is: "(60 s)", or "(13 s)" while the view is young."""
    covered = rates.covered(window_s)
    return f"({covered:.0f} s)" if covered and abs(covered - window_s) > 1 else f"({window_s:.0f} s)"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100.0 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _line(*parts: tuple[str, str] | str) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    for p in parts:
        if isinstance(p, tuple):
            t.append(p[0], style=p[1])
        else:
            t.append(p)
    return t


def _pack(level: str, p: dict[str, int]) -> str:
    extra = "".join(f", {p[k]} {k}" for k in ("open", "parked") if p.get(k))
    return f"{level} {p['closed']} closed{extra}, filling {p.get('filling', 0)}"


def lines(snap: dict[str, Any], rates: Rates, *, ledger: Path | None = None, interval: float | None = None,
          ) -> list[tuple[int, Text]]:
    """Every line of the screen, most important first within the reading order, each with a priority."""
    out: list[tuple[int, Text]] = []
    d = snap["daemon"]
    clock = time.strftime("%H:%M:%S", time.localtime(float(snap["at"])))
    head = _line(("lineagent top", "bold"), f" {clock}  ")
    if d["pid"] is None:
        head.append("daemon never ran here (no status record)", style="bold red")
    elif d["alive"]:
        head.append("daemon alive", style="bold green")
        head.append(f"  pid {d['pid']}  {d['state']}  up {_age(d['up_s'])}")
    else:
        head.append("daemon NOT RUNNING", style="bold red")
        head.append(f" (last beat {_age(d['beat_age_s'])} ago, {d['state']})")
    out.append((0, head))

    job = snap["job"]
    light = str(d["light"] or "-")
    jl = _line("light ", (f" {light.upper()} ", LIGHT_STYLE.get(light, "")), "  ")
    if job is None:
        jl.append("no job in the ledger", style="dim")
    else:
        done = job["printed"]
        pct = f" ({100.0 * done / job['target']:.1f}%)" if job["target"] else ""
        jl.append("job ")
        jl.append(str(job["name"]), style="bold")
        jl.append(f" {job['state']}  printed {done}/{job['target']}{pct}")
    out.append((0, jl))

    alarms = snap["alarms"]
    if alarms:
        stale = "" if d["alive"] else " (as of the last beat)"
        out.append((0, _line((f"ALARMS {len(alarms)}", "bold red"), stale)))
        for a in alarms:
            sev = str(a.get("severity", "info"))
            out.append((ALARM, _line((f" {sev.upper():<7}", SEVERITY_STYLE.get(sev, "")),
                                     f" {a.get('source')}/{a.get('key')}: {a.get('detail', '')}")))
    else:
        out.append((1, _line(("no active alarms", "green" if d["alive"] else "dim"))))

    w10, w60 = _window(rates, 10), _window(rates, 60)
    out.append((1, _line(("items/min ", "bold"), f"{_num(rates.per_min(10))} {w10}  {_num(rates.per_min(60))} {w60}"
                         "   ", ("read rate ", "bold"), f"{_pct(rates.read_rate(60))} {w60}  "
                         f"{_pct(job['good'] / job['judged'] if job and job['judged'] else None)} (job)")))
    if job is not None:
        c = job["codes"]
        out.append((1, _line(f"judged {job['judged']}  good {job['good']}  packed {job.get('packed', 0)}  "
                             f"in doubt {c.get('in_doubt', 0)}  voided {c.get('voided', 0)}  "
                             f"in FIFOs {c.get('sent', 0)}  allocated {c.get('allocated', 0)}")))
        rejects = job["rejects"]
        total = sum(rejects.values())
        rl = _line(("rejects ", "bold"), (str(total), "bold red" if total else "green"))
        if rejects:
            rl.append(": " + ", ".join(f"{k} {v}" for k, v in rejects.items()))
        out.append((1, rl))

    for name, cd in snap["coders"].items():
        fifo, target = cd["fifo"], cd["fifo_target"]
        bar = ""
        if target:
            filled = min(10, round(10 * fifo / target))
            bar = " [" + "#" * filled + "." * (10 - filled) + "]"
        out.append((2, _line(("coder ", "bold"), f"{name} ", (str(cd['state'] or '-'), _state_style(cd["state"])),
                             f"  feeder {cd['feeder'] or '-'}  FIFO {fifo}" + (f"/{target}" if target else "") + bar)))
    for name, sd in snap["stations"].items():
        sl = _line((f"{sd.get('kind') or 'station'} ", "bold"), f"{name} ",
                   (str(sd["state"] or "-"), _state_style(sd["state"])))
        if sd.get("camera"):
            sl.append("  camera ")
            sl.append(str(sd["camera"]), style=_state_style(sd["camera"]))
        if sd.get("plc"):
            sl.append(f"  plc {sd['plc']}")
        out.append((2, sl))

    packs = snap["packs"]
    if packs:
        out.append((2, _line(("packs ", "bold"), "  ".join(_pack(lv, p) for lv, p in packs.items()))))
    s = snap["sync"]
    out.append((2, _line(("sync ", "bold"), "link ", (str(s.get("link") or "-"), _state_style(s.get("link"))),
                         f"  undelivered {s['undelivered']}  batches out {s['open_batches']}  "
                         f"oldest {_age(s['oldest_age_s'])}",
                         f"  acked {s['acks']}" if s.get("acks") is not None else "")))
    foot = "q or Ctrl-C quits" + (f"  refresh {interval:g} s" if interval else "") + \
        (f"  ledger {ledger}" if ledger else "")
    out.append((3, _line((foot, "dim"))))
    return out


def fit(tagged: list[tuple[int, Text]], width: int, height: int) -> list[Text]:
    """Cut every line to `width`; drop the least important lines (the lowest ones first) to fit `height`.

    Alarm rows may take every row but the header, the job and the rates block (six); past that the
    rest are counted in one "more" row.
    """
    keep = list(tagged)
    rows = [i for i, (p, _) in enumerate(keep) if p == ALARM]
    room = max(1, height - 6)
    if len(rows) > room:
        gone = set(rows[room - 1:])
        keep = [x for i, x in enumerate(keep) if i not in gone]
        keep.insert(rows[room - 1], (ALARM, _line((f" ... {len(gone)} more alarms: lineagent status", "bold red"))))
    while len(keep) > height:
        worst = max(p for p, _ in keep)
        if worst <= 0:
            break
        del keep[max(i for i, (p, _) in enumerate(keep) if p == worst)]
    out = []
    for _, line in keep[:height]:
        cut = line.copy()
        cut.truncate(width, overflow="ellipsis")
        out.append(cut)
    return out


def render(snap: dict[str, Any], rates: Rates, width: int, height: int, *, ledger: Path | None = None,
           interval: float | None = None) -> Group:
    return Group(*fit(lines(snap, rates, ledger=ledger, interval=interval), width, height))
