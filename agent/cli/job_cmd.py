"""`lineagent job`: work orders from create to finish."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import typer
from rich.table import Table

from agent.cli.common import ConfigOpt, DbOpt, Exit, config_optional, console, fail, ledger_path, open_ledger
from agent.codes import gs1
from agent.control import client
from agent.control.protocol import ErrorCode
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

app = typer.Typer(help="Work orders: create, start, pause, stop, finish, list.", no_args_is_help=True)
JobRef = Annotated[str, typer.Argument(help="Job name or id")]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Work order name (unique)")],
    lot: Annotated[str, typer.Option(help="Lot / batch number")],
    qty: Annotated[int, typer.Option(min=1, help="Target quantity")],
    product: Annotated[
        str | None, typer.Option(help="Product key from the config (gives GTIN, name, template)")
    ] = None,
    gtin: Annotated[str | None, typer.Option(help="GTIN, when not taken from --product")] = None,
    product_name: Annotated[str | None, typer.Option(help="Product name, when not from --product")] = None,
    expiry: Annotated[str | None, typer.Option(help="Expiry date YYYY-MM-DD")] = None,
    level: Annotated[str, typer.Option(help="Level of the codes printed on items")] = "item",
    packing_spec: Annotated[str | None, typer.Option(help="Packing spec key from the config")] = None,
    template: Annotated[str | None, typer.Option(help="Code template key from the config")] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    cfg = config_optional(config)
    if product:
        if cfg is None or product not in cfg.products:
            fail(f"no product {product!r} in the config", Exit.NOT_FOUND)
        p = cfg.products[product]
        gtin, product_name, template = gtin or p.gtin, product_name or p.name, template or p.template
    if not gtin or not product_name:
        fail("give --product, or --gtin and --product-name", Exit.USAGE)
    try:
        gtin = gs1.normalise_gtin(gtin)
        exp = date.fromisoformat(expiry) if expiry else None
    except (gs1.GS1Error, ValueError) as exc:
        fail(str(exc))
    if cfg is not None:
        if packing_spec and packing_spec not in cfg.packing_specs:
            fail(f"no packing spec {packing_spec!r} in the config", Exit.NOT_FOUND)
        if template and template not in cfg.templates:
            fail(f"no template {template!r} in the config", Exit.NOT_FOUND)
        if level not in cfg.code_sources.levels:
            fail(f"level {level!r} is not in code_sources.levels")
    ledger = open_ledger(cfg, db)
    spec = JobSpec(name=name, gtin=gtin, product_name=product_name, lot=lot, target_qty=qty, level=level,
                   expiry=exp, packing_spec=packing_spec, template=template or "raw")
    try:
        job_id = create_job(ledger, spec)
    except JobError as exc:
        fail(str(exc))
    ledger.audit("job.create", {"name": name, "gtin": gtin, "lot": lot, "qty": qty}, f"job {job_id}")
    ledger.close()
    console.print(f"job {name!r} created (id {job_id}): {qty} x {product_name} ({gtin}), lot {lot}")


def _move(action: str, ref: str, config: ConfigOpt, db: DbOpt) -> None:
    """Through the daemon when one runs this line (it stops the belt and the coders, drains a finish,
    and audits the operator from the socket's peer credentials); on the ledger directly when none does."""
    cfg = config_optional(config)
    path = ledger_path(cfg, db)
    sock = cfg.control_socket(path) if cfg is not None else path.with_suffix(".sock")
    if action in ("stop", "pause", "finish") and sock.exists():
        console.print(f"asking the daemon to {action} job {ref!r} (the line stops first) ...")
    try:
        result = client.call(sock, f"job.{action}", {"job": ref})
    except client.DaemonNotRunning:
        pass
    except client.DaemonRefused as exc:
        fail(str(exc), Exit.NOT_FOUND if exc.code is ErrorCode.NOT_FOUND else Exit.REFUSED)
    else:
        console.print(_said(ref, result) + " (by the running daemon)")
        return
    ledger = open_ledger(cfg, db)
    try:
        if action == "start":
            msg = f"job {ref!r} is {start_job(ledger, ref).state}"
        elif action == "stop":
            msg = f"job {ref!r} is {stop_job(ledger, ref).state}"
        elif action == "pause":
            msg = f"job {ref!r} is {pause_job(ledger, ref).state}"
        else:
            rep = finish_job(ledger, ref)
            msg = _said(ref, {"state": "finished", "returned": rep.returned, "in_doubt": rep.in_doubt})
    except JobError as exc:
        ledger.audit(f"job.{action}", {"job": ref}, f"refused: {exc}")
        fail(str(exc), Exit.NOT_FOUND if isinstance(exc, JobNotFound) else Exit.REFUSED)
    ledger.audit(f"job.{action}", {"job": ref}, msg)
    ledger.close()
    console.print(msg)


def _said(ref: str, result: dict[str, object]) -> str:
    if result.get("state") == "finished":
        return (f"job {ref!r} finished: {result.get('returned', 0)} unused codes returned to the pool, "
                f"{result.get('in_doubt', 0)} sent-but-unconfirmed codes in doubt")
    return f"job {ref!r} is {result.get('state')}"


@app.command("start")
def start(ref: JobRef, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Start (or resume a paused job); a running daemon picks it up at once."""
    _move("start", ref, config, db)


@app.command("stop")
def stop(ref: JobRef, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Stop: the belt stops, then the coders; codes in the coders are reconciled."""
    _move("stop", ref, config, db)


@app.command("pause")
def pause(ref: JobRef, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Pause: as stop, but the job stays ready to resume with `job start` (a restart does not resume it)."""
    _move("pause", ref, config, db)


@app.command("finish")
def finish(ref: JobRef, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Finish: feeding stops, printed items get their verdicts, unused codes return to the pool;
    sent-but-unconfirmed codes go in doubt."""
    _move("finish", ref, config, db)


@app.command("list")
def list_cmd(config: ConfigOpt = None, db: DbOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False) -> None:
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
    table = Table(title="jobs")
    for col in ("id", "name", "state", "product", "gtin", "lot", "expiry", "target", "good", "rejected"):
        table.add_column(col)
    for j in jobs:
        good, rej = used.get(j.id, (0, 0))
        table.add_row(str(j.id), j.name, j.state, j.product_name, j.gtin, j.lot,
                      j.expiry.isoformat() if j.expiry else "-", str(j.target_qty), str(good or 0), str(rej or 0))
    console.print(table)
