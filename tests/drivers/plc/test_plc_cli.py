"""`lineagent plc probe` against the PLC simulator, through the real config loader and registry."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from drivers.sim.plc import PlcSim, example_map
from tests.conftest import free_port
from tests.helpers import make_line

DEVICES = """
devices:
  plcs:
    line_plc:
      type: modbus
      url: tcp://127.0.0.1:{port}
      timeout_s: 0.3
      registers:
        line_run: {{table: coil, address: 0}}
        light_green: {{table: coil, address: 1}}
        counter: {{table: input, address: 0}}
        reject_confirm: {{table: input, address: 1}}
        reject_fire: {{table: holding, address: 0}}
        heartbeat: {{table: holding, address: 1}}
        release_fire: {{table: holding, address: 2}}
"""


@pytest.fixture
def sim_port() -> Iterator[int]:
    """The PLC simulator on its own event loop in a thread, since the CLI runs asyncio.run itself."""
    port = free_port()
    loop = asyncio.new_event_loop()
    sim = PlcSim(example_map(), port=port)
    sim.model.counter, sim.model.confirms = 1234, 7
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(sim.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield port
    asyncio.run_coroutine_threadsafe(sim.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_probe_shows_every_mapped_signal(tmp_path: Path, sim_port: int) -> None:
    cfg = make_line(tmp_path)
    cfg.write_text(cfg.read_text() + DEVICES.format(port=sim_port))
    result = CliRunner().invoke(app, ["plc", "probe", "line_plc", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in result.output.splitlines() if line.count("│") >= 6}
    assert rows["counter"] == ["input", "0", "1", "1234"]
    assert rows["reject_confirm"] == ["input", "1", "1", "7"]
    assert rows["line_run"] == ["coil", "0", "1", "0"]


def test_probe_exits_3_when_the_plc_does_not_answer(tmp_path: Path) -> None:
    cfg = make_line(tmp_path)
    cfg.write_text(cfg.read_text() + DEVICES.format(port=free_port()))
    result = CliRunner().invoke(app, ["plc", "probe", "line_plc", "-c", str(cfg)])
    assert result.exit_code == 3
    assert "cannot connect" in result.output or "refused" in result.output


def test_probe_of_an_unknown_plc_is_not_found(tmp_path: Path) -> None:
    cfg = make_line(tmp_path)
    cfg.write_text(cfg.read_text() + DEVICES.format(port=1))
    result = CliRunner().invoke(app, ["plc", "probe", "nope", "-c", str(cfg)])
    assert result.exit_code == 4
    assert "line_plc" in result.output
