"""`lineagent alarm`: what the running daemon's alarm board holds, and acknowledging it (buzzer off)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agent.cli.common import ConfigOpt, DbOpt, Exit, config_optional, console, fail, ledger_path
from agent.control import client
from agent.control.protocol import ErrorCode
from agent.i18n import _
from agent.line.alarms import alarm_name, light_name, severity_name

app = typer.Typer(help=_("Alarms of the running line: list, acknowledge."), no_args_is_help=True)


def _call(config: ConfigOpt, db: DbOpt, cmd: str, args: dict[str, object]) -> dict[str, object]:
    cfg = config_optional(config)
    path = ledger_path(cfg, db)
    sock = cfg.control_socket(path) if cfg is not None else path.with_suffix(".sock")
    try:
        return client.call(sock, cmd, args, timeout_s=10)
    except client.DaemonNotRunning as exc:
        fail(_("no running daemon answers ({error}); alarms live in the daemon").format(error=exc), Exit.DEVICE)
    except client.DaemonRefused as exc:
        fail(str(exc), Exit.NOT_FOUND if exc.code is ErrorCode.NOT_FOUND else Exit.REFUSED)


@app.command("list", help=_("The active alarms, worst first."))
def list_cmd(config: ConfigOpt = None, db: DbOpt = None) -> None:
    st = _call(config, db, "status", {})
    alarms = st.get("alarms") or []
    table = Table(title=_("alarms (light {light})").format(light=light_name(str(st.get("light")))))
    for col in (_("severity"), _("source"), _("alarm"), _("detail")):
        table.add_column(col)
    for a in alarms if isinstance(alarms, list) else []:
        table.add_row(severity_name(a["severity"]), escape(str(a["source"])), escape(alarm_name(str(a["key"]))),
                      escape(str(a["detail"])))
    console.print(table)


@app.command("ack", help=_("Acknowledge: the buzzer stops; the light stays until the cause is cleared."))
def ack(
    source: Annotated[str | None, typer.Argument(help=_("Only this source's alarms (a device or station)"))] = None,
    key: Annotated[str | None, typer.Option(help=_("Only this alarm of the source"))] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    result = _call(config, db, "alarm.ack", {"source": source, "key": key})
    done = result.get("acknowledged") or []
    names = ", ".join(map(str, done)) if isinstance(done, list) else ""
    count = len(done) if isinstance(done, list) else 0
    console.print(_("{count} alarm(s) acknowledged: {names}").format(count=count, names=names) if names
                  else _("{count} alarm(s) acknowledged").format(count=count))
