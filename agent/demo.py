"""The demo: a whole simulated line on this machine, from keys to events at the cloud receiver.

Every step runs the agent's real code (keys, signed packages, the importer, jobs, the line runtime with
its feeder, verify station, aggregation and MQTT uplink); only the devices are simulators, speaking
their real protocols on ptys and sockets (agent/line/simulated.py). The summary is checked, not just
printed: a failed invariant (a code printed twice, an event missing or duplicated at the receiver)
makes the demo exit non-zero.

While the line runs, a progress display shows items printed, judged and packed, the rejects and the
events the receiver acked, from the same snapshot `lineagent top` reads (agent/cli/top_source.py).
The first Ctrl-C (SIGINT; SIGTERM too) sets the runtime's stop event, exactly as `lineagent run` does:
the conveyor stops before the coder, each coder is reconciled, the ledger committed; then the job is
finished, the uplink drained, the invariants checked on what ran and the summary printed. A second
Ctrl-C during that shutdown is only acknowledged: cutting the reconcile short is what would leave codes
unaccounted for. Exit codes (agent/cli/demo_cmd.py): 0 done, 1 an invariant failed, 130 stopped by
Ctrl-C with every invariant holding.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import yaml
import zxingcpp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Column, Table

from agent.aggregation.parents import ReadLabel
from agent.cli.codes_cmd import make_codes
from agent.cli.top_source import collect
from agent.codes.importer import import_file
from agent.codes.package import generate_keys, load_public, load_signing_key, make_package
from agent.config import LineConfig, load_config
from agent.jobs import JobSpec, create_job, finish_job, start_job
from agent.ledger import Ledger
from agent.line.checks import Check, check_line
from agent.line.runtime import LineRuntime
from agent.line.simulated import SimSettings, SimulatedLine
from agent.line.status import job_progress
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink
from drivers.sim.zpl import ZplSimulator

SIM_CONFIG = Path(__file__).resolve().parent.parent / "config" / "line.sim.yaml"


@dataclass
class DemoReport:
    ok: bool = True
    interrupted: bool = False  # stopped by Ctrl-C (or SIGTERM) before the job was complete
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)


def prepare(workdir: Path, items: int, console: Console) -> LineConfig:
    """Keys, the line config (config/line.sim.yaml with this run's keys) and signed code packages."""
    generate_keys(workdir / "keys" / "cloud", kind="ed25519")
    generate_keys(workdir / "keys" / "line", kind="x25519")
    raw = yaml.safe_load(SIM_CONFIG.read_text())
    raw["security"] = {"cloud_public_key": "keys/cloud/public.pem", "line_private_key": "keys/line/private.pem"}
    for entry in raw["devices"].get("label_printers", {}).values():
        entry["template"] = str((SIM_CONFIG.parent / entry["template"]).resolve())
    cfg_path = workdir / "line.yaml"
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(cfg_path)
    signing = load_signing_key(workdir / "keys" / "cloud" / "private.pem")
    line_key = load_public(workdir / "keys" / "line" / "public.pem")
    ledger = Ledger(cfg.resolve(cfg.storage.ledger))
    try:
        for level, count, prefix in (("item", items + items // 5 + 40, "DW"), ("box", items // 6 + 20, "BX"),
                                     ("case", items // 24 + 20, "CS")):
            pkg = workdir / "packages" / f"{level}.lapkg"
            pkg.parent.mkdir(parents=True, exist_ok=True)
            pkg.write_bytes(make_package(make_codes(count, prefix=prefix), level=level, signing_key=signing,
                                         encrypt_to=line_key))
            result = import_file(ledger, pkg, cfg)
            console.print(f"imported {result.count} {level} codes (signed, encrypted) as {result.package_id}")
    finally:
        ledger.close()
    return cfg


def run_demo(workdir: Path, *, items: int, fresh: bool, console: Console, rate_per_min: float = 600.0,
             broker_restart: bool = True, seed: int = 7) -> DemoReport:
    report = DemoReport()
    workdir = workdir.resolve()
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    console.rule("1. keys, config and signed code packages from the 'cloud'")
    cfg = prepare(workdir, items, console)
    ledger_path = cfg.resolve(cfg.storage.ledger)

    console.rule("2. a simulator behind every device; mosquitto and the reference receiver")
    sim = SimulatedLine(cfg, workdir, SimSettings(rate_per_min=rate_per_min, seed=seed))
    live = sim.start()
    console.print(f"coders on {', '.join(live.device_settings('coders', n).url for n in sim.coders)}; "
                  f"PLC {', '.join(p.url for p in sim.plcs.values())}; broker {sim.broker.url if sim.broker else '-'}")
    labels_dir = workdir / "labels"
    labels_dir.mkdir(exist_ok=True)
    restart: threading.Timer | None = None
    try:
        ledger = Ledger(ledger_path, group_window_s=live.storage.group_commit_ms / 1000)
        job = create_job(ledger, JobSpec(name="WO-DEMO-1", gtin="09506000134352", product_name="Spring water 500 ml",
                                         lot="LOT42", target_qty=items, template="dl", packing_spec="6x4x40"))
        start_job(ledger, job)
        console.rule(f"3. job WO-DEMO-1: {items} items at {rate_per_min:.0f}/min: print -> verify -> pack -> sync")
        readers = _label_readers(sim, live, labels_dir)
        runtime = LineRuntime(live, ledger, overrides=sim.overrides(), read_labels=readers, exit_when_done=True,
                              drain_s=60.0)
        if broker_restart and sim.broker is not None:
            restart = threading.Timer(max(2.0, items / rate_per_min * 30), sim.restart_broker)
            restart.daemon = True
            restart.start()
        try:
            report.interrupted = asyncio.run(_run(runtime, ledger_path, items, console))
        finally:
            if restart is not None:
                restart.cancel()  # stopped early: no broker restart after the simulators are gone
        if report.interrupted:
            console.print("[yellow]stopped by Ctrl-C: the coders are reconciled and the ledger committed; "
                          "finishing the job and checking what ran[/]")
        fin = finish_job(ledger, job)
        ledger.commit()
        console.print(f"job finished: {fin.returned} unused codes returned, {fin.in_doubt} in doubt")
        # the job's own events (finish) also go up: give the uplink one more short run
        _drain(live, ledger_path, 30.0)
        with ledger.lock:
            progress = job_progress(ledger.conn)
        ledger.close()
    finally:
        sim.stop()
    printed = [t for c in sim.coders.values() for t in c.printed]
    report.checks = check_line(ledger_path, printed, sim.receiver_db if sim.receiver else None)
    report.ok = all(c.ok for c in report.checks)
    _summary(console, runtime, progress, report, sim)
    report.facts.update(ledger=str(ledger_path), receiver_db=str(sim.receiver_db), config=str(workdir / "line.yaml"),
                        live_config=str(sim.live_path), keys=str(workdir / "keys"),
                        packages=str(workdir / "packages"), labels=str(labels_dir))
    console.rule("where the data went")
    for k, v in report.facts.items():
        console.print(f"{k:>12}: {v}")
    return report


async def _run(runtime: LineRuntime, ledger_path: Path, items: int, console: Console) -> bool:
    """Run the line with the progress display; True when a signal stopped it before the job was done."""
    stop = asyncio.Event()
    signals: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not signals:
            console.print("[yellow]Ctrl-C: stopping the line (conveyor first, then the coders)...[/]")
        else:
            console.print("[yellow]already stopping: the coders are being reconciled, please wait[/]")
        signals.append(signum)
        stop.set()

    handled: list[int] = []
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
            handled.append(sig)
    try:
        with _progress(console) as progress:
            bars = _Bars(progress, items)
            shown = asyncio.create_task(_show(bars, ledger_path), name="demo-progress")
            try:
                await runtime.run(stop)
            finally:
                shown.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shown
            with contextlib.suppress(Exception):
                bars.update(await asyncio.to_thread(collect, ledger_path))  # the last figures
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    return bool(signals) and not (runtime.runs and runtime.runs[-1].completed)


def _progress(console: Console) -> Progress:
    # fixed-width figures first, the free text last and cut, so the rows fit an 80-column terminal
    return Progress(TextColumn("{task.description:<7}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                    TextColumn("{task.fields[extra]}", table_column=Column(no_wrap=True, overflow="ellipsis",
                                                                            ratio=1)),
                    console=console, refresh_per_second=4, expand=True)


class _Bars:
    """The demo's progress rows: items printed, judged (with the rejects), packed, events acked."""

    def __init__(self, progress: Progress, items: int) -> None:
        self.progress = progress
        self.rows: dict[str, TaskID] = {
            k: progress.add_task(k, total=items if k != "synced" else None, extra="")
            for k in ("printed", "judged", "packed", "synced")}

    def update(self, snap: dict[str, object]) -> None:
        job = snap.get("job")
        sync = snap.get("sync")
        packs = snap.get("packs")
        if isinstance(job, dict):
            self.progress.update(self.rows["printed"], completed=job["printed"],
                                 extra=f"in FIFOs {job['codes'].get('sent', 0)}")
            rejects = job["rejects"]
            why = ", ".join(f"{k} {v}" for k, v in rejects.items())
            self.progress.update(self.rows["judged"], completed=job["judged"],
                                 extra=f"good {job['good']}, rejects {sum(rejects.values())}"
                                 + (f": {why}" if why else ""))
        if isinstance(job, dict) and isinstance(packs, dict):
            self.progress.update(self.rows["packed"], completed=job["packed"],
                                 extra=", ".join(f"{lv} {p['closed']}" for lv, p in packs.items()) + " packs closed")
        if isinstance(sync, dict):
            self.progress.update(self.rows["synced"], completed=sync["delivered"],
                                 total=sync["delivered"] + sync["undelivered"],
                                 extra=f"events acked, {sync['undelivered']} on the way")


async def _show(bars: _Bars, ledger_path: Path) -> None:
    while True:
        with contextlib.suppress(Exception):  # the display must never disturb the line
            bars.update(await asyncio.to_thread(collect, ledger_path))
        await asyncio.sleep(0.5)


def _drain(cfg: LineConfig, ledger_path: Path, timeout_s: float) -> bool:
    """Run the uplink alone until the receiver has acked every event (the job's own last events)."""
    if cfg.mqtt is None:
        return True
    m = cfg.mqtt
    uplink = Uplink(Outbox(ledger_path), m, Topics(m.topic_prefix, cfg.site.id, cfg.line.id),
                    client_id=f"{m.client_id or 'lineagent'}-drain")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if uplink.step() and uplink.drained():
                return True
            time.sleep(0.01)  # a plain thread: no event loop here
        return False
    finally:
        uplink.link.close()


def _label_readers(sim: SimulatedLine, cfg: LineConfig, out: Path) -> dict[str, ReadLabel]:
    """Read each label the ZPL simulator printed back with the real decoder, and keep its image."""
    readers: dict[str, ReadLabel] = {}
    for name, st in cfg.stations.items():
        if not st.label_printer or st.label_printer not in sim.labels:
            continue
        zpl = sim.labels[st.label_printer]

        seen = [len(zpl.labels)]

        async def read(zpl: ZplSimulator = zpl, seen: list[int] = seen) -> str | None:
            for _ in range(300):  # the label being rendered by the printer: wait for a new one
                if len(zpl.labels) > seen[0]:
                    break
                await asyncio.sleep(0.01)
            if len(zpl.labels) <= seen[0]:
                return None
            seen[0] = len(zpl.labels)
            image = zpl.labels[-1]
            cv2.imwrite(str(out / f"label-{len(zpl.labels):04d}.png"), image)
            found = [b.text for b in zxingcpp.read_barcodes(image)]
            return found[0] if found else None

        readers[name] = read
    return readers


def _summary(console: Console, runtime: LineRuntime, progress: object, report: DemoReport, sim: SimulatedLine) -> None:
    t = Table(title="the line")
    t.add_column("what")
    t.add_column("count", justify="right")
    if progress is not None:
        for state, n in sorted(progress.codes.items()):  # type: ignore[attr-defined]
            t.add_row(f"item codes {state}", str(n))
        for verdict, n in sorted(progress.rejects.items()):  # type: ignore[attr-defined]
            t.add_row(f"  rejected: {verdict}", str(n))
        for level, n in sorted(progress.packs.items()):  # type: ignore[attr-defined]
            t.add_row(f"{level} packs", str(n))
    t.add_row("defects injected by the plant", str(len(sim.record.defect)))
    if sim.broker is not None:
        t.add_row("broker restarts mid-run", str(sim.broker.restarts))
    console.print(t)
    c = Table(title="invariants")
    c.add_column("check")
    c.add_column("result")
    c.add_column("detail")
    for chk in report.checks:
        c.add_row(chk.name, "[green]ok[/]" if chk.ok else "[bold red]FAILED[/]", chk.detail)
    console.print(c)
