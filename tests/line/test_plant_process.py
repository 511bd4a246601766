"""`lineagent sim line`: the plant in its own process, reached as the agent reaches a line (Modbus/TCP to
the PLC, the camera's TCP image export), checked against the record the plant writes of itself.

The agent is not in this test: the test plays the agent's part on the wire, so what the plant does is
seen alone. The fault harness (tests/faults) runs the real agent against it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import yaml
from rich.console import Console

from agent.demo import prepare
from agent.line.truth import read_truth
from agent.verify.decode import Decoder, DecoderSettings
from agent.verify.regions import Region
from drivers.cameras.banner_export import BannerExportSettings, BannerImageExport
from drivers.plc import LinePlc
from drivers.plc.plc import PlcSettings, Signal
from drivers.sim.camera import SimCameraSettings
from tests.faults.processes import PlantProcess, cli

SIM = SimCameraSettings()


def test_the_plant_runs_the_belt_for_the_plc_images_items_gates_by_release_and_stops_on_the_watchdog(
        tmp_path: Path) -> None:
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(tmp_path, 50, Console(file=sink))
    assert cfg.source is not None
    plant = PlantProcess(cfg.source, tmp_path / "plant", rate=1200, seed=3, watchdog_s=1.0, defects=0.0)
    try:
        info = plant.wait_ready()
        assert Path(info["live_config"]).read_text().count("type: banner_export") == 1
        plc_url, cam_url = info["devices"]["plcs"]["plc1"], info["devices"]["cameras"]["cam1"]
        assert info["devices"]["coders"]["coder1"].startswith("/dev/pts/")

        async def drive() -> tuple[list[int | None], list[str | None], list[int]]:
            plc = LinePlc(PlcSettings.model_validate({**cfg.devices.plcs["plc1"].model_dump(exclude={"type"}),
                                                      "url": plc_url}))
            cam = BannerImageExport(BannerExportSettings(url=cam_url, frame_timeout_s=10), name="cam1")
            decoder = Decoder(DecoderSettings(region=Region.of(SIM.region), deadline_ms=None))
            await plc.open()
            await cam.open()
            try:
                await plc.heartbeat()
                await plc.run_line(True)
                head = await plc.counter()
                released = [head + 2, head + 3]  # positive release: only these may leave the line
                for seq in released:
                    await plc.release(seq)
                frames = [await cam.grab() for _ in range(12)]  # the belt runs: items reach the camera
                while await plc.counter() < released[-1] + 14:  # past the gate (gate_at 11)
                    await plc.heartbeat()
                    await asyncio.sleep(0.1)
                # the agent "hangs": no more heartbeats; the PLC's watchdog must stop the belt
                for _ in range(600):  # a hang detector (up to 30 s)
                    if not await plc.read(Signal.LINE_RUN):
                        break
                    await asyncio.sleep(0.05)
                return [f.index for f in frames], [decoder.decode(f.image).text for f in frames], released
            finally:
                await cam.close()
                await plc.close()

        indices, texts, released = asyncio.run(drive())
    finally:
        out = plant.stop()
    assert plant.proc.returncode == 0, out
    assert "plant stopped:" in out
    truth = read_truth(tmp_path / "plant" / "plant.jsonl")
    kinds = [r["k"] for r in truth]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    items = {r["seq"]: r for r in truth if r["k"] == "item"}
    frames = [r["seq"] for r in truth if r["k"] == "frame" and r["clients"] == 1]
    # every image the camera sent carries the frame number of the item the plant imaged, in order
    assert indices == frames[:12] and indices == sorted(indices)
    # nobody fed the coder: every item passed the head blank, and the images show no code
    assert all(items[s]["text"] is None for s in indices) and texts == [None] * 12
    # the gate (positive release, config/line.sim.yaml): the released items passed, every other was removed
    gates = [(r["seq"], r["out"]) for r in truth if r["k"] == "gate"]
    assert len(gates) > released[-1]
    assert gates == [(s, "passed" if s in released else "rejected") for s in range(1, len(gates) + 1)]
    belts = [r for r in truth if r["k"] == "belt"]
    assert belts[-1]["running"] is False and belts[-1]["watchdog_trips"] == 1


def test_sim_line_refuses_what_it_cannot_simulate_with_a_clear_message(tmp_path: Path) -> None:
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(tmp_path, 10, Console(file=sink))
    assert cfg.source is not None
    code, out = cli("sim", "line", "--config", str(cfg.source), "--dir", str(tmp_path / "p"), "--coder-link", "usb")
    assert code == 2 and "--coder-link is pty or tcp, not 'usb'" in out, out
    raw = yaml.safe_load(cfg.source.read_text())
    raw["devices"]["cameras"]["cam1"] = {"type": "folder", "path": str(tmp_path)}
    other = tmp_path / "folder-camera.yaml"
    other.write_text(yaml.safe_dump(raw))
    code, out = cli("sim", "line", "--config", str(other), "--dir", str(tmp_path / "p"))
    assert code == 1 and "devices.cameras.cam1: only 'sim' cameras can be simulated" in out, out
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    code, out = cli("sim", "line", "--config", str(cfg.source), "--dir", str(blocked / "plant"))
    assert code == 1 and "the plant cannot write its files" in out and str(blocked) in out, out
    assert "Traceback" not in out
