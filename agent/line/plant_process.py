"""The plant in its own process (`lineagent sim line`): it outlives the agent, as a real line does.

Why a process: a coder keeps its FIFO and counters, the PLC keeps the conveyor running until its
heartbeat watchdog stops it, and the camera keeps counting its triggers while the agent is killed and
restarted; only a plant in another process can show what a crash of the agent does to the line. The
agent reaches every device across the process boundary: coders on ptys (or TCP), the PLC over Modbus/TCP,
the ZPL label printer on TCP, the camera through its TCP image export with frame numbers
(drivers/cameras/banner_export.py). With `broker`, mosquitto and the reference receiver run here too.

Files in `workdir`: `plant.jsonl`, the plant's truth (agent/line/truth.py); `plant.json`, written once
everything listens (pid, the live config, the device URLs), the same object printed as one line on
stdout for whoever started the process. The live config is written beside the given one (as
`<name>.live.yaml`), so its relative paths (ledger, keys) still hold. SIGTERM or SIGINT stops the plant
cleanly; the truth log is complete then, and fsynced per batch before that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from agent.config import load_config
from agent.line.plant import Plant, SimSettings
from agent.line.simulated import start_cloud
from agent.line.truth import TruthLog


def run(config: Path, workdir: Path, settings: SimSettings, *, broker: bool = False,
        ready: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the plant until SIGTERM/SIGINT; returns its summary. `ready(info)` is called once it listens."""
    # pymodbus logs (with frame dumps) every half-request of an agent killed mid-frame: that is the
    # plant's normal life here, not news
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    cfg = load_config(config)
    workdir.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(config.read_text())
    plant = Plant(cfg, settings, export_images=True, truth=TruthLog(workdir / "plant.jsonl"))
    asyncio.run(_serve(plant, config, raw, workdir, broker, ready))
    return {"items": len(plant.record.printed), "frames": plant.record.frames,
            "printed": {n: len(c.printed) for n, c in plant.coders.items()},
            "rejected": sum(1 for o in plant.record.gate.values() if o == "rejected"),
            "passed": sum(1 for o in plant.record.gate.values() if o == "passed"),
            "watchdog_trips": {n: p.model.watchdog_trips for n, p in plant.plcs.items()},
            "truth_records": plant.truth.records if plant.truth else 0}


async def _serve(plant: Plant, config: Path, raw: dict[str, Any], workdir: Path, broker: bool,
                 ready: Callable[[dict[str, Any]], None] | None) -> None:
    cloud = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await plant.start(raw.setdefault("devices", {}))
        if broker and raw.get("mqtt") is not None:
            cloud = await asyncio.to_thread(start_cloud, workdir, "plant-receiver")
            raw["mqtt"]["broker"] = cloud[0].url
        live = config.with_name(config.stem + ".live.yaml")
        info = {"pid": os.getpid(), "live_config": str(live), "truth": str(workdir / "plant.jsonl"),
                "devices": {group: {n: e.get("url") for n, e in (entries or {}).items()}
                            for group, entries in raw["devices"].items()},
                "broker": cloud[0].url if cloud else None,
                "receiver_db": str(workdir / "receiver.db") if cloud else None}
        await asyncio.to_thread(_write, live, raw, workdir, info)
        plant.start_clock()
        if ready is not None:
            ready(info)
        await stop.wait()
    finally:
        await plant.close()
        if cloud is not None:
            cloud[1].stop()
            cloud[1].store.close()
            cloud[0].kill()


def _write(live: Path, raw: dict[str, Any], workdir: Path, info: dict[str, Any]) -> None:
    live.write_text("# written by `lineagent sim line`: device URLs point at the plant's simulators\n"
                    + yaml.safe_dump(raw, sort_keys=False))
    tmp = workdir / "plant.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(workdir / "plant.json")


def announce(info: dict[str, Any]) -> None:
    """One JSON line on stdout: whoever started the plant reads it instead of polling for files."""
    sys.stdout.write(json.dumps({"ready": info}) + "\n")
    sys.stdout.flush()
