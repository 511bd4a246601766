"""Every code reader driver against a hostile reader: a result, a no-read or a ReaderError, never a hang.

The hostile device sits between the driver and the real reader simulator; results that do come out
must be codes a pack can carry (printable ASCII and the GS/RS/EOT separators), whatever the device sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.readers.base import CodeReader, ReaderError, ReaderLinkError, ReadResult
from drivers.readers.dataman import DataMan, DataManSettings
from drivers.readers.generic import GenericReader, GenericSettings
from drivers.readers.keyence import Framing, KeyenceSettings, KeyenceSR
from drivers.sim.readers import DmccSim, GenericSim, KeyenceSim, Outcome, ReaderSimServer, SimProtocol
from tests.fuzz.harness import Bounded, run
from tests.fuzz.hostile import Action, HostileDevice, Script
from tests.fuzz.strategies import budget, scripts

GS1 = "0109506000134352\x1d21ABC123\x1d10LOT1"
# What a code on a pack may hold, written out independently of the drivers' own check.
CODE_CHARS = {chr(c) for c in range(0x20, 0x7F)} | {"\x1d", "\x1e", "\x04"}


def line_reframer(header: bytes, terminator: bytes) -> Callable[[bytes, Callable[[bytes], bytes]], bytes]:
    """Edit the text of every `header text terminator` in a chunk and put the frame back together."""

    def reframe(chunk: bytes, edit: Callable[[bytes], bytes]) -> bytes:
        *frames, tail = chunk.split(terminator)
        out = bytearray()
        for f in frames:
            start = f.find(header) + len(header) if header and header in f else 0
            out += f[:start] + edit(f[start:]) + terminator
        return bytes(out + tail)

    return reframe


@dataclass(frozen=True)
class ReaderTarget:
    name: str
    make_sim: Callable[[], SimProtocol]
    make_reader: Callable[[str], CodeReader]
    header: bytes
    terminator: bytes


TARGETS = [
    ReaderTarget("dataman", lambda: DmccSim(response=DmccSim.EXTENDED),
                 lambda url: DataMan(DataManSettings(url=url, timeout_s=0.1)), b"", b"\r\n"),
    ReaderTarget("keyence", KeyenceSim, lambda url: KeyenceSR(KeyenceSettings(url=url, timeout_s=0.1)), b"", b"\r"),
    ReaderTarget("keyence-stx", lambda: KeyenceSim(stx_etx=True),
                 lambda url: KeyenceSR(KeyenceSettings(url=url, timeout_s=0.1, framing=Framing.STX_ETX)),
                 b"\x02", b"\x03"),
    ReaderTarget("generic", lambda: GenericSim(trigger="\\x16T\\r", header="\\x02", terminator="\\x03", no_read="NR"),
                 lambda url: GenericReader(GenericSettings(url=url, timeout_s=0.1, trigger_command="\\x16T\\r",
                                                           header="\\x02", terminator="\\x03", no_read="NR")),
                 b"\x02", b"\x03"),
]


async def exercise(target: ReaderTarget, link: str, actions: list[Action], reads: int) -> None:
    sim = target.make_sim()
    sim.results.extend(["C0001", GS1, Outcome.NO_READ, "C0002", Outcome.ERROR, GS1] * 2)
    server = ReaderSimServer(sim)
    port = int((await server.start_tcp()).rsplit(":", 1)[1])
    device = HostileDevice(port, Script(actions, line_reframer(target.header, target.terminator)))
    url = await device.serve_tcp() if link == "tcp" else await device.serve_pty()
    reader = target.make_reader(url)
    b = Bounded((ReaderError,), f"{target.name} over {link}")
    b.watch_loop()
    try:
        await b.op("open", reader.open)
        for _ in range(reads):
            result = await b.op("read", reader.read)
            if isinstance(result, ReadResult) and result.text is not None:
                assert result.text and set(result.text) <= CODE_CHARS, result
            if isinstance(b.last_error, ReaderLinkError):
                await b.op("open", reader.open)  # the station re-opens a link that dropped
    finally:
        await b.quiet("close", reader.close)
        await device.close()
        await server.close()
    b.check_loop()


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@budget(4)
@given(link=st.sampled_from(["tcp", "pty"]), actions=scripts(), reads=st.integers(1, 5))
def test_hostile_readers_give_codes_no_reads_or_reader_errors(target: ReaderTarget, link: str,
                                                               actions: list[Action], reads: int) -> None:
    run(exercise(target, link, actions, reads))
