"""`lineagent demo`: a simulated line on this machine, from keys to a running job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import console


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        workdir: Annotated[
            Path, typer.Option("--dir", help="Where the demo writes its keys, config and ledger")
        ] = Path("demo-data"),
        items: Annotated[int, typer.Option(min=1, help="Items to run through the line")] = 200,
        fresh: Annotated[bool, typer.Option(help="Delete the demo directory first")] = True,
    ) -> None:
        """Run the simulated line end to end and print where its data went."""
        from agent.demo import run_demo

        report = run_demo(workdir, items=items, fresh=fresh, console=console)
        raise typer.Exit(0 if report.ok else 1)
