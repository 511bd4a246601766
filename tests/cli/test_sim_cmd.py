"""`lineagent sim printer`: a real process serving a pty, driven by the real driver, stopped by Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from drivers.printers.base import DeviceTimeout, Record
from drivers.printers.generic import GenericPrinter, GenericSettings
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.printers.serializing import SerializingPrinter

LAUNCH = "from agent.cli.main import main; main()"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "leibinger"], "exactly one of --pty or --tcp"),
        (["--protocol", "leibinger", "--pty", "--tcp", "0"], "exactly one of --pty or --tcp"),
        (["--protocol", "nosuch", "--pty"], "no simulator for protocol 'nosuch'"),
        (["--protocol", "leibinger", "--pty", "--faults", "nak:2"], "probability must be between 0 and 1"),
        (["--protocol", "leibinger", "--pty", "--faults", "smoke@3"], "unknown fault 'smoke'"),
        (["--protocol", "generic", "--pty"], "--protocol-file goes with --protocol generic"),
    ],
)
def test_usage_errors_say_what_is_wrong(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["sim", "printer", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_broken_protocol_file_is_refused_with_its_line(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.yaml"
    bad.write_text("name: x\nframing: {start: '{', end: '}', colour: red}\nfifo: {capacity: 4}\n")
    result = CliRunner().invoke(app, ["sim", "printer", "--protocol", "generic", "--protocol-file", str(bad), "--pty"])
    assert result.exit_code == 1
    assert "bad.yaml:2: framing.colour: unknown key" in " ".join(result.output.split())


async def _drive(driver: SerializingPrinter) -> int | None:
    await driver.connect()
    try:
        await driver.push([Record(seq, f"CLI{seq}") for seq in (1, 2, 3)])
        await driver.start()
        for _ in range(500):  # the simulated conveyor prints 100 products a second
            try:
                status = await driver.status()
            except DeviceTimeout:
                continue
            if status.last_printed == 3:
                return status.last_printed
            await asyncio.sleep(0.01)
        return None
    finally:
        await driver.close()


@pytest.mark.parametrize("protocol", ["leibinger", "generic"])
def test_serves_a_pty_the_driver_prints_through_then_stops_on_ctrl_c(protocol: str) -> None:
    extra = ["--protocol-file", "example_stx"] if protocol == "generic" else []
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "sim", "printer", "--protocol", protocol, "--pty", "--rate", "6000", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[0] == "pty" and first[1].startswith("/dev/pts/")
        driver: SerializingPrinter
        if protocol == "generic":
            driver = GenericPrinter(GenericSettings(url=first[1], protocol_file="example_stx", timeout_s=0.5))
        else:
            driver = Leibinger(LeibingerSettings(url=first[1], timeout_s=0.5))
        assert asyncio.run(asyncio.wait_for(_drive(driver), 20)) == 3
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "printed 3 records, counter 3" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
