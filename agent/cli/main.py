"""`lineagent` entry point: one typer app, one sub-app per area, each in its own module."""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Annotated

import typer

app = typer.Typer(
    name="lineagent",
    help="Production-line edge agent: code packages, coders, verification, aggregation, EPCIS sync.",
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
# Modules that add top-level commands to `app` through `register(app)`.
TOP_LEVEL: list[str] = [
    "agent.cli.demo_cmd",
    "agent.cli.run_cmd",
    "agent.cli.receiver_cmd",
    "agent.cli.trace_cmd",
]


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("lineagent")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        typer.echo(f"lineagent {version}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    """Production-line edge agent: code packages, coders, verification, aggregation, EPCIS sync."""


def _build() -> None:
    for module, name in SUBCOMMANDS:
        app.add_typer(importlib.import_module(module).app, name=name)
    for module in TOP_LEVEL:
        importlib.import_module(module).register(app)


_build()


def main() -> None:
    app()
