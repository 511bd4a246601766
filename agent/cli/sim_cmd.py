"""`lineagent sim ...`: simulated devices speaking the real wire protocols, to try a config without hardware.

Why in the product and not only in tests: a technician writing a line config or a protocol file at a
desk needs a coder that answers byte for byte, misbehaves on request, and shows what it printed.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.common import ConfigOpt, Exit, config, console, fail
from agent.i18n import N_, _
from confkit.loader import ConfigError
from drivers.printers.generic_spec import load_protocol
from drivers.sim import SIMULATORS, load_simulator
from drivers.sim.faults import FaultPlan, FaultSpecError

app = typer.Typer(help=_("Simulated devices that speak the real wire protocols, with fault injection."))

FAULTS_HELP = N_(
    "Faults, comma-separated: KIND:P (probability per request for nak, garbage, silence, buffer_full; "
    "per print for stop, power_loss, ink_low), KIND@N (once, after the N-th print), seed=S (default 0), "
    "down=SECONDS (power-loss length, default 1). Example: nak:0.01,garbage:0.005,power_loss@500,seed=7"
)


@app.command(help=_("Run one simulated coder until Ctrl-C (or --for), then show what it printed."))
def printer(
    protocol: Annotated[str, typer.Option(
        "--protocol", help=_("One of: {names}").format(names=", ".join(sorted(SIMULATORS))))],
    pty: Annotated[bool, typer.Option("--pty", help=_("Serve on a new pty; its path is printed"))] = False,
    tcp: Annotated[int | None, typer.Option("--tcp", help=_("Serve on this TCP port of 127.0.0.1 (0: any)"))] = None,
    faults: Annotated[str | None, typer.Option("--faults", help=_(FAULTS_HELP))] = None,
    rate: Annotated[float, typer.Option("--rate", help=_("Conveyor: products per minute (0: none)"), min=0)] = 60.0,
    baud: Annotated[int, typer.Option("--baud", help=_("Line speed of the pty (10 bits a byte)"), min=1)] = 115200,
    capacity: Annotated[
        int | None, typer.Option("--capacity", help=_("FIFO size (default: the vendor's)"), min=1)
    ] = None,
    duration: Annotated[float | None, typer.Option("--for", help=_("Stop after this many seconds"), min=0)] = None,
    protocol_file: Annotated[
        str | None,
        typer.Option("--protocol-file", help=_("For --protocol generic: config/printers/NAME.yaml or a path"))
    ] = None,
) -> None:
    if pty == (tcp is not None):
        fail(_("give exactly one of --pty or --tcp PORT"), Exit.USAGE)
    if (protocol == "generic") != (protocol_file is not None):
        fail(_("--protocol-file goes with --protocol generic, and only with it"), Exit.USAGE)
    try:
        cls = load_simulator(protocol)
        plan = FaultPlan.parse(faults)
    except (LookupError, FaultSpecError) as exc:
        fail(str(exc), Exit.USAGE)
    options: dict[str, Any] = {"rate_per_min": rate or None, "baud": baud, "faults": plan}
    if capacity is not None:
        options["capacity"] = capacity
    if protocol_file is not None:
        try:
            options["protocol"] = load_protocol(protocol_file)
        except ConfigError as exc:
            fail(str(exc), Exit.REFUSED)
    sim = cls(**options)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(_serve(sim, pty=pty, port=tcp, duration=duration))
        except ValueError as exc:  # e.g. a TCP-only protocol asked for a pty
            fail(str(exc), Exit.USAGE)
    console.print(_("printed {printed} records, counter {counter}, missed {missed} products").format(
        printed=len(sim.printed), counter=sim.counter, missed=sim.missed))


async def _serve(sim: Any, *, pty: bool, port: int | None, duration: float | None) -> None:
    try:
        if pty:
            console.print(f"pty {await sim.serve_pty()}", highlight=False)
        else:
            console.print(f"tcp 127.0.0.1:{await sim.serve_tcp(port or 0)}", highlight=False)
        console.file.flush()
        if duration is None:
            await asyncio.Event().wait()  # until Ctrl-C
        else:
            await asyncio.sleep(duration)
    finally:
        await sim.close()


@app.command("line", help=_(
    "Run a whole simulated plant for a line config in this process, until SIGTERM/Ctrl-C: coders, PLC with "
    "conveyor and reject gate, camera (TCP image export), label printer; `lineagent run` reaches it "
    "through the live config it writes, and may be killed and restarted while the plant runs on."))
def line(
    config_path: ConfigOpt = None,
    workdir: Annotated[Path, typer.Option("--dir", help=_("Where the plant writes plant.json and its own "
                                                          "record, plant.jsonl"))] = Path("plant"),
    rate: Annotated[float, typer.Option("--rate", help=_("Products per minute"), min=1)] = 600.0,
    seed: Annotated[int, typer.Option("--seed", help=_("Seed of the injected print defects"))] = 7,
    defects: Annotated[float, typer.Option("--defects", help=_("Share of items printed with a defect that "
                                                               "must be rejected"), min=0, max=1)] = 0.06,
    watchdog: Annotated[float, typer.Option("--watchdog", help=_(
        "The PLC stops the conveyor when the agent's heartbeat is this many seconds old (0: never)"), min=0)
    ] = 3.0,
    coder_link: Annotated[str, typer.Option("--coder-link", help=_("pty (serial) or tcp"))] = "pty",
    broker: Annotated[bool, typer.Option("--broker/--no-broker", help=_(
        "Also run mosquitto and the reference receiver (the live config points the agent at them)"))] = False,
) -> None:
    from agent.line.plant import SimSettings, SimulationError
    from agent.line.plant_process import announce, run

    if coder_link not in ("pty", "tcp"):
        fail(_("--coder-link is pty or tcp, not {value!r}").format(value=coder_link), Exit.USAGE)
    cfg = config(config_path)
    assert cfg.source is not None
    settings = SimSettings(rate_per_min=rate, seed=seed, defect_share=defects, plc_watchdog_s=watchdog or None,
                           coder_link=coder_link)
    try:
        summary = run(cfg.source, workdir, settings, broker=broker, ready=announce)
    except SimulationError as exc:
        fail(str(exc), Exit.REFUSED)
    except OSError as exc:  # the --dir or the live config beside the config cannot be written
        fail(_("the plant cannot write its files: {error}").format(error=exc), Exit.REFUSED)
    console.print(_("plant stopped: {items} items, {rejected} rejected and {passed} passed at the gate, "
                    "{trips} watchdog stops").format(items=summary["items"], rejected=summary["rejected"],
                                                      passed=summary["passed"],
                                                      trips=sum(summary["watchdog_trips"].values())))
