"""`lineagent plc probe NAME`: read every mapped PLC signal and show it, without the daemon.
`lineagent plc gate-test [NAME]`: fire the reject gate for the next pitch and run the belt past it.

Why: commissioning a line means checking the register map against the PLC program; a table of
signal, table, address, slave and live value shows a wrong address at a glance. Exit 3 when the PLC
does not answer at all (a dead slave for one signal shows as an error in its row instead). The gate
test goes through the running daemon (it owns the belt; agent/control/pack_commands.py), or drives
the PLC itself when no daemon answers; audited either way.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from agent.cli.common import ConfigOpt, Exit, config, console, fail, ledger_path, open_ledger
from agent.cli.refusals import refusal
from agent.config.model import LineConfig
from agent.config.stations import StationKind
from agent.control import client
from agent.control.pack_commands import Gate, gate_test, on_the_belt
from agent.control.protocol import GATE_ITEMS_ON_BELT, UNKNOWN_PLC, ErrorCode
from agent.i18n import _
from drivers import registry
from drivers.plc import LinePlc, PlcError, PlcLinkError, Signal

app = typer.Typer(help=_("Check the line PLC's register map against the live PLC."), no_args_is_help=True)


async def _probe(plc: LinePlc) -> dict[Signal, int | PlcError]:
    async with plc:
        return await plc.probe()


def _plc(cfg: LineConfig, name: str) -> LinePlc:
    cls = registry.load(registry.DeviceKind.PLC, cfg.devices.plcs[name].type)
    plc: LinePlc = cls(cfg.device_settings("plcs", name), name=name)
    return plc


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
    plc = _plc(cfg, name)
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


@app.command("gate-test", help=_(
    "Run the belt until what is on it has passed the reject gate, fire the gate for the next pitch, run it past the "
    "gate, stop. Not while a job runs. Put a test item on that pitch to see the confirm sensor count it."))
def gate_test_cmd(
    name: Annotated[str | None, typer.Argument(help=_("The PLC of a verify station (optional with one)"))] = None,
    config_path: ConfigOpt = None,
) -> None:
    cfg = config(config_path)
    path = ledger_path(cfg, None)
    args: dict[str, object] = {"plc": name} if name else {}
    try:
        result = client.call(cfg.control_socket(path), "gate.test", args)
        by_daemon = True
    except client.DaemonNotRunning:
        result, by_daemon = _gate_here(cfg, name, args), False
    except client.DaemonRefused as exc:
        fail(refusal(str(exc)), {ErrorCode.NOT_FOUND: Exit.NOT_FOUND, ErrorCode.USAGE: Exit.USAGE}.get(
            exc.code, Exit.REFUSED))
    text = (_("gate test on {plc}: pitch {pitch} fired, the belt ran {pitches_run} pitches, the confirm sensor counted "
              "an item leaving through the gate") if result.get("confirmed") else
            _("gate test on {plc}: pitch {pitch} fired, the belt ran {pitches_run} pitches, the confirm sensor counted "
              "nothing (an empty pitch, or the gate or its sensor does not work)"))
    line = text.format(**result)
    console.print(_("{outcome} (by the running daemon)").format(outcome=line) if by_daemon else line)


def _gate_here(cfg: LineConfig, name: str | None, args: dict[str, object]) -> dict[str, object]:
    """No daemon: this process drives the PLC (with heartbeats, so its watchdog lets the belt run)."""
    gates = {st.plc: st.verify for st in cfg.stations.values() if st.type is StationKind.VERIFY and st.plc}
    if name is None and len(gates) == 1:
        name = next(iter(gates))
    if name is None or name not in gates:
        fail(_(UNKNOWN_PLC).format(plc=name, known=", ".join(sorted(gates)) or "-"), Exit.NOT_FOUND)
    ledger = open_ledger(cfg, None)
    try:
        waiting = on_the_belt(ledger)
        if waiting is not None:
            ledger.audit("gate.test", args, f"refused: {waiting[1]} printed items of job {waiting[0]} unjudged")
            fail(_(GATE_ITEMS_ON_BELT).format(job=waiting[0], count=waiting[1]))
        verify = gates[name]
        try:
            result = asyncio.run(gate_test(Gate(_plc(cfg, name), verify.gate_at, verify.confirm_margin)))
        except PlcError as exc:
            ledger.audit("gate.test", args, f"refused: {exc}")
            fail(str(exc), Exit.DEVICE)
        ledger.audit("gate.test", args, f"ok: {result}")
    finally:
        ledger.close()
    return result
