"""`lineagent printer ...` through typer's CliRunner against a real simulator on a real TCP port.

The simulator runs on its own event loop in a thread, because each CLI command runs its own
asyncio.run() like it does from a shell.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from drivers.printers.modbus_marker import ModbusMarkerSettings
from drivers.sim.modbus_marker import ModbusMarkerSim
from tests.conftest import free_port
from tests.helpers import make_line

runner = CliRunner()


class SimThread:
    """A Modbus marker simulator with a conveyor, served from a background thread's event loop."""

    def __init__(self, port: int, rate: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.sim = ModbusMarkerSim(ModbusMarkerSettings(port=port, slots=8, text_registers=10), rate_per_s=rate)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> SimThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def line_config(tmp: Path, port: int) -> Path:
    path = make_line(tmp)
    path.write_text(
        path.read_text()
        + f"devices:\n  coders:\n    m1: {{type: modbus_marker, port: {port}, slots: 8, text_registers: 10,"
        " timeout_s: 0.5}\n"
    )
    return path


@pytest.fixture
def sim_line(tmp_path: Path) -> Iterator[tuple[Path, SimThread]]:
    port = free_port()
    with SimThread(port, rate=200) as sim:
        yield line_config(tmp_path, port), sim


def test_probe_shows_identity_capabilities_and_fifo(sim_line: tuple[Path, SimThread]) -> None:
    cfg, _ = sim_line
    result = runner.invoke(app, ["printer", "probe", "m1", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "LINEAGENT-SIM" in result.output  # the model name, as long as its registers hold
    assert "fifo capacity" in result.output
    assert "0 of 8" in result.output


def test_send_queues_one_text_and_the_sim_prints_it(sim_line: tuple[Path, SimThread]) -> None:
    cfg, sim = sim_line
    result = runner.invoke(app, ["printer", "send", "m1", "HELLO-1", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "FIFO depth now 1" in result.output
    sim.sim.model.running = True
    sim.sim.model.fire()
    assert sim.sim.printed == ["HELLO-1"]
    status = runner.invoke(app, ["printer", "status", "m1", "--config", str(cfg)])
    assert status.exit_code == 0, status.output
    assert "print count" in status.output


def test_test_print_confirms_every_code_in_a_table(sim_line: tuple[Path, SimThread]) -> None:
    cfg, sim = sim_line
    result = runner.invoke(app, ["printer", "test", "m1", "--count", "20", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "20 of 20 confirmed" in result.output
    assert len(sim.sim.printed) == 20
    assert len(set(sim.sim.printed)) == 20
    assert all(t.startswith("TEST-") for t in sim.sim.printed)


def test_a_coder_that_never_prints_fails_the_test_with_exit_3(tmp_path: Path) -> None:
    port = free_port()
    with SimThread(port, rate=0) as sim:
        cfg = line_config(tmp_path, port)
        result = runner.invoke(app, ["printer", "test", "m1", "-n", "3", "--timeout", "1", "--config", str(cfg)])
        assert sim.sim.printed == []
    assert result.exit_code == 3, result.output
    assert "0 of 3 confirmed" in result.output


def test_an_absent_coder_is_a_device_error(tmp_path: Path) -> None:
    cfg = line_config(tmp_path, free_port())  # nothing listens there
    result = runner.invoke(app, ["printer", "status", "m1", "--timeout", "3", "--config", str(cfg)])
    assert result.exit_code == 3, result.output
    assert "m1" in result.output


def test_a_coder_that_answers_garbage_is_a_device_error(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer_garbage() -> None:
            conn, _ = server.accept()
            with conn:
                while conn.recv(256):
                    conn.sendall(b"\xde\xad\xbe\xef garbage \x00\x01\x02\x03\x04\x05")

        threading.Thread(target=answer_garbage, daemon=True).start()
        cfg = line_config(tmp_path, port)
        result = runner.invoke(app, ["printer", "probe", "m1", "--timeout", "3", "--config", str(cfg)])
    assert result.exit_code == 3, result.output
    assert "coder 'm1'" in result.output


def test_an_unknown_coder_name_is_not_found(sim_line: tuple[Path, SimThread]) -> None:
    cfg, _ = sim_line
    result = runner.invoke(app, ["printer", "probe", "nope", "--config", str(cfg)])
    assert result.exit_code == 4
    assert "no coder 'nope'" in result.output
    assert "m1" in result.output
