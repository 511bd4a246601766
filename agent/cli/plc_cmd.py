"""`lineagent plc probe NAME`: read every mapped PLC signal and show it, without the daemon.

Why: commissioning a line means checking the register map against the PLC program; a table of
signal, table, address, slave and live value shows a wrong address at a glance. Exit 3 when the PLC
does not answer at all (a dead slave for one signal shows as an error in its row instead).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from agent.cli.common import ConfigOpt, Exit, config, console, fail
from agent.i18n import _
from drivers import registry
from drivers.plc import LinePlc, PlcError, PlcLinkError, Signal

app = typer.Typer(help=_("Check the line PLC's register map against the live PLC."), no_args_is_help=True)


async def _probe(plc: LinePlc) -> dict[Signal, int | PlcError]:
    async with plc:
        return await plc.probe()


@app.command(help=_("Read and show every signal in the PLC's register map."))
def probe(
    name: Annotated[str, typer.Argument(help=_("A PLC under devices.plcs in the line config"))],
    config_path: ConfigOpt = None,
) -> None:
    cfg = config(config_path)
    entry = cfg.devices.plcs.get(name)
    if entry is None:
        known = ", ".join(sorted(cfg.devices.plcs)) or _("none configured")
        fail(_("no PLC named {name!r} under devices.plcs (known: {known})").format(name=name, known=known),
             Exit.NOT_FOUND)
    cls = registry.load(registry.DeviceKind.PLC, entry.type)
    plc: LinePlc = cls(cfg.device_settings("plcs", name), name=name)
    try:
        values = asyncio.run(_probe(plc))
    except PlcLinkError as exc:
        fail(str(exc), Exit.DEVICE)
    if values and all(isinstance(v, PlcError) for v in values.values()):
        fail(_("PLC {name} at {url} answered none of its {count} signals: {error}").format(
            name=name, url=plc.settings.url, count=len(values), error=next(iter(values.values()))), Exit.DEVICE)
    table = Table(title=_("PLC {name} at {url}").format(name=name, url=plc.settings.url))
    for col in (_("signal"), _("table"), _("address"), _("slave"), _("value")):
        table.add_column(col)
    for signal, value in values.items():
        point = plc.point(signal)
        slave = point.device_id if point.device_id is not None else plc.settings.device_id
        shown = f"[red]{value}[/]" if isinstance(value, PlcError) else str(value)
        table.add_row(signal.value, point.table.value, str(point.address), str(slave), shown)
    console.print(table)
