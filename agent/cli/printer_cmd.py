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
from drivers.printers.base import Printer, PrinterError, PrinterStatus, PrintEventKind, Record
from drivers.registry import DeviceKind, UnknownDriver, load

app = typer.Typer(help="Coders: probe, status, send a text, test-print with confirmations.",
                  no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="Coder name under devices.coders in the line config")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="Give up after this many seconds")]
T = TypeVar("T")
GRACE_S = 10.0  # after `printer test` runs out of time: for stopping the coder and closing the link


def build(cfg: LineConfig, name: str) -> Printer:
    """The configured driver for coder `name`, not yet connected."""
    entry = cfg.devices.coders.get(name)
    if entry is None:
        known = ", ".join(sorted(cfg.devices.coders)) or "none configured"
        fail(f"no coder {name!r} under devices.coders (known: {known})", Exit.NOT_FOUND)
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
        fail(f"coder {name!r}: {exc}", Exit.DEVICE)
    except TimeoutError:
        fail(f"coder {name!r}: no complete answer within {limit_s:g} s (is it on, and is the address right?)",
             Exit.DEVICE)
    except OSError as exc:
        fail(f"coder {name!r}: cannot reach it: {exc}", Exit.DEVICE)


def status_table(name: str, st: PrinterStatus, printer: Printer) -> Table:
    caps = printer.capabilities
    table = Table(title=f"coder {name}", show_header=False)
    rows: list[tuple[str, Any]] = [
        ("state", st.state.value),
        ("faults", ", ".join(sorted(st.faults)) or "none"),
        ("fifo", f"{_opt(st.fifo_depth)} of {_opt(st.fifo_capacity or caps.fifo_capacity)}"),
        ("last printed seq", _opt(st.last_printed)),
        ("print count", _opt(st.print_count)),
        ("fifo lost", "yes" if st.fifo_lost else "no"),
    ]
    if st.detail:
        rows.append(("detail", st.detail))
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def _opt(value: object) -> str:
    return "?" if value is None else str(value)


@app.command("probe")
def probe(name: NameArg, timeout: TimeoutOpt = 10.0, config_path: ConfigOpt = None) -> None:
    """Identity, status and FIFO of a coder: does it answer, and as what?"""
    cfg = config(config_path)

    async def work(p: Printer) -> tuple[dict[str, str], PrinterStatus]:
        return await p.identity(), await p.status()

    ident, st = on_device(cfg, name, timeout, work)
    printer = build(cfg, name)
    table = Table(title=f"coder {name} ({cfg.devices.coders[name].type})", show_header=False)
    for key, value in sorted(ident.items()):
        table.add_row(key, value)
    caps = printer.capabilities
    table.add_row("fifo capacity", str(caps.fifo_capacity))
    table.add_row("indexed", "yes" if caps.indexed else "no")
    table.add_row("print-complete events", "yes" if caps.print_complete_events else "no")
    table.add_row("counters", "yes" if caps.counters else "no")
    console.print(table)
    console.print(status_table(name, st, printer))


@app.command("status")
def status(name: NameArg, timeout: TimeoutOpt = 10.0, config_path: ConfigOpt = None) -> None:
    """State, faults, FIFO depth, last printed seq and counter of a coder."""
    cfg = config(config_path)
    printer = build(cfg, name)
    st = on_device(cfg, name, timeout, lambda p: p.status())
    console.print(status_table(name, st, printer))


@app.command("send")
def send(
    name: NameArg,
    text: Annotated[str, typer.Argument(help="Text to put in the coder's FIFO (printed on the next item)")],
    timeout: TimeoutOpt = 10.0,
    config_path: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Push one text into the coder's FIFO. Not a ledger code: use it to commission, not to produce."""
    cfg = config(config_path)

    async def work(p: Printer) -> PrinterStatus:
        await p.push([Record(seq=1, text=text)])
        return await p.status()

    st = on_device(cfg, name, timeout, work)
    _audit(cfg, db, "printer.send", {"coder": name, "text": text}, "queued")
    console.print(f"queued {text!r} on {name}; FIFO depth now {_opt(st.fifo_depth)}")


@app.command("test")
def test(
    name: NameArg,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=10_000, help="Test codes to print")] = 10,
    prefix: Annotated[str, typer.Option(help="Test codes are PREFIX-<time>-<n>")] = "TEST",
    timeout: TimeoutOpt = 60.0,
    config_path: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Start the coder, feed COUNT test codes through its FIFO and report which were confirmed printed."""
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
    table = Table(title=f"test print on {name}: {len(confirmed)} of {count} confirmed")
    table.add_column("seq", justify="right")
    table.add_column("text")
    table.add_column("confirmed")
    for r in records:
        at = confirmed.get(r.seq)
        table.add_row(str(r.seq), r.text, "-" if at is None else f"yes ({at:.2f} s)")
    console.print(table)
    result = f"{len(confirmed)}/{count} confirmed"
    _audit(cfg, db, "printer.test", {"coder": name, "count": count}, result)
    if len(confirmed) < count:
        fail(f"coder {name!r}: only {result} printed within {timeout:g} s", Exit.DEVICE)


async def _watch(p: Printer, confirmed: dict[int, float], started: float) -> None:
    async for event in p.events():
        if event.kind is PrintEventKind.PRINTED and event.seq is not None:
            for seq in range(1, event.seq + 1):
                confirmed.setdefault(seq, time.monotonic() - started)


def _audit(cfg: LineConfig, db: Any, action: str, args: dict[str, Any], result: str) -> None:
    """Texts put on a coder by hand are operator actions: keep who did it, when, and what."""
    ledger = open_ledger(cfg, db)
    try:
        ledger.audit(action, args, result)
    finally:
        ledger.close()
