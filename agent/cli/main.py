"""`lineagent` entry point: one typer app, one sub-app per area, each in its own module."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import traceback
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
import yaml

from agent.config import default_config_path
from agent.i18n import _, set_language


def _line_language() -> None:
    """Help texts are translated when the CLI is built, before a command reads its config: take
    `locale:` from the default config when there is one, so `--help` speaks the line's language too.
    Unchecked on purpose: `config check` reports a bad file, help must still come up."""
    path = default_config_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return
    if isinstance(data, dict) and isinstance(data.get("locale"), str):
        set_language(data["locale"])


_line_language()

app = typer.Typer(
    name="lineagent",
    help=_("Production-line edge agent: code packages, coders, verification, aggregation, EPCIS sync."),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module, command group name). A group's module defines `app: typer.Typer`.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("agent.cli.config_cmd", "config"),
    ("agent.cli.keys_cmd", "keys"),
    ("agent.cli.codes_cmd", "codes"),
    ("agent.cli.job_cmd", "job"),
    ("agent.cli.sim_cmd", "sim"),
    ("agent.cli.sync_cmd", "sync"),
    ("agent.cli.pack_cmd", "pack"),
    ("agent.cli.printer_cmd", "printer"),
    ("agent.cli.camera_cmd", "camera"),
    ("agent.cli.plc_cmd", "plc"),
    ("agent.cli.alarm_cmd", "alarm"),
]
# Modules that add commands to a group through `register(group_app)`: (module, the group's module).
GROUP_COMMANDS: list[tuple[str, str]] = [
    ("agent.cli.rework_cmd", "agent.cli.pack_cmd"),
]
# Modules that add top-level commands to `app` through `register(app)`.
TOP_LEVEL: list[str] = [
    "agent.cli.demo_cmd",
    "agent.cli.run_cmd",
    "agent.cli.receiver_cmd",
    "agent.cli.trace_cmd",
    "agent.cli.top_cmd",
]


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("lineagent")
        except metadata.PackageNotFoundError:
            version = _("unknown (not installed)")
        typer.echo(f"lineagent {version}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help=_("Print the version and exit"))] = False,
) -> None:
    """Production-line edge agent: code packages, coders, verification, aggregation, EPCIS sync."""


def _build() -> None:
    for module, group in GROUP_COMMANDS:
        importlib.import_module(module).register(importlib.import_module(group).app)
    for module, name in SUBCOMMANDS:
        app.add_typer(importlib.import_module(module).app, name=name)
    for module in TOP_LEVEL:
        importlib.import_module(module).register(app)


_build()


def main() -> None:
    """Every failure ends as a message and an exit code, never a traceback (exit 5 for a bug: the
    traceback goes to the log file named, or to stderr with LINEAGENT_DEBUG=1)."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except Exception as exc:  # the last guard: a bug must not print a wall of Python at an operator
        if os.environ.get("LINEAGENT_DEBUG"):
            raise
        report = Path(tempfile.gettempdir()) / f"lineagent-error-{os.getpid()}.txt"
        try:
            report.write_text(traceback.format_exc())
            where = f"; details in {report}"
        except OSError:
            where = ""
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}{where}\n")
        raise SystemExit(5) from None
