"""`lineagent alarm`: what the running daemon's alarm board holds, and acknowledging it (buzzer off)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agent.cli.common import ConfigOpt, DbOpt, Exit, config_optional, console, fail, ledger_path
from agent.control import client
from agent.control.protocol import ErrorCode

app = typer.Typer(help="Alarms of the running line: list, acknowledge.", no_args_is_help=True)


def _call(config: ConfigOpt, db: DbOpt, cmd: str, args: dict[str, object]) -> dict[str, object]:
    cfg = config_optional(config)
    path = ledger_path(cfg, db)
    sock = cfg.control_socket(path) if cfg is not None else path.with_suffix(".sock")
    try:
        return client.call(sock, cmd, args, timeout_s=10)
    except client.DaemonNotRunning as exc:
        fail(f"no running daemon answers ({exc}); alarms live in the daemon", Exit.DEVICE)
    except client.DaemonRefused as exc:
        fail(str(exc), Exit.NOT_FOUND if exc.code is ErrorCode.NOT_FOUND else Exit.REFUSED)


@app.command("list")
def list_cmd(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """The active alarms, worst first."""
    st = _call(config, db, "status", {})
    alarms = st.get("alarms") or []
    table = Table(title=f"alarms (light {st.get('light')})")
    for col in ("severity", "source", "alarm", "detail"):
        table.add_column(col)
    for a in alarms if isinstance(alarms, list) else []:
        table.add_row(str(a["severity"]), escape(str(a["source"])), escape(str(a["key"])), escape(str(a["detail"])))
    console.print(table)


@app.command("ack")
def ack(
    source: Annotated[str | None, typer.Argument(help="Only this source's alarms (a device or station)")] = None,
    key: Annotated[str | None, typer.Option(help="Only this alarm of the source")] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Acknowledge: the buzzer stops; the light stays until the cause is cleared."""
    result = _call(config, db, "alarm.ack", {"source": source, "key": key})
    done = result.get("acknowledged") or []
    console.print(f"{len(done) if isinstance(done, list) else 0} alarm(s) acknowledged"
                  + (": " + ", ".join(map(str, done)) if isinstance(done, list) and done else ""))
