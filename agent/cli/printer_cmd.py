"""`lineagent printer`: try a coder from the line config without running a job.

Why these four: a technician commissioning a line needs to know, in this order, that the coder
answers (probe), what it thinks it is doing (status), that a text reaches the head (send), and that
prints are confirmed back (test). Every command exits 3 (device error) with the driver's own message
when the coder is absent, silent or answers garbage, so a script can tell it from a config mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from agent.cli.common import ConfigOpt, DbOpt, Exit, config, console, fail, open_ledger
from agent.config import LineConfig
from agent.i18n import _
from drivers.printers.base import Printer, PrinterError, PrinterStatus, PrintEventKind, Record
from drivers.registry import DeviceKind, UnknownDriver, load

app = typer.Typer(help=_("Coders: probe, status, send a text, test-print with confirmations."),
                  no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help=_("Coder name under devices.coders in the line config"))]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help=_("Give up after this many seconds"))]
T = TypeVar("T")
GRACE_S = 10.0  # after `printer test` runs out of time: for stopping the coder and closing the link


def build(cfg: LineConfig, name: str) -> Printer:
    """The configured driver for coder `name`, not yet connected."""
    entry = cfg.devices.coders.get(name)
    if entry is None:
        known = ", ".join(sorted(cfg.devices.coders)) or _("none configured")
        fail(_("no coder {name!r} under devices.coders (known: {known})").format(name=name, known=known),
             Exit.NOT_FOUND)
    try:
        cls = load(DeviceKind.CODER, entry.type)
    except UnknownDriver as exc:
        fail(f"devices.coders.{name}: {exc}")
    settings = cfg.device_settings("coders", name)
    if "name" in inspect.signature(cls).parameters:
        printer: Printer = cls(settings, name=name)
    else:
        printer = cls(settings)
    return printer


def on_device(cfg: LineConfig, name: str, limit_s: float, work: Callable[[Printer], Awaitable[T]]) -> T:
    """Connect, run `work`, close; any driver error or a timeout becomes exit code 3 with the reason."""
    printer = build(cfg, name)

    async def session() -> T:
        try:
            async with asyncio.timeout(limit_s):
                await printer.connect()
                return await work(printer)
        finally:
            await printer.close()

    try:
        return asyncio.run(session())
    except PrinterError as exc:
        fail(_("coder {name!r}: {error}").format(name=name, error=exc), Exit.DEVICE)
    except TimeoutError:
        fail(_("coder {name!r}: no complete answer within {seconds:g} s (is it on, and is the address right?)").format(
            name=name, seconds=limit_s), Exit.DEVICE)
    except OSError as exc:
        fail(_("coder {name!r}: cannot reach it: {error}").format(name=name, error=exc), Exit.DEVICE)


def status_table(name: str, st: PrinterStatus, printer: Printer) -> Table:
    caps = printer.capabilities
    table = Table(title=_("coder {name}").format(name=name), show_header=False)
    rows: list[tuple[str, Any]] = [
        (_("state"), st.state.value),
        (_("faults"), ", ".join(sorted(st.faults)) or _("none")),
        (_("fifo"), _("{count} of {capacity}").format(
            count=_opt(st.fifo_depth), capacity=_opt(st.fifo_capacity or caps.fifo_capacity))),
        (_("last printed seq"), _opt(st.last_printed)),
        (_("print count"), _opt(st.print_count)),
        (_("fifo lost"), _yes(st.fifo_lost)),
    ]
    if st.detail:
        rows.append((_("detail"), st.detail))
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def _opt(value: object) -> str:
    return "?" if value is None else str(value)


def _yes(flag: bool) -> str:
    return _("yes") if flag else _("no")


@app.command("probe", help=_("Identity, status and FIFO of a coder: does it answer, and as what?"))
def probe(name: NameArg, timeout: TimeoutOpt = 10.0, config_path: ConfigOpt = None) -> None:
    cfg = config(config_path)

    async def work(p: Printer) -> tuple[dict[str, str], PrinterStatus]:
        return await p.identity(), await p.status()

    ident, st = on_device(cfg, name, timeout, work)
    printer = build(cfg, name)
    table = Table(title=_("coder {name} ({type})").format(name=name, type=cfg.devices.coders[name].type),
                  show_header=False)
    for key, value in sorted(ident.items()):
        table.add_row(key, value)
    caps = printer.capabilities
    table.add_row(_("fifo capacity"), str(caps.fifo_capacity))
    table.add_row(_("indexed"), _yes(caps.indexed))
    table.add_row(_("print-complete events"), _yes(caps.print_complete_events))
    table.add_row(_("counters"), _yes(caps.counters))
    console.print(table)
    console.print(status_table(name, st, printer))


@app.command("status", help=_("State, faults, FIFO depth, last printed seq and counter of a coder."))
def status(name: NameArg, timeout: TimeoutOpt = 10.0, config_path: ConfigOpt = None) -> None:
    cfg = config(config_path)
    printer = build(cfg, name)
    st = on_device(cfg, name, timeout, lambda p: p.status())
    console.print(status_table(name, st, printer))


@app.command("send", help=_(
    "Push one text into the coder's FIFO. Not a ledger code: use it to commission, not to produce."))
def send(
    name: NameArg,
    text: Annotated[str, typer.Argument(help=_("Text to put in the coder's FIFO (printed on the next item)"))],
    timeout: TimeoutOpt = 10.0,
    config_path: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    cfg = config(config_path)

    async def work(p: Printer) -> PrinterStatus:
        await p.push([Record(seq=1, text=text)])
        return await p.status()

    st = on_device(cfg, name, timeout, work)
    _audit(cfg, db, "printer.send", {"coder": name, "text": text}, "queued")
    console.print(_("queued {text!r} on {name}; FIFO depth now {depth}").format(
        text=text, name=name, depth=_opt(st.fifo_depth)))


@app.command("test", help=_(
    "Start the coder, feed COUNT test codes through its FIFO and report which were confirmed printed."))
def test(
    name: NameArg,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=10_000, help=_("Test codes to print"))] = 10,
    prefix: Annotated[str, typer.Option(help=_("Test codes are PREFIX-<time>-<n>"))] = "TEST",
    timeout: TimeoutOpt = 60.0,
    config_path: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    cfg = config(config_path)
    stamp = time.strftime("%H%M%S")
    records = [Record(seq=i + 1, text=f"{prefix}-{stamp}-{i + 1:04d}") for i in range(count)]
    confirmed: dict[int, float] = {}

    async def work(p: Printer) -> None:
        started = time.monotonic()
        watcher = asyncio.create_task(_watch(p, confirmed, started))
        try:
            await p.start()
            pushed = 0
            deadline = started + timeout
            while len(confirmed) < count and time.monotonic() < deadline:
                st = await p.status()
                if st.last_printed is not None:
                    for seq in range(1, st.last_printed + 1):
                        confirmed.setdefault(seq, time.monotonic() - started)
                if st.fifo_lost:
                    break  # what was queued is gone: report what was confirmed
                depth = st.fifo_depth if st.fifo_depth is not None else pushed - len(confirmed)
                room = min(p.capabilities.fifo_capacity - depth, count - pushed)
                if room > 0:
                    await p.push(records[pushed : pushed + room])
                    pushed += room
                await asyncio.sleep(0.01)
        finally:
            watcher.cancel()
            with contextlib.suppress(PrinterError):
                await p.stop()  # leave no test code queued to land on a product later

    # The deadline is checked between requests, not by cancelling one mid-way: a request cancelled
    # half-answered leaves some links (pymodbus transaction ids) out of step for the stop that follows.
    on_device(cfg, name, timeout + GRACE_S, work)
    table = Table(title=_("test print on {name}: {confirmed} of {count} confirmed").format(
        name=name, confirmed=len(confirmed), count=count))
    table.add_column(_("seq"), justify="right")
    table.add_column(_("text"))
    table.add_column(_("confirmed"))
    for r in records:
        at = confirmed.get(r.seq)
        table.add_row(str(r.seq), r.text, "-" if at is None else _("yes ({seconds:.2f} s)").format(seconds=at))
    console.print(table)
    result = f"{len(confirmed)}/{count} confirmed"
    _audit(cfg, db, "printer.test", {"coder": name, "count": count}, result)
    if len(confirmed) < count:
        fail(_("coder {name!r}: only {confirmed}/{count} confirmed printed within {seconds:g} s").format(
            name=name, confirmed=len(confirmed), count=count, seconds=timeout), Exit.DEVICE)


async def _watch(p: Printer, confirmed: dict[int, float], started: float) -> None:
    async for event in p.events():
        if event.kind is PrintEventKind.PRINTED and event.seq is not None:
            for seq in range(1, event.seq + 1):
                confirmed.setdefault(seq, time.monotonic() - started)


def _audit(cfg: LineConfig, db: Any, action: str, args: dict[str, Any], result: str) -> None:
    """Texts put on a coder by hand are operator actions: keep who did it, when, and what. On a new line
    PC the config's ledger is created for it; a --db that does not exist is still refused (a typo)."""
    ledger = open_ledger(cfg, db, create=db is None)
    try:
        ledger.audit(action, args, result)
    finally:
        ledger.close()
