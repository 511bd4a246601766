"""`lineagent run` (the daemon) and `lineagent status` (is it alive, the job's progress, devices, alarms).

Why status reads two sources: the ledger (read-only) for facts that stay true when the daemon is dead,
and the daemon's status record (agent/line/status.py) for what only a running daemon knows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from agent.cli.common import ConfigOpt, DbOpt, Exit, config, console, fail, ledger_path, open_ledger
from agent.line.status import DaemonStatus, job_progress, read_status, status_path
from agent.sync.outbox import Outbox


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(config_path: ConfigOpt = None, db: DbOpt = None,
            verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
        """Run the line: coders, verification, aggregation and sync, until SIGTERM/SIGINT."""
        from agent.line.runtime import LineRuntime

        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cfg = config(config_path)
        ledger = open_ledger(cfg, db, create=True)
        try:
            runtime = LineRuntime(cfg, ledger)
        except (ValueError, KeyError) as exc:
            ledger.close()
            fail(f"cannot build the line from {cfg.source}: {exc}")

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await runtime.run(stop)

        try:
            asyncio.run(main())
        finally:
            ledger.close()
        console.print(f"lineagent stopped cleanly; ledger {ledger.path} committed")

    @app.command("status")
    def status(config_path: ConfigOpt = None, db: DbOpt = None,
               watch: Annotated[bool, typer.Option("--watch", "-w", help="Live view, refreshed every second")] = False,
               as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
               ) -> None:
        """Is the daemon alive; the running job's progress; devices, FIFO depths, alarms, sync backlog."""
        from agent.cli.common import config_optional

        cfg = config_optional(config_path)
        path = ledger_path(cfg, db)
        if not path.exists():
            fail(f"no ledger at {path}", Exit.NOT_FOUND)
        if as_json:
            report = collect(path)
            typer.echo(json.dumps(report, default=str, ensure_ascii=False, indent=2))
            raise typer.Exit(0 if report["daemon"]["alive"] else int(Exit.DEVICE))
        if not watch:
            console.print(render(path))
            st = read_status(status_path(path))
            raise typer.Exit(0 if st is not None and st.alive() else int(Exit.DEVICE))
        with Live(render(path), console=console, refresh_per_second=2) as live:
            try:
                while True:
                    time.sleep(1.0)  # a plain CLI loop, no event loop here
                    live.update(render(path))
            except KeyboardInterrupt:
                pass


def collect(ledger: Path) -> dict[str, Any]:
    """What `status` shows, as data (`status --json`): exit 0 when the daemon is alive, 3 when not."""
    st = read_status(status_path(ledger))
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        prog = job_progress(conn)
        feed = dict(conn.execute(
            "SELECT f.coder, COUNT(*) FROM coder_feed f JOIN codes c ON c.id = f.code WHERE c.state = 'sent' "
            "GROUP BY f.coder").fetchall())
    finally:
        conn.close()
    outbox = Outbox(ledger)
    try:
        b = outbox.backlog()
    finally:
        outbox.close()
    return {
        "daemon": {"alive": bool(st and st.alive()), "pid": st.pid if st else None,
                   "state": st.state if st else None, "light": st.light if st else None,
                   "last_beat_s_ago": round(time.time() - st.beat_at, 1) if st else None},
        "job": None if prog is None else {"id": prog.job, "state": prog.state, "target": prog.target,
                                          "codes": dict(prog.codes), "rejects": dict(prog.rejects),
                                          "packs": dict(prog.packs)},
        "coders_sent_unconfirmed": feed,
        "devices": st.devices if st else {},
        "stations": st.stations if st else {},
        "alarms": st.alarms if st else [],
        "sync": {"undelivered_events": b.undelivered_events, "open_batches": b.open_batches,
                 "link": (st.sync if st else {}).get("link")},
    }


def render(ledger: Path) -> Group:
    st = read_status(status_path(ledger))
    head = Table.grid(padding=(0, 2))
    head.add_column()
    head.add_column()
    if st is None:
        head.add_row("daemon", "[red]never ran here (no status record)[/]")
    else:
        alive = st.alive()
        head.add_row("daemon", (f"[green]alive[/] pid {st.pid}, {st.state}" if alive else
                                f"[red]not running[/] (last beat {time.time() - st.beat_at:.0f} s ago, {st.state})"))
        head.add_row("stack light", st.light)
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        prog = job_progress(conn)
        feed = dict(conn.execute(
            "SELECT f.coder, COUNT(*) FROM coder_feed f JOIN codes c ON c.id = f.code WHERE c.state = 'sent' "
            "GROUP BY f.coder").fetchall())
    finally:
        conn.close()
    parts: list[Table] = [head]
    if prog is not None:
        t = Table(title=f"job {prog.job} ({prog.state}, target {prog.target})")
        for col in ("allocated", "sent", "printed", "verified", "rejected", "in_doubt", "rejects by reason",
                    "packs"):
            t.add_column(col)
        c = prog.codes
        t.add_row(*(str(c.get(k, 0)) for k in ("allocated", "sent", "printed", "verified", "rejected", "in_doubt")),
                  ", ".join(f"{k} {v}" for k, v in sorted(prog.rejects.items())) or "-",
                  ", ".join(f"{k} {v}" for k, v in sorted(prog.packs.items())) or "-")
        parts.append(t)
    parts.append(_devices(st, feed))
    if st is not None and st.alarms:
        a = Table(title="alarms")
        for col in ("severity", "source", "alarm", "detail"):
            a.add_column(col)
        for al in st.alarms:
            a.add_row(str(al["severity"]), str(al["source"]), str(al["key"]), str(al["detail"]))
        parts.append(a)
    outbox = Outbox(ledger)
    try:
        b = outbox.backlog()
    finally:
        outbox.close()
    s = Table(title="sync")
    s.add_column("undelivered events")
    s.add_column("open batches")
    s.add_column("link")
    s.add_row(str(b.undelivered_events), str(b.open_batches), str((st.sync if st else {}).get("link", "-")))
    parts.append(s)
    return Group(*parts)


def _devices(st: DaemonStatus | None, feed: dict[str, int]) -> Table:
    t = Table(title="devices and stations")
    for col in ("name", "kind", "state", "FIFO (sent, unconfirmed)", "detail"):
        t.add_column(col)
    names = set(feed) | set(st.devices if st else {})
    for name in sorted(names):
        d = (st.devices if st else {}).get(name, {})
        t.add_row(name, str(d.get("kind", "coder")), str(d.get("state", "-")), str(feed.get(name, 0)),
                  f"feeder {d.get('feeder')}" if d else "")
    for name, s in sorted((st.stations if st else {}).items()):
        detail = ", ".join(f"{k} {v}" for k, v in (s.get("verdicts") or {}).items()) or \
            ", ".join(f"{k} {v}" for k, v in s.items() if k in ("closed", "partial", "open"))
        t.add_row(name, str(s.get("kind", "pack")), str(s.get("state", "-")), "", detail)
    return t
