"""The simulated line: a simulator for every device of a line config, driven by one conveyor clock.

Why one clock: on a real line a single photo-eye pulse moves everything at once: the coder prints on the
item under its head, the PLC counter advances, the camera fires for the item at its position. The
clock here does exactly that, in that order, so the camera shows the text the coder simulator really
printed on that item (with seeded defects, some missing or wrong prints), and every agent-side
mismatch is a real one.

Everything runs in one background thread with its own event loop ("the plant"), so the agent's loop
and CPU time stay its own (bench.line measures the agent alone). Devices are reached as on a real line:
coders on ptys at the configured baud, the PLC as a real pymodbus server on a free TCP port, the ZPL
label printer on TCP, mosquitto on a free port with the reference receiver. `start()` writes a copy of
the config with every device URL pointing at its simulator (beside the original, so relative paths
still hold) and returns it loaded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agent.config import LineConfig, load_config
from agent.config.stations import StationKind
from agent.config.verify import VerifySettings
from agent.line.broker import Broker, free_port
from agent.line.simcamera import PositionCamera
from agent.receiver.service import Receiver
from agent.receiver.store import SqliteStore
from drivers.sim import load_simulator
from drivers.sim.camera import Defect, Defects, SimCameraSettings, render
from drivers.sim.plc import PlcSim
from drivers.sim.zpl import ZplSimulator

T = TypeVar("T")


class SimulationError(RuntimeError):
    """The config asks for a device the simulated line cannot stand in for (the message says which)."""


@dataclass(frozen=True)
class SimSettings:
    rate_per_min: float = 1200.0
    seed: int = 7
    defect_share: float = 0.06  # items printed with a defect that must be rejected
    mild_share: float = 0.2  # items with mild defects that must still read (grade C or better)
    receiver: bool = True  # start mosquitto + the reference receiver when the config has mqtt
    # The PLC stops the conveyor when the agent's heartbeat has not changed for this long (the agent
    # writes it every 0.25 s); generous, so a loaded test machine does not trip it. None: off.
    plc_watchdog_s: float | None = 3.0
    # False: no products arrive (the belt may run empty): the agent connected and polling with nothing to
    # do, the like-for-like baseline of the line benchmark.
    infeed: bool = True


# The rejecting defects and their share among the defective items (the verdict each must give).
HEAVY: tuple[tuple[str, Defects], ...] = (
    ("no_read", Defects(blur=3.0)),
    ("low_grade", Defects(contrast=0.3)),
    ("missing_print", Defects(missing=True)),
    ("mismatch", Defects(wrong_text="")),  # "" = a plausible wrong code, drivers.sim.camera.wrong_text_for
)
# Defects a good print line shows every day, each up to a severity (drivers.sim.camera.Defects.of) that
# grades C or better: kind -> the highest severity injected (tests/line/test_mild_defects.py sweeps them
# through the real decoder and grader). A partial print is not mild at any severity: its smallest band
# (2% of the symbol high, most of a module row through 40% of the width) uses up 2/3 of a QR-M
# symbol's error correction, unused error correction D/F, as a certified verifier would grade it too.
MILD: dict[Defect, float] = {
    Defect.BLUR: 0.2, Defect.MOTION_BLUR: 0.2, Defect.NOISE: 0.2, Defect.ROTATION: 0.2, Defect.PERSPECTIVE: 0.2,
    Defect.LOW_CONTRAST: 0.2, Defect.DOT_MATRIX: 0.2, Defect.SMEAR: 0.2,
}


@dataclass
class PlantRecord:
    """The plant's own truth, for comparing with the agent's ledger."""

    printed: dict[int, str | None] = field(default_factory=dict)  # conveyor seq -> text on it (None: none)
    defect: dict[int, str] = field(default_factory=dict)  # seq -> the heavy defect injected
    frames: int = 0


class SimulatedLine:
    def __init__(self, cfg: LineConfig, workdir: Path, settings: SimSettings | None = None) -> None:
        if cfg.source is None:
            raise SimulationError("the simulated line needs a config loaded from a file")
        self.cfg = cfg
        self.workdir = workdir
        self.settings = settings or SimSettings()
        self.record = PlantRecord()
        self.coders: dict[str, Any] = {}  # name -> SimCoder
        self.plcs: dict[str, PlcSim] = {}
        self.labels: dict[str, ZplSimulator] = {}
        self.cameras: dict[str, PositionCamera] = {}
        self.broker: Broker | None = None
        self.receiver: Receiver | None = None
        self.receiver_db = workdir / "receiver.db"
        self.live_path = cfg.source.with_name(cfg.source.stem + ".live.yaml")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="plant", daemon=True)
        self._clock: asyncio.Task[None] | None = None
        self._rng = random.Random(self.settings.seed)
        self._line_coder: str | None = None
        self._line_plc: str | None = None
        self._line_camera: str | None = None
        self._verify = VerifySettings()

    # ---- lifecycle (called from the agent's side; everything runs in the plant thread) ----------

    def start(self) -> LineConfig:
        self._pick_line()
        self._thread.start()
        raw = yaml.safe_load(self.cfg.source.read_text()) if self.cfg.source else {}
        devices = raw.setdefault("devices", {})
        self.call(self._start_devices(devices))
        if self.cfg.mqtt is not None and self.settings.receiver:
            self.broker = Broker(self.workdir / "broker")
            self.broker.start()
            raw["mqtt"]["broker"] = self.broker.url
            self.receiver = Receiver(self.broker.url, SqliteStore(self.receiver_db),
                                     client_id=f"receiver-{self.broker.port}")
            self.receiver.start()
            if not self.receiver.ready.wait(10):
                raise SimulationError(f"the reference receiver did not subscribe on {self.broker.url}")
        self.live_path.write_text("# written by the simulated line: device URLs point at simulators\n"
                                  + yaml.safe_dump(raw, sort_keys=False))
        self.call(self._start_clock())
        return load_config(self.live_path)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.call(self._stop_devices())
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
        return {("cameras", name): cam for name, cam in self.cameras.items()}

    def kill_coder(self, name: str) -> None:
        """Cut a coder's power: its link goes silent and its FIFO is lost (the counter is kept)."""
        self.call(self.coders[name].power_off())

    def restart_broker(self) -> None:
        if self.broker is None:
            raise SimulationError("no broker is running (the config has no mqtt section)")
        self.broker.restart()

    # ---- the plant ------------------------------------------------------------------------------

    def _pick_line(self) -> None:
        """Which coder, PLC and camera the conveyor clock drives: the first print and verify stations."""
        for st in self.cfg.stations.values():
            if st.type is StationKind.PRINT and self._line_coder is None:
                self._line_coder = st.coder
            if st.type is StationKind.VERIFY and self._line_plc is None:
                if st.reader:
                    raise SimulationError("the simulated line renders camera images; a verify station with "
                                          "a reader is not simulated (use a camera)")
                self._line_plc, self._line_camera, self._verify = st.plc, st.camera, st.verify

    async def _start_devices(self, devices: dict[str, Any]) -> None:
        for name, entry in (devices.get("coders") or {}).items():
            try:
                sim_cls = load_simulator(entry["type"])
            except LookupError as exc:
                raise SimulationError(f"devices.coders.{name}: {exc}") from exc
            baud = int(entry.get("baud", 115200))
            sim = sim_cls(baud=baud)
            entry["url"] = await sim.serve_pty()
            self.coders[name] = sim
        for name, entry in (devices.get("plcs") or {}).items():
            settings = self.cfg.device_settings("plcs", name)
            plc = PlcSim(settings.registers, port=free_port(), camera_at=self._verify.camera_at,
                         gate_at=self._verify.gate_at, device_ids=(settings.device_id,),
                         watchdog_s=self.settings.plc_watchdog_s, gate=settings.gate)
            await plc.start()
            entry["url"] = plc.url
            self.plcs[name] = plc
        for name, entry in (devices.get("label_printers") or {}).items():
            zpl = ZplSimulator()
            entry["url"] = f"tcp://127.0.0.1:{await zpl.serve_tcp()}"
            self.labels[name] = zpl
        for name, entry in (devices.get("cameras") or {}).items():
            if entry["type"] != "sim":
                raise SimulationError(f"devices.cameras.{name}: only 'sim' cameras can be simulated")
            opts = {k: v for k, v in entry.items() if k != "type"}
            self.cameras[name] = PositionCamera(SimCameraSettings.model_validate(opts), name=name)
        if devices.get("readers"):
            raise SimulationError("devices.readers: readers are not simulated by the simulated line")

    async def _start_clock(self) -> None:
        if self._line_coder and self._line_plc:
            self._clock = asyncio.create_task(self._run_clock(), name="plant-clock")

    async def _stop_devices(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            await asyncio.gather(self._clock, return_exceptions=True)
        for sim in self.coders.values():
            await sim.close()
        for plc in self.plcs.values():
            await plc.close()
        for zpl in self.labels.values():
            await zpl.close()

    async def _run_clock(self) -> None:
        assert self._line_coder is not None and self._line_plc is not None
        loop = asyncio.get_running_loop()
        period = 60.0 / self.settings.rate_per_min
        due = loop.time()
        while True:
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))  # products arrive on a clock, without drift
            if self.settings.infeed:
                self.pulse()

    def pulse(self) -> None:
        """One item passes the head: print on it, move the conveyor, show the camera its item."""
        assert self._line_coder is not None and self._line_plc is not None
        model = self.plcs[self._line_plc].model
        if not model.running:
            return
        coder = self.coders[self._line_coder]
        before = len(coder.printed)
        coder.trigger()
        seq = model.counter + 1
        self.record.printed[seq] = coder.printed[-1] if len(coder.printed) > before else None
        model.step()
        at_camera = model.at_camera()
        if at_camera is not None and self._line_camera is not None:
            camera = self.cameras[self._line_camera]
            text = self.record.printed.get(at_camera)
            defects = self._defects(at_camera)
            camera.show(at_camera, render(text, defects, self.settings.seed * 1_000_003 + at_camera,
                                          camera.settings).image)
            self.record.frames += 1

    def _defects(self, seq: int) -> Defects:
        rng = self._rng
        roll = rng.random()
        if roll < self.settings.defect_share:
            kind, defects = HEAVY[seq % len(HEAVY)]
            self.record.defect[seq] = kind
            return defects
        if roll < self.settings.defect_share + self.settings.mild_share:
            kind_m = rng.choice(list(MILD))
            return Defects.of(kind_m, rng.uniform(0.0, MILD[kind_m]))
        return Defects()
