"""The pack commands' way to a running line, and what they say afterwards.

Why the daemon first: a pack being built on a running line is filled by the daemon between two
verdicts; only the daemon can park or close it without racing the next bottle, and it audits the
operator from the socket's peer credentials. When no daemon answers, the CLI works on the ledger as
it always did (agent/aggregation/commands.py); `--level` then has no meaning (no line is building).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from agent.aggregation.builds import BUILD_REF
from agent.aggregation.commands import Target, resolve
from agent.aggregation.model import AggregationError
from agent.cli.code_arg import code_key
from agent.cli.common import Exit, config, console, fail, ledger_path, open_ledger
from agent.cli.refusals import refusal
from agent.config.model import LineConfig
from agent.control import client
from agent.control.protocol import NO_DAEMON_LEVEL, PACK_TARGET, ErrorCode
from agent.i18n import _
from agent.ledger import Ledger

RefArg = Annotated[str | None, typer.Argument(help=_(
    "The pack's code, a code inside a pack being built, or #N (a pack being built, as `status` shows it)"))]
LevelOpt = Annotated[str | None, typer.Option("--level", help=_(
    "The pack being built at this level on the running line (box, case, pallet)"))]

EXIT = {ErrorCode.NOT_FOUND: Exit.NOT_FOUND, ErrorCode.USAGE: Exit.USAGE}


def ledger_ref(code: str | None, level: str | None, cfg_path: Path | None, db: Path | None) -> str | None:
    """The ledger's code for what the operator typed or scanned (any printed form, agent/cli/code_arg.py);
    "#N" (a build) as it is. Exactly one of a code and a level names the pack (exit 2 otherwise)."""
    if (code is None) == (level is None):
        fail(_(PACK_TARGET), Exit.USAGE)
    if code is None or BUILD_REF.fullmatch(code.strip()):
        return code
    return code_key(cfg_path, db, code)


def ask_daemon(cmd: str, code: str | None, level: str | None, args: dict[str, Any], cfg: LineConfig | None,
               db: Path | None) -> dict[str, Any] | None:
    """The running daemon's answer; None when no daemon answers. A refusal ends the command (exit 1/2/4)."""
    if (code is None) == (level is None):
        fail(_(PACK_TARGET), Exit.USAGE)
    path = ledger_path(cfg, db)
    sock = cfg.control_socket(path) if cfg is not None else path.with_suffix(".sock")
    target = {"level": level} if level is not None else {"code": code}
    try:
        return client.call(sock, cmd, {**target, **args})
    except client.DaemonNotRunning:
        return None
    except client.DaemonRefused as exc:
        fail(refusal(str(exc)), EXIT.get(exc.code, Exit.REFUSED))


def no_daemon(code: str | None, level: str | None) -> str:
    if code is None:
        fail(_(NO_DAEMON_LEVEL).format(level=level), Exit.REFUSED)
    return code


def open_target(action: str, cfg_path: Path | None, db: Path | None, ref: str
                ) -> tuple[LineConfig, Ledger, Target]:
    cfg = config(cfg_path)
    ledger = open_ledger(cfg, db)
    try:
        return cfg, ledger, resolve(ledger, cfg, ref)
    except AggregationError as exc:
        ledger.audit(action, {"code": ref}, f"refused: {exc}")
        ledger.close()
        shown = getattr(exc, "shown", None)
        fail(shown() if callable(shown) else str(exc),
             Exit.NOT_FOUND if getattr(exc, "not_found", False) else Exit.REFUSED)


def said(result: dict[str, Any], kind: str, *, by_daemon: bool = False) -> None:
    """One sentence per outcome, in the operator's language."""
    v = {k: escape(str(x)) for k, x in result.items() if x is not None}
    if result.get("build") is None:  # a pack with its own code
        text = {
            "close": _("[green]closed[/] {pack} (partial: {partial_reason})") if result.get("partial_reason")
            else _("[green]closed[/] {pack}"),
            "park": _("[yellow]parked[/] {pack}"),
            "resume": _("[green]resumed[/] {pack}"),
        }[kind]
    elif kind == "close":
        text = (_("[green]closed[/] {pack} as {level} {parent}: {children} of {expected} (partial: {partial_reason})")
                if result.get("partial_reason") else _("[green]closed[/] {pack} as {level} {parent}: {children} of "
                                                       "{expected}"))
    elif kind == "park":
        text = _("[yellow]parked[/] {pack}: {children} of {expected}; the next items go into a new {level}")
    else:
        text = (_("[green]resumed[/] {pack}: {children} of {expected}; {parked} set aside (parked)")
                if result.get("parked") else _("[green]resumed[/] {pack}: {children} of {expected}"))
    line = text.format(**v)
    if by_daemon:
        line = _("{outcome} (by the running daemon)").format(outcome=line)
    console.print(line)

