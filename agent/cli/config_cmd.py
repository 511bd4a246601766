"""`lineagent config check`: every error at once with file, line and key; a summary when good."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agent.cli.common import Exit, console, err_console
from agent.config import ConfigError, default_config_path, load_config
from agent.i18n import _, set_language

app = typer.Typer(help=_("Check line configs."), no_args_is_help=True)


@app.command("check", help=_("Validate a line config; exit 1 listing every problem, exit 0 with a summary."))
def check(path: Annotated[Path | None, typer.Argument(
        help=_("The line config YAML to check (default: $LINEAGENT_CONFIG, then /etc/lineagent/line.yaml)"))] = None,
) -> None:
    path = path or default_config_path()
    if not path.exists():
        err_console.print(_("error: no config at {path}").format(path=escape(str(path))), highlight=False)
        raise typer.Exit(int(Exit.NOT_FOUND))
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            err_console.print(f"[red]{escape(str(issue))}[/]", highlight=False, soft_wrap=True)
        err_console.print(_("{count} problem(s) in {path}").format(count=len(exc.issues), path=escape(str(path))),
                          highlight=False)
        raise typer.Exit(int(Exit.REFUSED)) from exc
    set_language(cfg.locale)
    table = Table(title=_("{path}: OK — site {site}, line {line}").format(
        path=escape(str(path)), site=cfg.site.id, line=cfg.line.id))
    table.add_column(_("section"))
    table.add_column(_("entries"))
    for group in ("coders", "cameras", "readers", "plcs", "label_printers"):
        devices = getattr(cfg.devices, group)
        if devices:
            table.add_row(f"devices.{group}", ", ".join(f"{n} ({d.type})" for n, d in devices.items()))
    table.add_row(_("stations"), ", ".join(f"{n} ({s.type})" for n, s in cfg.stations.items()) or "-")
    table.add_row(_("code levels"), ", ".join(cfg.code_sources.levels) or "-")
    table.add_row(_("products"), ", ".join(f"{n} ({p.gtin})" for n, p in cfg.products.items()) or "-")
    table.add_row(_("packing specs"), ", ".join(
        f"{n} ({' > '.join(f'{lv.count or 1} {lv.level}' for lv in s.levels)})" for n, s in cfg.packing_specs.items()
    ) or "-")
    table.add_row(_("ledger"), str(cfg.resolve(cfg.storage.ledger)))
    table.add_row("mqtt", cfg.mqtt.broker if cfg.mqtt else _("not configured"))
    console.print(table)
