"""The simulated line in a thread of the agent's process: the plant (agent/line/plant.py), mosquitto and
the reference receiver, for `lineagent demo`, `lineagent run --simulate`, the benchmark and the tests
that drive the runtime in-process.

Why a thread with its own event loop: the agent's loop and CPU time stay its own (bench.line measures the
agent alone), and the camera hands its frames over in memory, so rendering is never charged to the agent.
Why not always a process: a demo must start with one command and stop on one Ctrl-C. The fault harness,
which kills the agent, needs the plant to outlive it: agent/line/plant_process.py (`lineagent sim line`).
`start()` writes a copy of the config with every device URL pointing at its simulator (beside the
original, so relative paths still hold) and returns it loaded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agent.config import LineConfig, load_config
from agent.line.broker import Broker
from agent.line.plant import HEAVY, MILD, Plant, PlantRecord, SimSettings, SimulationError
from agent.line.simcamera import PositionCamera
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from drivers.sim.plc import PlcSim
from drivers.sim.zpl import ZplSimulator

T = TypeVar("T")

__all__ = ["HEAVY", "MILD", "PlantRecord", "SimSettings", "SimulatedLine", "SimulationError", "start_cloud"]


def start_cloud(workdir: Path, client_id: str = "receiver") -> tuple[Broker, Receiver]:
    """mosquitto on a free port and the reference receiver storing into workdir/receiver.db."""
    broker = Broker(workdir / "broker")
    broker.start()
    receiver = Receiver(broker.url, SqliteStore(workdir / "receiver.db"), client_id=f"{client_id}-{broker.port}")
    receiver.start()
    if not receiver.ready.wait(10):
        receiver.stop()
        broker.kill()
        raise SimulationError(f"the reference receiver did not subscribe on {broker.url}")
    return broker, receiver


class SimulatedLine:
    def __init__(self, cfg: LineConfig, workdir: Path, settings: SimSettings | None = None) -> None:
        if cfg.source is None:
            raise SimulationError("the simulated line needs a config loaded from a file")
        self.cfg = cfg
        self.workdir = workdir
        self.settings = settings or SimSettings()
        self.plant = Plant(cfg, self.settings)
        self.broker: Broker | None = None
        self.receiver: Receiver | None = None
        self.receiver_db = workdir / "receiver.db"
        self.live_path = cfg.source.with_name(cfg.source.stem + ".live.yaml")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="plant", daemon=True)

    # the plant's parts, as the demo, the benchmark and the tests use them
    @property
    def record(self) -> PlantRecord:
        return self.plant.record

    @property
    def coders(self) -> dict[str, Any]:
        return self.plant.coders

    @property
    def plcs(self) -> dict[str, PlcSim]:
        return self.plant.plcs

    @property
    def labels(self) -> dict[str, ZplSimulator]:
        return self.plant.labels

    @property
    def cameras(self) -> dict[str, PositionCamera]:
        return self.plant.cameras

    # ---- lifecycle (called from the agent's side; everything runs in the plant thread) ----------

    def start(self) -> LineConfig:
        self._thread.start()
        raw = yaml.safe_load(self.cfg.source.read_text()) if self.cfg.source else {}
        self.call(self.plant.start(raw.setdefault("devices", {})))
        if self.cfg.mqtt is not None and self.settings.receiver:
            self.broker, self.receiver = start_cloud(self.workdir)
            raw["mqtt"]["broker"] = self.broker.url
        self.live_path.write_text("# written by the simulated line: device URLs point at simulators\n"
                                  + yaml.safe_dump(raw, sort_keys=False))
        self.call(self._start_clock())
        return load_config(self.live_path)

    async def _start_clock(self) -> None:
        self.plant.start_clock()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.call(self.plant.close())
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver.store.close()
        if self.broker is not None:
            self.broker.kill()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        """Run `coro` in the plant thread and wait for it."""
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def overrides(self) -> dict[tuple[str, str], Any]:
        """Device objects the runtime must use instead of building them (the plant-fed cameras)."""
        return self.plant.overrides()

    def pulse(self) -> None:
        self.plant.pulse()

    def kill_coder(self, name: str) -> None:
        """Cut a coder's power: its link goes silent and its FIFO is lost (the counter is kept)."""
        self.call(self.coders[name].power_off())

    def restart_broker(self) -> None:
        if self.broker is None:
            raise SimulationError("no broker is running (the config has no mqtt section)")
        self.broker.restart()
