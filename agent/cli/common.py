"""What every CLI command shares: --config/--db, opening the ledger, exit codes, error output.

Exit codes are part of the interface (scripts on the line PC test them):
0 ok, 1 refused or invalid input (the message says what and where), 2 usage, 3 device error,
4 not found, 5 internal error.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from agent.config import ConfigError, LineConfig, default_config_path, load_config
from agent.i18n import N_, _, set_language
from agent.ledger import Ledger, LedgerError

console = Console()
err_console = Console(stderr=True)


class Exit(IntEnum):
    OK = 0
    REFUSED = 1
    USAGE = 2
    DEVICE = 3
    NOT_FOUND = 4
    INTERNAL = 5


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c",
                 help=_("Line config (default: $LINEAGENT_CONFIG, then /etc/lineagent/line.yaml)")),
]
DbOpt = Annotated[Path | None, typer.Option("--db", help=_("Ledger file (overrides storage.ledger)"))]


# The states of jobs (agent/jobs.py), packs (agent/aggregation/model.py) and codes
# (agent/ledger/states.py) as an operator reads them; --json output keeps the raw values.
STATE_NAMES: dict[str, str] = {
    "created": N_("created"), "running": N_("running"), "paused": N_("paused"), "stopped": N_("stopped"),
    "finished": N_("finished"),
    "open": N_("open"), "parked": N_("parked"), "closed": N_("closed"), "unpacked": N_("unpacked"),
    "replaced": N_("replaced"), "decommissioned": N_("decommissioned"),
    "dropped": N_("dropped"),
    "available": N_("available"), "allocated": N_("allocated"), "sent": N_("sent"), "printed": N_("printed"),
    "verified": N_("verified"), "rejected": N_("rejected"), "in_doubt": N_("in_doubt"), "voided": N_("voided"),
    "returned": N_("returned"), "escaped": N_("escaped"),
}


def state_name(state: object) -> str:
    """A job, pack or code state in the operator's language; an unknown one as it is."""
    text = str(state)
    return _(STATE_NAMES[text]) if text in STATE_NAMES else text


def fail(message: str, code: Exit = Exit.REFUSED) -> NoReturn:
    # escape(): a path or a code may hold "[/]" or "[bold]", which rich would read as markup
    err_console.print(_("[bold red]error:[/] {message}").format(message=escape(message)),
                      highlight=False, soft_wrap=True)
    raise typer.Exit(int(code))


def config(path: Path | None) -> LineConfig:
    p = path or default_config_path()
    try:
        cfg = load_config(p)
    except ConfigError as exc:
        for issue in exc.issues:
            err_console.print(f"[red]{escape(str(issue))}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(int(Exit.REFUSED)) from exc
    set_language(cfg.locale)  # the config's language wins over LANG from here on
    return cfg


def ledger_path(cfg: LineConfig | None, db: Path | None) -> Path:
    if db is not None:
        return db
    if cfg is None:
        fail(_("no --db given and no config to take storage.ledger from"), Exit.USAGE)
    return cfg.resolve(cfg.storage.ledger)


def open_ledger(cfg: LineConfig | None, db: Path | None, *, create: bool = False) -> Ledger:
    """The ledger; refused (exit 4) when the file does not exist, unless the command makes ledgers
    (`codes import`, `job create`, `run`): a mistyped --db must not quietly become an empty ledger."""
    path = ledger_path(cfg, db)
    if not create and not path.exists():
        fail(_("no ledger at {path} (a mistyped --db or storage.ledger? `lineagent codes import` or "
               "`lineagent run` creates one)").format(path=path), Exit.NOT_FOUND)
    if create and not path.parent.is_dir():
        fail(_("cannot create the ledger {path}: folder {folder} does not exist").format(path=path, folder=path.parent),
             Exit.NOT_FOUND)
    window = (cfg.storage.group_commit_ms / 1000.0) if cfg else 0.010
    try:
        return Ledger(path, group_window_s=window)
    except LedgerError as exc:
        fail(str(exc), Exit.REFUSED)


def config_optional(path: Path | None) -> LineConfig | None:
    """A config when one is given or found at the default path; commands that can run on --db alone."""
    p = path or default_config_path()
    if path is None and not p.exists():
        return None
    return config(p)
