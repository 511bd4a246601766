"""`lineagent job`: work orders from create to finish."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Annotated

import typer
from rich.table import Table

from agent.cli.common import (
    ConfigOpt,
    DbOpt,
    Exit,
    config_optional,
    console,
    fail,
    ledger_path,
    open_ledger,
    state_name,
)
from agent.codes import gs1
from agent.control import client
from agent.control.protocol import ErrorCode
from agent.i18n import N_, _, english
from agent.jobs import (
    JobError,
    JobNotFound,
    JobSpec,
    create_job,
    finish_job,
    list_jobs,
    pause_job,
    start_job,
    stop_job,
)

app = typer.Typer(help=_("Work orders: create, start, pause, stop, finish, list."), no_args_is_help=True)
JobRef = Annotated[str, typer.Argument(help=_("Job name or id"))]


@app.command("create", help=_("Create a work order (工单) for a product and lot."))
def create(
    name: Annotated[str, typer.Argument(help=_("Work order name (unique)"))],
    lot: Annotated[str, typer.Option(help=_("Lot / batch number"))],
    qty: Annotated[int, typer.Option(min=1, help=_("Target quantity"))],
    product: Annotated[
        str | None, typer.Option(help=_("Product key from the config (gives GTIN, name, template)"))
    ] = None,
    gtin: Annotated[str | None, typer.Option(help=_("GTIN, when not taken from --product"))] = None,
    product_name: Annotated[str | None, typer.Option(help=_("Product name, when not from --product"))] = None,
    expiry: Annotated[str | None, typer.Option(help=_("Expiry date YYYY-MM-DD"))] = None,
    level: Annotated[str, typer.Option(help=_("Level of the codes printed on items"))] = "item",
    packing_spec: Annotated[str | None, typer.Option(help=_("Packing spec key from the config"))] = None,
    template: Annotated[str | None, typer.Option(help=_("Code template key from the config"))] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    cfg = config_optional(config)
    if product:
        if cfg is None or product not in cfg.products:
            fail(_("no product {product!r} in the config").format(product=product), Exit.NOT_FOUND)
        p = cfg.products[product]
        gtin, product_name, template = gtin or p.gtin, product_name or p.name, template or p.template
    if not gtin or not product_name:
        fail(_("give --product, or --gtin and --product-name"), Exit.USAGE)
    try:
        gtin = gs1.normalise_gtin(gtin)
        exp = date.fromisoformat(expiry) if expiry else None
    except (gs1.GS1Error, ValueError) as exc:
        fail(str(exc))
    if cfg is not None:
        if packing_spec and packing_spec not in cfg.packing_specs:
            fail(_("no packing spec {spec!r} in the config").format(spec=packing_spec), Exit.NOT_FOUND)
        if template and template not in cfg.templates:
            fail(_("no template {template!r} in the config").format(template=template), Exit.NOT_FOUND)
        if level not in cfg.code_sources.levels:
            fail(_("level {level!r} is not in code_sources.levels").format(level=level))
    ledger = open_ledger(cfg, db)
    spec = JobSpec(name=name, gtin=gtin, product_name=product_name, lot=lot, target_qty=qty, level=level,
                   expiry=exp, packing_spec=packing_spec, template=template or "raw")
    try:
        job_id = create_job(ledger, spec)
    except JobError as exc:
        fail(str(exc))
    ledger.audit("job.create", {"name": name, "gtin": gtin, "lot": lot, "qty": qty}, f"job {job_id}")
    ledger.close()
    console.print(_("job {name!r} created (id {id}): {qty} x {product} ({gtin}), lot {lot}").format(
        name=name, id=job_id, qty=qty, product=product_name, gtin=gtin, lot=lot))


def _move(action: str, ref: str, config: ConfigOpt, db: DbOpt) -> None:
    """Through the daemon when one runs this line (it stops the belt and the coders, drains a finish,
    and audits the operator from the socket's peer credentials); on the ledger directly when none does."""
    cfg = config_optional(config)
    path = ledger_path(cfg, db)
    sock = cfg.control_socket(path) if cfg is not None else path.with_suffix(".sock")
    if action in ("stop", "pause", "finish") and sock.exists():
        console.print(_(ASKING[action]).format(ref=ref))
    try:
        result = client.call(sock, f"job.{action}", {"job": ref})
    except client.DaemonNotRunning:
        pass
    except client.DaemonRefused as exc:
        fail(str(exc), Exit.NOT_FOUND if exc.code is ErrorCode.NOT_FOUND else Exit.REFUSED)
    else:
        console.print(_("{outcome} (by the running daemon)").format(outcome=_said(ref, result, _)))
        return
    ledger = open_ledger(cfg, db)
    try:
        if action == "finish":
            rep = finish_job(ledger, ref)
            result = {"state": "finished", "returned": rep.returned, "in_doubt": rep.in_doubt}
        else:
            result = {"state": {"start": start_job, "stop": stop_job, "pause": pause_job}[action](ledger, ref).state}
    except JobError as exc:
        ledger.audit(f"job.{action}", {"job": ref}, f"refused: {exc}")
        fail(str(exc), Exit.NOT_FOUND if isinstance(exc, JobNotFound) else Exit.REFUSED)
    ledger.audit(f"job.{action}", {"job": ref}, _said(ref, result, english))  # one language for auditors
    ledger.close()
    console.print(_said(ref, result, _))


# Whole sentences for translators, one per action.
ASKING = {
    "stop": N_("asking the daemon to stop job {ref!r} (the line stops first) ..."),
    "pause": N_("asking the daemon to pause job {ref!r} (the line stops first) ..."),
    "finish": N_("asking the daemon to finish job {ref!r} (the line stops first) ..."),
}


def _said(ref: str, result: dict[str, object], tr: Callable[[str], str]) -> str:
    """What became of the job, in `tr`'s language (`english` for the audit log)."""
    state = result.get("state")
    if state == "finished":
        return tr(N_("job {ref!r} finished: {returned} unused codes returned to the pool, "
                     "{in_doubt} sent-but-unconfirmed codes in doubt")).format(
            ref=ref, returned=result.get("returned", 0), in_doubt=result.get("in_doubt", 0))
    return tr(N_("job {ref!r} is {state}")).format(ref=ref, state=state if tr is english else state_name(state))


@app.command("start", help=_("Start (or resume a paused job); a running daemon picks it up at once."))
def start(ref: JobRef, config: ConfigOpt = None, db: DbOpt = None) -> None:
    _move("start", ref, config, db)


@app.command("stop", help=_("Stop: the belt stops, then the coders; codes in the coders are reconciled."))
def stop(ref: JobRef, config: ConfigOpt = None, db: DbOpt = None) -> None:
    _move("stop", ref, config, db)


@app.command("pause", help=_(
    "Pause: as stop, but the job stays ready to resume with `job start` (a restart does not resume it)."))
def pause(ref: JobRef, config: ConfigOpt = None, db: DbOpt = None) -> None:
    _move("pause", ref, config, db)


@app.command("finish", help=_("Finish: feeding stops, printed items get their verdicts, unused codes return to the "
                              "pool; sent-but-unconfirmed codes go in doubt."))
def finish(ref: JobRef, config: ConfigOpt = None, db: DbOpt = None) -> None:
    _move("finish", ref, config, db)


@app.command("list", help=_("Work orders with their target, good and rejected items."))
def list_cmd(config: ConfigOpt = None, db: DbOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help=_("Machine-readable output"))] = False) -> None:
    cfg = config_optional(config)
    ledger = open_ledger(cfg, db)
    jobs = list_jobs(ledger)
    with ledger.lock:
        used = {r[0]: (r[1], r[2]) for r in ledger.conn.execute(
            # Only the job's item level: box, case and pallet codes are packaging, not good items.
            "SELECT c.job, SUM(c.state IN ('printed','verified')), SUM(c.state='rejected') FROM codes c "
            "JOIN jobs j ON j.id = c.job WHERE c.level = j.level GROUP BY c.job")}
    ledger.close()
    if as_json:
        typer.echo(json.dumps([{
            "id": j.id, "name": j.name, "state": str(j.state), "product": j.product_name, "gtin": j.gtin,
            "lot": j.lot, "expiry": j.expiry.isoformat() if j.expiry else None, "target": j.target_qty,
            "good": int(used.get(j.id, (0, 0))[0] or 0), "rejected": int(used.get(j.id, (0, 0))[1] or 0),
        } for j in jobs], ensure_ascii=False, indent=2))
        return
    table = Table(title=_("jobs"))
    for col in (_("id"), _("name"), _("state"), _("product"), _("gtin"), _("lot"), _("expiry"), _("target"),
                _("good"), _("rejected")):
        table.add_column(col)
    for j in jobs:
        good, rej = used.get(j.id, (0, 0))
        table.add_row(str(j.id), j.name, state_name(j.state), j.product_name, j.gtin, j.lot,
                      j.expiry.isoformat() if j.expiry else "-", str(j.target_qty), str(good or 0), str(rej or 0))
    console.print(table)
