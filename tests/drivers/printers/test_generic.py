"""The generic driver's protocol files: validation with file/line/key, handshake details, events."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from drivers.framing import Frame
from drivers.printers.base import Nak, PrintEventKind, Record
from drivers.printers.generic import GenericPrinter, GenericSettings
from drivers.printers.generic_spec import PROTOCOL_DIR, load_protocol, request_regex
from drivers.sim.generic import GenericSim

ROOT = Path(__file__).resolve().parents[3]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (PROTOCOL_DIR / "example_stx.yaml").read_text()
    assert old in text
    path = tmp_path / "site.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("  mode: lockstep", "  mode: lockstep\n  speed: 3", "handshake.speed", "unknown key"),
        ('{send: "S",', '{send: "S{colour}",', "commands.status.send", "unknown template field"),
        ("expect: '^c(?P<count>\\d+)$'", "expect: '^c(?P<count>\\d+'", "commands.counters.expect", "bad regex"),
        ("kind: xor", "kind: crc99", "framing.checksum.kind", "Input should be"),
        ("  capacity: 64", "  capacity: 0", "coder.capacity", "greater than or equal to 1"),
    ],
)
def test_protocol_file_errors_name_file_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    path = broken(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_protocol(str(path))
    issue = info.value.issues[0]
    assert (issue.file, issue.key) == (str(path), key)
    assert message in issue.message
    assert issue.line == line_of(path, new.rsplit("\n", maxsplit=1)[-1].strip())


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('  tokens: ["\\x05", "\\x06", "\\x15", "\\x12"]', '  tokens: ["\\x06", "\\x15", "\\x12"]',
         "handshake.enq must also be listed in framing.tokens"),
        ('"B{index:03d}{text}"', '"B{text}"', "coder.kind is indexed_fifo but commands.push.send has no {index}"),
        ("match: '^p(?P<index>\\d{3})$'", "match: '^p\\d{3}$'", "needs a named group 'index'"),
        ('  end: "\\x03"', '  end: ""', "end delimiter or a length field"),
    ],
)
def test_protocol_files_that_cannot_work_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_protocol(str(broken(tmp_path, old, new)))


def test_line_config_validates_coder_sections_and_their_protocol_files(tmp_path: Path) -> None:
    example = (ROOT / "config" / "line.example.yaml").read_text()
    devices = (
        "devices:\n  coders:\n"
        "    cij1: {type: leibinger, url: 'tcp://10.0.0.21:3000', capacity: 256, trace: true}\n"
        "    cij2: {type: generic, url: /dev/ttyUSB0, baud: 38400, protocol_file: example_stx}\n"
    )
    shutil.copytree(ROOT / "config", tmp_path, dirs_exist_ok=True)  # keys etc. resolve beside the file
    good = tmp_path / "line.yaml"
    good.write_text(example.replace("devices: {}\n", devices))
    load_config(good)
    bad = tmp_path / "bad.yaml"
    bad.write_text(example.replace("devices: {}\n", devices.replace("example_stx", "nosuch").replace(
        "capacity: 256", "capacity: 300")))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    text = str(info.value)
    assert "devices.coders.cij1.capacity: Input should be less than or equal to 256" in text
    assert "devices.coders.cij2.protocol_file" in text and "nosuch.yaml" in text


def test_request_templates_become_exact_request_patterns() -> None:
    rx = request_regex("=MR{index}\t{text}")
    m = rx.fullmatch("=MR12\tAB^C")
    assert m is not None and m.group("index") == "12" and m.group("text") == "AB^C"
    assert rx.fullmatch("=MRx\tAB") is None


class AsksAgain(GenericSim):
    """Answers DC2 ("send again") to the next `times` framed requests."""

    times = 0

    def handle(self, frame: Frame) -> bytes | None:
        if not frame.token and self.times:
            self.times -= 1
            return b"\x12"
        return super().handle(frame)


def test_retransmit_request_resends_then_gives_up_with_nak() -> None:
    async def main() -> None:
        sim = AsksAgain(protocol="example_stx")
        url = f"tcp://127.0.0.1:{await sim.serve_tcp(0)}"
        driver = GenericPrinter(GenericSettings(url=url, protocol_file="example_stx", timeout_s=0.3, retries=2))
        await driver.connect()
        try:
            sim.times = 2
            await driver.start()  # two DC2s, then the third send is taken
            assert sim.running
            sim.times = 3
            with pytest.raises(Nak, match="retransmit 3 times"):
                await driver.stop()
        finally:
            await driver.close()
            await sim.close()

    run(main())


def test_print_complete_messages_become_printed_events_without_polling() -> None:
    async def main() -> None:
        sim = GenericSim(protocol="example_stx", capacity=8)
        driver = GenericPrinter(GenericSettings(url=await sim.serve_pty(), protocol_file="example_stx", capacity=8))
        await driver.connect()
        try:
            events = aiter(driver.events())
            await driver.push([Record(s, f"T{s}") for s in (41, 42, 43)])
            await driver.start()
            sim.trigger(3)
            seqs = []
            while len(seqs) < 3:
                event = await asyncio.wait_for(anext(events), 5)
                if event.kind is PrintEventKind.PRINTED:
                    seqs.append(event.seq)
            assert seqs == [41, 42, 43]
            assert driver.capabilities.print_complete_events
        finally:
            await driver.close()
            await sim.close()

    run(main())
