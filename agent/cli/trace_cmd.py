"""Top-level `lineagent trace`, `lineagent scan` and `lineagent export pallet`.

`scan` is the manual mode for when a station camera fails: an operator (or a keyboard-wedge scanner,
which types each code and Enter) scans the children of one pack, then its pre-printed parent label;
the parent closes the pack under the same rules as the station, and a refused pack is shown with its
reasons before the next one starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.tree import Tree

from agent.aggregation import trace as tracing
from agent.aggregation.model import AggregationError, PackRejected
from agent.aggregation.setup import aggregator_for
from agent.cli import common
from agent.cli.code_arg import ledger_code, scanned
from agent.cli.common import ConfigOpt, DbOpt, Exit, config_optional, console, fail, open_ledger, state_name
from agent.cli.pack_cmd import when
from agent.cli.refusals import refusal
from agent.i18n import _
from agent.jobs import JobError, JobNotFound, get_job, list_jobs

export_app = typer.Typer(help=_("Export a hierarchy for auditors and customers."), no_args_is_help=True)


def _label(n: tracing.Node, *, focus: bool = False) -> str:
    state = state_name(n.state) + (f"/{state_name(n.pack_state)}" if n.pack_state else "")
    extra = " " + _("partial: {reason}").format(reason=n.partial_reason) if n.partial_reason else ""
    code = f"[bold]{n.code}[/]" if focus else n.code
    job = _("job {job} lot {lot}").format(job=n.job_name, lot=n.lot) if n.job_name else _("no job")
    linked = _("linked {time}").format(time=when(n.linked_at))
    return f"{n.level} {code} [dim]{state}, {job}, {linked}{extra}[/]"


def _tree(t: tracing.Trace, depth: int | None) -> Tree:
    chain = [*t.ancestors, t.root]
    top = Tree(_label(chain[0], focus=len(chain) == 1))
    branch = top
    for n in chain[1:]:
        branch = branch.add(_label(n, focus=n is t.root))

    def grow(node: tracing.Node, tree: Tree, level: int) -> None:
        if depth is not None and level >= depth:
            if node.children:
                tree.add("[dim]" + _("... {count} more").format(count=len(node.children)) + "[/]")
            return
        for child in node.children:
            grow(child, tree.add(_label(child)), level + 1)

    grow(t.root, branch, 0)
    return top


def trace(
    code: Annotated[str, typer.Argument(help=_("Any code: bottle, box, case or pallet"))],
    depth: Annotated[int | None, typer.Option(help=_("Show this many levels below the code"))] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    cfg = config_optional(config)
    ledger = open_ledger(cfg, db)
    try:
        code = ledger_code(ledger, cfg, code)
        t = tracing.trace(ledger.conn, code)
    except AggregationError as exc:
        fail(str(exc), Exit.NOT_FOUND)
    finally:
        ledger.close()
    console.print(_tree(t, depth))
    console.print("[dim]" + _("{count} codes under {code}, {above} above").format(
        count=t.count(), code=code, above=len(t.ancestors)) + "[/]")


@export_app.command("pallet", help=_("The whole hierarchy under a pallet, one code per row (csv) or nested (json)."))
def export_pallet(
    code: Annotated[str, typer.Argument(help=_("The pallet (or any pack) to export"))],
    fmt: Annotated[str, typer.Option("--format", help=_("json or csv"))] = "json",
    out: Annotated[Path | None, typer.Option(help=_("Write here instead of stdout"))] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    if fmt not in ("json", "csv"):
        fail(_("--format must be json or csv, not {format!r}").format(format=fmt), Exit.USAGE)
    cfg = config_optional(config)
    ledger = open_ledger(cfg, db)
    try:
        code = ledger_code(ledger, cfg, code)
        t = tracing.trace(ledger.conn, code)
    except AggregationError as exc:
        fail(str(exc), Exit.NOT_FOUND)
    finally:
        ledger.close()
    text = tracing.export_json(t) if fmt == "json" else tracing.export_csv(t)
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out.write_text(text)
        console.print(_("wrote {count} codes to {path}").format(count=t.count(), path=out))


def scan(
    level: Annotated[str | None, typer.Argument(
        help=_("The parent level being packed: box, case, pallet (default: the first parent level)"))] = None,
    job: Annotated[str | None, typer.Option(help=_("Job name or id the packs belong to (default: the running job)"))
                   ] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    cfg = common.config(config)
    ledger = open_ledger(cfg, db)
    try:
        if job is None:
            running = [j for j in list_jobs(ledger) if j.state == "running"]
            if len(running) != 1:
                ledger.close()
                fail(_("{count} jobs are running: give --job NAME").format(count=len(running)), Exit.USAGE)
            j = running[0]
        else:
            j = get_job(ledger, job)
        agg = aggregator_for(ledger, cfg, job=j.id)
        level = level or next(iter(agg.plans), "box")
        plan = agg.plan(level)
    except (AggregationError, JobError) as exc:
        ledger.close()
        fail(refusal(str(exc)), Exit.NOT_FOUND if isinstance(exc, JobNotFound) else Exit.REFUSED)
    console.print(_("job {job}: scan {count} {child} codes, then the {level} label (Ctrl-D ends)").format(
        job=j.name, count=plan.count, child=plan.child_level, level=level))
    children: list[str] = []
    packed = refused = 0
    for raw in sys.stdin:
        code = raw.strip()
        if code.upper() == "CANCEL" or (not code and children):
            console.print(_("[yellow]dropped[/] {count} scans").format(count=len(children)))
            children = []
            continue
        if not code:
            continue
        key = scanned(ledger, cfg, code)
        if key is None:
            continue
        code = key
        row = ledger.conn.execute("SELECT level FROM codes WHERE code = ?", (code,)).fetchone()
        if row is None or row[0] != level:
            children.append(code)
            console.print(f"  {len(children)}/{plan.count} {code}")
            continue
        try:
            agg.pack(level, code, children, job=j.id, durable=True)
        except PackRejected as exc:
            refused += 1
            ledger.audit("scan.pack", {"parent": code, "children": children}, f"refused: {exc}")
            console.print(_("[bold red]REJECTED[/] {reason}").format(reason=exc))
        else:
            packed += 1
            ledger.audit("scan.pack", {"parent": code, "children": children}, "ok")
            console.print(_("[green]packed[/] {level} {code} with {count} {child}").format(
                level=level, code=code, count=len(children), child=plan.child_level))
        children = []
    ledger.close()
    done = _("{packed} packed, {refused} rejected").format(packed=packed, refused=refused)
    if children:
        done += _(", {count} scans left over").format(count=len(children))
    console.print(done)
    if refused:
        raise typer.Exit(int(Exit.REFUSED))


def register(app: typer.Typer) -> None:
    app.command("trace", help=_(
        "The code's ancestors and descendants as a tree with states, times, job and lot."))(trace)
    app.command("scan", help=_(
        "Manual scan mode: scan children, then the parent label; an empty line or CANCEL drops the pack."))(scan)
    app.add_typer(export_app, name="export")
