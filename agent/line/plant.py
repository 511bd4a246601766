"""The plant: a simulator for every device of a line config, driven by one conveyor clock.

Why one clock: on a real line a single photo-eye pulse moves everything at once: the coder prints on the
item under its head, the PLC counter advances, the camera fires for the item at its position. The clock
here does exactly that, in that order, so the camera shows the text the coder simulator really printed on
that item (with seeded defects, some missing or wrong prints), and every agent-side mismatch is a real one.

Devices are reached as on a real line: coders on ptys at the configured baud (or TCP), the PLC as a real
pymodbus server, the ZPL label printer on TCP. The camera comes in two forms: handed over in memory
(agent/line/simcamera.py, when the plant runs in a thread of the agent's process, so the benchmark does
not charge rendering to the agent) or exported over TCP with its frame number (drivers/sim/banner_export.py,
when the plant is its own process and outlives the agent, agent/line/plant_process.py). `start()` rewrites
the device URLs of a raw config dict to point at the simulators.

The plant's truth (agent/line/truth.py): what each coder accepted, what was printed on each item, the
defect the plant gave it, which items the camera imaged, and what the gate did with each.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from agent.config import LineConfig
from agent.config.stations import StationKind
from agent.config.verify import VerifySettings
from agent.line.broker import free_port
from agent.line.simcamera import PositionCamera
from agent.line.truth import TruthLog
from drivers.sim import load_simulator
from drivers.sim.banner_export import ImageExportServer
from drivers.sim.camera import Defect, Defects, SimCameraSettings, render
from drivers.sim.plc import PlcSim
from drivers.sim.zpl import ZplSimulator


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
    coder_link: str = "pty"  # "pty" (a serial port) or "tcp" (a coder on Ethernet)


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
    gate: dict[int, str] = field(default_factory=dict)  # seq -> "rejected" | "passed"


class Plant:
    """Every simulator of a line config and the conveyor clock, on the caller's event loop."""

    def __init__(self, cfg: LineConfig, settings: SimSettings | None = None, *, export_images: bool = False,
                 truth: TruthLog | None = None) -> None:
        self.cfg = cfg
        self.settings = settings or SimSettings()
        self.export_images = export_images
        self.truth = truth
        self.record = PlantRecord()
        self.coders: dict[str, Any] = {}  # name -> a coder simulator
        self.plcs: dict[str, PlcSim] = {}
        self.labels: dict[str, ZplSimulator] = {}
        self.cameras: dict[str, PositionCamera] = {}  # in-memory handover (export_images=False)
        self.exports: dict[str, ImageExportServer] = {}  # TCP image export (export_images=True)
        self.camera_settings: dict[str, SimCameraSettings] = {}
        self._clock: asyncio.Task[None] | None = None
        self._rng = random.Random(self.settings.seed)
        self._pending: dict[int, Defects] = {}  # seq -> the print's defects, until the camera sees it
        self._logged_recv: dict[str, int] = {}
        self._belt: tuple[bool, int] | None = None
        self.line_coder: str | None = None
        self.line_plc: str | None = None
        self.line_camera: str | None = None
        self.verify = VerifySettings()
        self._pick_line()

    def _pick_line(self) -> None:
        """Which coder, PLC and camera the conveyor clock drives: the first print and verify stations."""
        for st in self.cfg.stations.values():
            if st.type is StationKind.PRINT and self.line_coder is None:
                self.line_coder = st.coder
            if st.type is StationKind.VERIFY and self.line_plc is None:
                if st.reader:
                    raise SimulationError("the simulated line renders camera images; a verify station with "
                                          "a reader is not simulated (use a camera)")
                self.line_plc, self.line_camera, self.verify = st.plc, st.camera, st.verify

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self, devices: dict[str, Any]) -> None:
        """Start a simulator for every device in `devices` (the raw config's section) and point each
        entry's URL at it."""
        for name, entry in (devices.get("coders") or {}).items():
            try:
                sim_cls = load_simulator(entry["type"])
            except LookupError as exc:
                raise SimulationError(f"devices.coders.{name}: {exc}") from exc
            sim = sim_cls(baud=int(entry.get("baud", 115200)))
            if self.settings.coder_link == "tcp":
                entry["url"] = f"tcp://127.0.0.1:{await sim.serve_tcp(0)}"
            else:
                entry["url"] = await sim.serve_pty()
            self.coders[name] = sim
        for name, entry in (devices.get("plcs") or {}).items():
            settings = self.cfg.device_settings("plcs", name)
            plc = PlcSim(settings.registers, port=free_port(), camera_at=self.verify.camera_at,
                         gate_at=self.verify.gate_at, device_ids=(settings.device_id,),
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
            self.camera_settings[name] = cam = SimCameraSettings.model_validate(opts)
            if self.export_images:
                server = ImageExportServer()
                await server.start()
                self.exports[name] = server
                devices["cameras"][name] = {"type": "banner_export", "url": server.url}
            else:
                self.cameras[name] = PositionCamera(cam, name=name)
        if devices.get("readers"):
            raise SimulationError("devices.readers: readers are not simulated by the simulated line")
        if self.truth is not None:
            self.truth.start()
            self.truth.write({
                "k": "start", "at": time.time(), "config": str(self.cfg.source), "seed": self.settings.seed,
                "rate_per_min": self.settings.rate_per_min, "camera_at": self.verify.camera_at,
                "gate_at": self.verify.gate_at, "watchdog_s": self.settings.plc_watchdog_s,
                "coders": {n: {"capacity": getattr(c, "capacity", None) or getattr(getattr(c, "model", None),
                                                                                     "capacity", None),
                               "url": devices["coders"][n]["url"]} for n, c in self.coders.items()}})

    def start_clock(self) -> None:
        if self.line_coder and self.line_plc:
            self._clock = asyncio.create_task(self._run_clock(), name="plant-clock")

    async def close(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            await asyncio.gather(self._clock, return_exceptions=True)
        for sim in self.coders.values():
            await sim.close()
        for plc in self.plcs.values():
            await plc.close()
        for zpl in self.labels.values():
            await zpl.close()
        for server in self.exports.values():
            await server.close()
        if self.truth is not None:
            self._log_received()
            self.truth.write({"k": "stop", "at": time.time()})
            await self.truth.close()

    def overrides(self) -> dict[tuple[str, str], Any]:
        """Device objects the runtime must use instead of building them (the in-memory cameras)."""
        return {("cameras", name): cam for name, cam in self.cameras.items()}

    # ---- the conveyor ---------------------------------------------------------------------------

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        period = 60.0 / self.settings.rate_per_min
        due = loop.time()
        while True:
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))  # products arrive on a clock, without drift
            if self.settings.infeed:
                self.pulse()
            self._log_received()
            self._log_belt()

    def pulse(self) -> None:
        """One item passes the head: print on it, move the conveyor, show the camera its item."""
        assert self.line_coder is not None and self.line_plc is not None
        model = self.plcs[self.line_plc].model
        # The watchdog first: a belt it stops now carries no new item (none may be printed and lost).
        if model.watchdog() or not model.running:
            return
        coder = self.coders[self.line_coder]
        before = len(coder.printed)
        coder.trigger()
        seq = model.counter + 1
        text = coder.printed[-1] if len(coder.printed) > before else None
        self.record.printed[seq] = text
        self._pending[seq] = self._defects(seq)
        self._log_received()
        if self.truth is not None:
            self.truth.write({"k": "item", "seq": seq, "coder": self.line_coder, "text": text,
                              "defect": self.record.defect.get(seq)})
        rejected, passed = len(model.rejected), len(model.passed)
        at_gate = model.step()
        if at_gate is not None:
            out = "rejected" if len(model.rejected) > rejected else "passed" if len(model.passed) > passed else "?"
            self.record.gate[at_gate] = out
            if self.truth is not None:
                self.truth.write({"k": "gate", "seq": at_gate, "out": out})
        at_camera = model.at_camera()
        if at_camera is not None and self.line_camera is not None:
            self._image(at_camera, self._pending.pop(at_camera, Defects()))

    def _image(self, seq: int, defects: Defects) -> None:
        assert self.line_camera is not None
        cam = self.camera_settings[self.line_camera]
        self.record.frames += 1
        export = self.exports.get(self.line_camera)
        if export is not None and not export.clients:
            clients = 0  # imaged, but nobody is connected to take the image: not rendered
        elif export is not None:
            image = render(self.record.printed.get(seq), defects, self.settings.seed * 1_000_003 + seq, cam).image
            clients = export.publish(seq, image)
        else:
            image = render(self.record.printed.get(seq), defects, self.settings.seed * 1_000_003 + seq, cam).image
            self.cameras[self.line_camera].show(seq, image)
            clients = 1
        if self.truth is not None:
            self.truth.write({"k": "frame", "seq": seq, "clients": clients})

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

    def _log_received(self) -> None:
        """New records each coder accepted since the last look (the coder's own record, in order)."""
        if self.truth is None:
            return
        for name, sim in self.coders.items():
            got: list[str] = getattr(sim, "received", [])
            new = got[self._logged_recv.get(name, 0):]
            if not new:
                continue
            now = time.time()
            held = _fifo_texts(sim)
            for text in new:
                self.truth.write({"k": "recv", "coder": name, "text": text, "at": now, "copies": held.count(text)})
            self._logged_recv[name] = len(got)

    def _log_belt(self) -> None:
        if self.truth is None or self.line_plc is None:
            return
        model = self.plcs[self.line_plc].model
        belt = (model.running, model.watchdog_trips)
        if belt != self._belt:
            self._belt = belt
            self.truth.write({"k": "belt", "running": belt[0], "watchdog_trips": belt[1], "at": time.time()})


def _fifo_texts(sim: Any) -> list[str]:
    """The texts a coder simulator holds in its FIFO now (SimCoder.fifo of records, CoderModel.queue)."""
    fifo = getattr(sim, "fifo", None)
    if fifo is not None:
        return [getattr(r, "text", r) for r in fifo]
    model = getattr(sim, "model", None)
    return list(getattr(model, "queue", None) or [])
