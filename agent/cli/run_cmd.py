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
from rich.markup import escape
from rich.table import Table

from agent.cli.common import ConfigOpt, DbOpt, Exit, config, console, fail, ledger_path, open_ledger, state_name
from agent.config import load_config
from agent.i18n import _
from agent.line.alarms import alarm_name, light_name, severity_name
from agent.line.status import DaemonStatus, job_progress, read_status, status_path
from agent.sync.outbox import Outbox


def register(app: typer.Typer) -> None:
    @app.command("run", help=_("Run the line: coders, verification, aggregation and sync, until SIGTERM/SIGINT."))
    def run(config_path: ConfigOpt = None, db: DbOpt = None,
            verbose: Annotated[bool, typer.Option("--verbose", "-v", help=_("Log at INFO level, not only warnings"))]
            = False,
            simulate: Annotated[bool, typer.Option(
                "--simulate", help=_("Every device simulated (coder on a pty, PLC, camera, label printer, "
                                     "broker and receiver): the README's tour against a running line"))] = False,
            sim_dir: Annotated[Path, typer.Option("--dir", help=_("With --simulate: where the simulated line "
                                                                 "keeps its keys, config and ledger"))
                               ] = Path("sim-line"),
            rate: Annotated[float, typer.Option(help=_("With --simulate: products per minute"))] = 600.0,
            ) -> None:
        from agent.line.runtime import LineRuntime

        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if simulate:
            _run_simulated(sim_dir, rate)
            return
        cfg = config(config_path)
        ledger = open_ledger(cfg, db, create=True)
        try:
            runtime = LineRuntime(cfg, ledger)
        except (ValueError, KeyError) as exc:
            ledger.close()
            fail(_("cannot build the line from {path}: {error}").format(path=cfg.source, error=exc))

        try:
            _serve(runtime)
        finally:
            ledger.close()
        if (reason := runtime.resources.reason()) is not None:  # agent/line/resources.py
            console.print(escape(_("lineagent stopped; the line was stopped by a resource fault that is still "
                                   "active: {reason}").format(reason=reason)))
            return
        console.print(_("lineagent stopped cleanly; ledger {path} committed").format(path=ledger.path))

    @app.command("status", help=_(
        "Is the daemon alive; the running job's progress; devices, FIFO depths, alarms, sync backlog."))
    def status(config_path: ConfigOpt = None, db: DbOpt = None,
               watch: Annotated[bool, typer.Option("--watch", "-w",
                                                   help=_("Live view, refreshed every second"))] = False,
               as_json: Annotated[bool, typer.Option("--json", help=_("Machine-readable output"))] = False,
               ) -> None:
        from agent.cli.common import config_optional

        cfg = config_optional(config_path)
        path = ledger_path(cfg, db)
        if not path.exists():
            fail(_("no ledger at {path}").format(path=path), Exit.NOT_FOUND)
        open_ledger(cfg, db).close()  # a ledger this version cannot read is refused here, with the reason
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


def _serve(runtime: Any) -> None:
    """Run the daemon until SIGTERM or SIGINT sets its stop event (then it stops the line cleanly)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runtime.run(stop)

    asyncio.run(main())


def _run_simulated(workdir: Path, rate: float) -> None:
    """A whole simulated plant and the daemon on it, in this process, until SIGTERM/SIGINT. The first
    run makes keys, a config from config/line.sim.yaml and imports signed code packages; later runs
    reuse them (and the ledger), so jobs survive a restart like on a real line."""
    from agent.demo import _label_readers, prepare
    from agent.line.runtime import LineRuntime
    from agent.line.simulated import SimSettings, SimulatedLine

    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "line.yaml"
    cfg = load_config(cfg_path) if cfg_path.exists() else prepare(workdir, 5000, console)
    sim = SimulatedLine(cfg, workdir, SimSettings(rate_per_min=rate))
    try:
        live = sim.start()
        ledger = open_ledger(live, None, create=True)
        (workdir / "labels").mkdir(exist_ok=True)
        runtime = LineRuntime(live, ledger, overrides=sim.overrides(),
                              read_labels=_label_readers(sim, live, workdir / "labels"))
        here = escape(str(live.source))
        commands = (f"  lineagent job create WO-1 --product water500 --lot L1 --qty 500 --packing-spec 6x4x40 "
                    f"--config {here}\n  lineagent job start WO-1 --config {here}\n"
                    f"  lineagent status --config {here}\n  lineagent job stop WO-1 --config {here}")  # typed as is
        console.print(_("simulated line running; in another terminal use [bold]--config {config}[/]:").format(
            config=here) + "\n" + commands)

        try:
            _serve(runtime)
        finally:
            ledger.close()
    finally:
        sim.stop()
    console.print(_("simulated line stopped cleanly"))


def _job_and_feed(ledger: Path) -> tuple[Any, dict[str, int]]:
    """The running (else newest) job's progress and each coder's sent-unconfirmed count, read-only."""
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        prog = job_progress(conn)
        feed = dict(conn.execute(
            "SELECT f.coder, COUNT(*) FROM coder_feed f JOIN codes c ON c.id = f.code WHERE c.state = 'sent' "
            "GROUP BY f.coder").fetchall())
    finally:
        conn.close()
    return prog, feed


def _backlog(ledger: Path) -> Any:
    outbox = Outbox(ledger)
    try:
        return outbox.backlog()
    finally:
        outbox.close()


def collect(ledger: Path) -> dict[str, Any]:
    """What `status` shows, as data (`status --json`): exit 0 when the daemon is alive, 3 when not."""
    st = read_status(status_path(ledger))
    prog, feed = _job_and_feed(ledger)
    b = _backlog(ledger)
    return {
        "daemon": {"alive": bool(st and st.alive()), "pid": st.pid if st else None,
                   "state": st.state if st else None, "light": st.light if st else None,
                   "last_beat_s_ago": round(st.age(), 1) if st else None},
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
        head.add_row(_("daemon"), _("[red]never ran here (no status record)[/]"))
    else:
        alive = st.alive()
        head.add_row(_("daemon"), (
            _("[green]alive[/] pid {pid}, {state}").format(pid=st.pid, state=st.state) if alive else
            _("[red]not running[/] (last beat {seconds:.0f} s ago, {state})").format(
                seconds=st.age(), state=st.state)))
        head.add_row(_("stack light"), light_name(st.light))
    prog, feed = _job_and_feed(ledger)
    parts: list[Table] = [head]
    if prog is not None:
        t = Table(title=_("job {job} ({state}, target {target})").format(
            job=prog.job, state=state_name(prog.state), target=prog.target))
        for col in (_("allocated"), _("sent"), _("printed"), _("verified"), _("rejected"), _("in_doubt"),
                    _("escaped"), _("rejects by reason"), _("packs")):
            t.add_column(col)
        c = prog.codes
        t.add_row(*(str(c.get(k, 0)) for k in ("allocated", "sent", "printed", "verified", "rejected", "in_doubt",
                                                 "escaped")),
                  ", ".join(f"{k} {v}" for k, v in sorted(prog.rejects.items())) or "-",
                  ", ".join(f"{k} {v}" for k, v in sorted(prog.packs.items())) or "-")
        parts.append(t)
    parts.append(_devices(st, feed))
    if st is not None and st.alarms:
        a = Table(title=_("alarms"))
        for col in (_("severity"), _("source"), _("alarm"), _("detail")):
            a.add_column(col)
        for al in st.alarms:
            a.add_row(severity_name(al["severity"]), str(al["source"]), alarm_name(str(al["key"])), str(al["detail"]))
        parts.append(a)
    b = _backlog(ledger)
    s = Table(title=_("sync"))
    s.add_column(_("undelivered events"))
    s.add_column(_("open batches"))
    s.add_column(_("link"))
    s.add_row(str(b.undelivered_events), str(b.open_batches), str((st.sync if st else {}).get("link", "-")))
    parts.append(s)
    return Group(*parts)


def _devices(st: DaemonStatus | None, feed: dict[str, int]) -> Table:
    t = Table(title=_("devices and stations"))
    for col in (_("name"), _("kind"), _("state"), _("FIFO (sent, unconfirmed)"), _("detail")):
        t.add_column(col)
    names = set(feed) | set(st.devices if st else {})
    for name in sorted(names):
        d = (st.devices if st else {}).get(name, {})
        t.add_row(name, str(d.get("kind", "coder")), str(d.get("state", "-")), str(feed.get(name, 0)),
                  _("feeder {state}").format(state=d.get("feeder")) if d else "")
    for name, s in sorted((st.stations if st else {}).items()):
        detail = ", ".join(f"{k} {v}" for k, v in (s.get("verdicts") or {}).items()) or \
            ", ".join(f"{k} {v}" for k, v in s.items() if k in ("closed", "partial", "open", "parked", "resumed") and v)
        t.add_row(name, str(s.get("kind", "pack")), str(s.get("state", "-")), "", detail)
    return t
