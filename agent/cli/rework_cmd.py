"""`lineagent pack take-out | move | merge`: rework of finished packs (agent/aggregation/rework.py).

Why beside pack_cmd and not in it: these commands share pack's PIN check and ledger opening but
nothing else, and pack_cmd is already the size a module should be; `register` adds them to the
`pack` group (agent/cli/main.py). Every one needs the operator PIN, like the other commands that
change a finished pack, and is audited: a success inside the rework's own transaction, a refusal
(nothing changed) on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape

from agent.aggregation import rework
from agent.aggregation.model import AggregationError, PackInfo, PackRejected
from agent.cli.code_arg import code_key
from agent.cli.common import ConfigOpt, DbOpt, Exit, console, fail, state_name
from agent.cli.pack_cmd import PinOpt, check_pin, open_for
from agent.i18n import _
from agent.ledger import Ledger

CodeArg = Annotated[str, typer.Argument(help=_("The code as printed (any printed form)"))]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help=_("Why (recorded with the pack and in the audit)"))]


def register(app: typer.Typer) -> None:
    app.command("take-out", help=_(
        "Take one code out of its pack (a bottle out of a closed box) without opening the packs above it; "
        "the pack stays closed, partial, with the reason recorded."))(take_out)
    app.command("move", help=_(
        "Move a code from its pack into another pack of the same level (a case onto another pallet); the pack "
        "it left is partial, the one it joins is full again or stays partial."))(move)
    app.command("merge", help=_(
        "Merge two partial packs (合垛): every child of the first goes onto the pack given with --into; "
        "the first ends empty (unpacked). Same level, job and lot; the result may not exceed the count."))(merge)


def take_out(
    code: CodeArg,
    reason: Annotated[str, typer.Option("--reason", help=_("Why it is taken out (recorded; required)"))],
    pin: PinOpt = None, config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    code = code_key(config, db, code)
    cfg, ledger, agg = open_for(config, db, code)
    args: dict[str, object] = {"code": code, "reason": reason}
    check_pin(cfg, ledger, pin, "pack.take_out", args)
    done = _run(ledger, "pack.take_out", args,
                lambda audit: rework.take_out(agg, code, reason=reason, audit=audit))
    console.print(_("[yellow]taken out[/] {code} from {parent}").format(code=escape(code),
                                                                           parent=escape(done.source.code)))
    _counts(done.source)


def move(
    code: CodeArg,
    to: Annotated[str, typer.Option("--to", help=_("The pack it goes into (same level as its pack now)"))],
    reason: ReasonOpt = None, pin: PinOpt = None, config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    code, to = code_key(config, db, code), code_key(config, db, to)
    cfg, ledger, agg = open_for(config, db, to)  # held to the counts of the pack it goes into
    args: dict[str, object] = {"code": code, "to": to, "reason": reason}
    check_pin(cfg, ledger, pin, "pack.move", args)
    done = _run(ledger, "pack.move", args, lambda audit: rework.move(agg, code, to, reason=reason, audit=audit))
    console.print(_("[green]moved[/] {code} from {source} to {target}").format(
        code=escape(code), source=escape(done.source.code), target=escape(to)))
    _counts(done.source)
    if done.target is not None:
        _counts(done.target)


def merge(
    source: Annotated[str, typer.Argument(help=_("The pack emptied onto the other (any printed form)"))],
    into: Annotated[str, typer.Option("--into", help=_("The pack that receives every child"))],
    reason: ReasonOpt = None, pin: PinOpt = None, config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    source, into = code_key(config, db, source), code_key(config, db, into)
    cfg, ledger, agg = open_for(config, db, into)
    args: dict[str, object] = {"from": source, "into": into, "reason": reason}
    check_pin(cfg, ledger, pin, "pack.merge", args)
    done = _run(ledger, "pack.merge", args, lambda audit: rework.merge(agg, source, into, reason=reason, audit=audit))
    console.print(_("[green]merged[/] {source} into {target}: {count} moved").format(
        source=escape(source), target=escape(into), count=len(done.moved)))
    if done.target is not None:
        _counts(done.target)
    console.print(_("{code} is now {state}").format(code=escape(source), state=state_name(done.source.state)))


def _counts(pack: PackInfo) -> None:
    """A pack's count after the rework, and why it is short when it is."""
    console.print(_("{level} {code}: {count} of {expected}").format(
        level=pack.level, code=escape(pack.code), count=pack.children, expected=pack.expected_count))
    if pack.partial_reason:
        console.print("  " + _("partial: {reason}").format(reason=escape(pack.partial_reason)))


def _run(ledger: Ledger, action: str, args: dict[str, object],
         work: Callable[[rework.Audit], rework.Reworked]) -> rework.Reworked:
    """Run a rework with its audit row inside; a refusal is audited on its own and ends the command
    with exit 1 (4 when a code or pack does not exist), in the operator's language."""
    try:
        done = work((action, args))
    except rework.ReworkRefused as exc:
        ledger.audit(action, args, f"refused: {exc}")
        ledger.close()
        values = {k: state_name(v) if k == "state" else v for k, v in exc.values.items()}
        missing = exc.template in (rework.NOT_A_CODE, rework.NOT_A_PACK)
        fail(_(exc.template).format(**values), Exit.NOT_FOUND if missing else Exit.REFUSED)
    except (PackRejected, AggregationError) as exc:
        ledger.audit(action, args, f"refused: {exc}")
        ledger.close()
        fail(str(exc))
    ledger.close()
    return done
