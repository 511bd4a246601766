"""`lineagent pack`: show, force-close, park/resume, replace, unlink and decommission packs.

Every action is audited with the OS user. The destructive ones (force-close, replace, unlink,
decommission) need the operator PIN configured as security.operator_pin_sha256: an aggregation
undone by a slip costs a quarantined batch, so a second, deliberate step is worth it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from agent import pins
from agent.aggregation import operations
from agent.aggregation.model import AggregationError, PackInfo, PackRejected
from agent.aggregation.packs import Aggregator, children_of, pack_info
from agent.aggregation.setup import aggregator_for
from agent.cli.code_arg import code_key
from agent.cli.common import ConfigOpt, DbOpt, Exit, config, config_optional, console, fail, open_ledger, state_name
from agent.clock import Stamp
from agent.config.model import LineConfig
from agent.i18n import _, pgettext
from agent.ledger import Ledger

app = typer.Typer(help=_("Packs: show, close (force), park/resume, replace, unlink, decommission, take-out, move, "
                         "merge."),
                  no_args_is_help=True)
CodeArg = Annotated[str, typer.Argument(help=_("The pack's (or child's) code as printed"))]
T = TypeVar("T")
PinOpt = Annotated[str | None, typer.Option("--pin", help=_("Operator PIN (prompted when omitted)"))]


def when(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def check_pin(cfg: LineConfig, ledger: Ledger, pin: str | None, action: str, args: dict[str, object]) -> None:
    """Refuse (and audit the refusal) unless the PIN matches; no PIN configured switches the action off;
    too many wrong PINs lock every PIN action out for a while (agent/pins.py). The PIN is never logged."""
    want = cfg.security.operator_pin_hash
    if not want:
        ledger.audit(action, args, "refused: no operator PIN configured")
        ledger.close()
        fail(_("{action} needs the operator PIN, and security.operator_pin_hash is not set in the config").format(
            action=action))
    with ledger.lock:
        failures = [Stamp(float(r[0]), r[1], r[2]) for r in ledger.conn.execute(
            "SELECT at, boot, boot_s FROM audit WHERE result = ? ORDER BY id DESC LIMIT ?",
            (pins.WRONG, pins.LOCKOUT_AFTER))]
    until = pins.locked_until(failures)
    if until is not None:
        ledger.audit(action, args, "refused: locked out after wrong PINs")
        ledger.close()
        fail(_("{action}: {n} wrong PINs; PIN actions are locked until {at}").format(
            action=action, n=pins.LOCKOUT_AFTER, at=datetime.fromtimestamp(until).strftime("%H:%M:%S")))
    given = pin if pin is not None else typer.prompt(_("Operator PIN"), hide_input=True)
    if not pins.verify_pin(want, given):
        ledger.audit(action, args, pins.WRONG)
        ledger.close()
        fail(_("{action}: wrong operator PIN").format(action=action))


def open_for(cfg_path: Path | None, db: Path | None, code: str) -> tuple[LineConfig, Ledger, Aggregator]:
    """Config, ledger and the Aggregator under the packing spec that governs `code`."""
    cfg = config(cfg_path)
    ledger = open_ledger(cfg, db)
    try:
        return cfg, ledger, aggregator_for(ledger, cfg, code=code)
    except AggregationError as exc:
        ledger.close()
        fail(str(exc))


def _run(ledger: Ledger, action: str, args: dict[str, object], work: Callable[[], T]) -> T:
    """Run an operation, audit it either way, and turn refusals into exit code 1 with the reason."""
    try:
        result = work()
    except PackRejected as exc:
        ledger.audit(action, args, f"refused: {exc}")
        ledger.close()
        fail(str(exc))
    except AggregationError as exc:
        ledger.audit(action, args, f"refused: {exc}")
        ledger.close()
        fail(str(exc), Exit.NOT_FOUND if "is not a pack" in str(exc) or "not a code" in str(exc) else Exit.REFUSED)
    ledger.audit(action, args, f"ok: {result}")
    ledger.close()
    return result


def show_info(info: PackInfo, children: list[str]) -> None:
    t = Table(title=f"{info.level} {info.code}", show_header=False)
    t.add_row(_("state"), state_name(info.state))
    t.add_row(_("children"), _("{count} of {expected}").format(count=info.children, expected=info.expected_count))
    if info.partial_reason:
        t.add_row(_("partial"), info.partial_reason)  # force-closed short, or short after a rework
    t.add_row(_("job"), str(info.job or "-"))
    t.add_row(pgettext("time", "created"), when(info.created_at))
    t.add_row(pgettext("time", "closed"), when(info.closed_at))
    t.add_row(_("contents"), ", ".join(children) or "-")
    console.print(t)


@app.command("show", help=_("A pack: state, count against expected, force-close reason, times and its children."))
def show(code: CodeArg, config: ConfigOpt = None, db: DbOpt = None) -> None:
    code = code_key(config, db, code)
    ledger = open_ledger(config_optional(config), db)  # --db alone is enough for a read
    try:
        info = pack_info(ledger.conn, code)
        kids = children_of(ledger.conn, code)
    except AggregationError as exc:
        fail(str(exc), Exit.NOT_FOUND)
    finally:
        ledger.close()
    show_info(info, kids)


@app.command("close", help=_("Close an open or parked pack; --partial --reason force-closes a short one (强制满垛)."))
def close(
    parent: CodeArg,
    partial: Annotated[
        bool, typer.Option("--partial", help=_("Force-close with fewer children than the count"))
    ] = False,
    reason: Annotated[str | None, typer.Option(help=_("Why it is closed partial (recorded)"))] = None,
    pin: PinOpt = None, config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    parent = code_key(config, db, parent)
    cfg, ledger, agg = open_for(config, db, parent)
    if partial and not reason:
        ledger.close()
        fail(_("--partial needs --reason TEXT: the auditor must read why"), Exit.USAGE)
    args: dict[str, object] = {"parent": parent, "partial": partial, "reason": reason}
    if partial:
        check_pin(cfg, ledger, pin, "pack.close", args)
    _run(ledger, "pack.close", args,
         lambda: agg.close(parent, partial_reason=reason if partial else None).state)
    done = _("[green]closed[/] {code} (partial: {reason})") if partial else _("[green]closed[/] {code}")
    console.print(done.format(code=parent, reason=reason))


@app.command("park", help=_("Set an unfinished pack aside (暂存); it stays open in the ledger across restarts."))
def park(parent: CodeArg, config: ConfigOpt = None, db: DbOpt = None) -> None:
    parent = code_key(config, db, parent)
    _cfg, ledger, agg = open_for(config, db, parent)
    _run(ledger, "pack.park", {"parent": parent}, lambda: agg.park(parent).state)
    console.print(_("[yellow]parked[/] {code}").format(code=parent))


@app.command("resume", help=_("Continue a parked pack (提取)."))
def resume(parent: CodeArg, config: ConfigOpt = None, db: DbOpt = None) -> None:
    parent = code_key(config, db, parent)
    _cfg, ledger, agg = open_for(config, db, parent)
    _run(ledger, "pack.resume", {"parent": parent}, lambda: agg.resume(parent).state)
    console.print(_("[green]resumed[/] {code}").format(code=parent))


@app.command("replace", help=_(
    "Put NEW in OLD's place (码替换): same level, NEW unused; OLD is decommissioned, history kept."))
def replace(
    old: CodeArg,
    new: Annotated[str, typer.Argument(help=_("An unused code of the same level, from a package of this line"))],
    pin: PinOpt = None, config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    old, new = code_key(config, db, old), code_key(config, db, new)
    cfg, ledger, agg = open_for(config, db, old)
    check_pin(cfg, ledger, pin, "pack.replace", {"old": old, "new": new})
    _run(ledger, "pack.replace", {"old": old, "new": new}, lambda: operations.replace(agg, old, new))
    console.print(_("[green]replaced[/] {old} -> {new}").format(old=old, new=new))


@app.command("unlink", help=_(
    "Empty a pack (取消关联), top-down: a pack inside another cannot be unlinked before its parent."))
def unlink(
    code: CodeArg,
    recursive: Annotated[bool, typer.Option("--recursive", help=_("Also empty every pack inside it"))] = False,
    pin: PinOpt = None, config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    code = code_key(config, db, code)
    cfg, ledger, agg = open_for(config, db, code)
    check_pin(cfg, ledger, pin, "pack.unlink", {"code": code, "recursive": recursive})
    done = _run(ledger, "pack.unlink", {"code": code, "recursive": recursive},
                lambda: operations.unlink(agg, code, recursive=recursive))
    for u in done:
        console.print(_("[yellow]unlinked[/] {code}: {count} children").format(code=u.parent, count=u.children))


@app.command("decommission", help=_(
    "Take a code and all its contents out of commerce (ObjectEvent, bizStep decommissioning)."))
def decommission(
    code: CodeArg,
    recursive: Annotated[
        bool, typer.Option("--recursive", help=_("Everything inside it too (a pack needs it)"))
    ] = False,
    pin: PinOpt = None, config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    code = code_key(config, db, code)
    cfg, ledger, agg = open_for(config, db, code)
    check_pin(cfg, ledger, pin, "pack.decommission", {"code": code, "recursive": recursive})
    count = _run(ledger, "pack.decommission", {"code": code, "recursive": recursive},
                 lambda: operations.decommission(agg, code, recursive=recursive))
    console.print(_("[red]decommissioned[/] {code}: {count} codes").format(code=code, count=count))
