"""`lineagent demo`: the whole simulated line on this machine, from keys to events at the cloud receiver.

Exit codes: 0 the job ran to its end and every invariant holds; 1 an invariant failed (the summary
says which); 130 (128 + SIGINT, the shell's convention) stopped by Ctrl-C: the line was stopped cleanly,
the summary printed and every invariant held on what ran. A Ctrl-C while the keys and packages are
being made, before the line runs, also ends with 130 and no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import Exit, console
from agent.i18n import _

INTERRUPTED = 130  # 128 + SIGINT


def register(app: typer.Typer) -> None:
    @app.command("demo", help=_("Run the simulated line end to end; exit 1 when an invariant fails (see the summary)."))
    def demo(
        workdir: Annotated[
            Path, typer.Option("--dir", help=_("Where the demo writes its keys, config, ledger and receiver db"))
        ] = Path("demo-data"),
        items: Annotated[int, typer.Option(min=1, help=_("Items to run through the line"))] = 300,
        rate: Annotated[float, typer.Option(min=60, max=3000, help=_("Line speed, items per minute"))] = 600.0,
        broker_restart: Annotated[bool, typer.Option(help=_("Kill and restart the MQTT broker once mid-run"))] = True,
        seed: Annotated[int, typer.Option(help=_("Seed of the injected print defects"))] = 7,
        fresh: Annotated[bool, typer.Option(help=_("Delete the demo directory first"))] = True,
    ) -> None:
        from agent.demo import run_demo

        try:
            report = run_demo(workdir, items=items, fresh=fresh, console=console, rate_per_min=rate,
                              broker_restart=broker_restart, seed=seed)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted outside the line run; the ledger keeps what was committed[/]")
            raise typer.Exit(INTERRUPTED) from None
        if not report.ok:
            raise typer.Exit(int(Exit.REFUSED))
        raise typer.Exit(INTERRUPTED if report.interrupted else int(Exit.OK))
