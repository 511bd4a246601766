"""Random and hostile bytes from a reader give typed ReaderErrors or results, never another exception or a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.readers.base import (
    MAX_FRAME,
    Ack,
    CodeReader,
    ReaderError,
    ReaderProtocolError,
    ReaderTimeout,
    TriggerMode,
)
from drivers.readers.dataman import DataMan, DataManSettings
from drivers.readers.generic import GenericReader, GenericSettings
from drivers.readers.keyence import Framing, KeyenceSettings, KeyenceSR
from drivers.sim.readers import DmccSim, GenericSim, KeyenceSim, ReaderSimServer, SimProtocol

READERS: dict[str, Callable[[str], CodeReader]] = {
    "dataman": lambda url: DataMan(DataManSettings(url=url, timeout_s=0.3, trigger=TriggerMode.EXTERNAL)),
    "keyence": lambda url: KeyenceSR(KeyenceSettings(url=url, timeout_s=0.3, trigger=TriggerMode.EXTERNAL)),
    "keyence-stx": lambda url: KeyenceSR(KeyenceSettings(url=url, timeout_s=0.3, trigger=TriggerMode.EXTERNAL,
                                                         framing=Framing.STX_ETX)),
    "generic": lambda url: GenericReader(GenericSettings(url=url, timeout_s=0.3, trigger=TriggerMode.EXTERNAL,
                                                         header="\\x02", terminator="\\x03")),
}
HOSTILE = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"||", b"[", b"]", b":", b"0", b"105", b"\r", b"\n", b"\r\n", b"\x02", b"\x03", b"\x1b",
                     b"OK,LON", b"ER,", b"LON", b",", b"20", b"ERROR", b"NOREAD", b"\xff", b"\x00"]),
    max_size=60).map(b"".join)


def drain(reader: CodeReader, data: bytes) -> None:
    """Every frame in `data` through the driver's own framing and interpretation."""
    buf = bytearray(data)
    while True:
        try:
            frame = reader.next_frame(buf)
        except ReaderProtocolError:
            continue  # the bad frame was consumed; the rest is judged on its own
        if frame is None:
            return
        try:
            meaning = reader.interpret(frame)
            if isinstance(meaning, str):
                reader._check_text(meaning, frame)
            assert meaning is None or isinstance(meaning, str | Ack)
        except ReaderError:
            pass


@pytest.mark.parametrize("kind", list(READERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=HOSTILE)
def test_codecs_raise_only_reader_errors(kind: str, data: bytes) -> None:
    drain(READERS[kind]("tcp://127.0.0.1:1"), data)


@pytest.mark.parametrize("sim", [DmccSim, KeyenceSim, lambda: KeyenceSim(stx_etx=True), GenericSim])
@settings(max_examples=150, deadline=None)
@given(data=HOSTILE)
def test_simulators_never_raise_on_hostile_hosts(sim: Callable[[], SimProtocol], data: bytes) -> None:
    protocol = sim()
    protocol.feed(data)
    protocol.feed(data[::-1])


@pytest.mark.parametrize("link", ["pty", "tcp"])
@pytest.mark.parametrize("kind", list(READERS))
def test_noise_on_a_real_link_ends_in_a_result_or_a_typed_error_within_the_timeout(kind: str, link: str) -> None:
    noise = [b"\x00\xff\x02\x03||[\r\n", b"OK,LON\rER,LON,xx\r", b"\x1b\x02\x02\x03\x03", bytes(range(256)),
             b"||0:1[1]\xff\xfe\r\n", b"ER,LON,20\r\x02ER,LON,20\x03"]

    async def scenario() -> None:
        server = ReaderSimServer(KeyenceSim())
        url = await server.start_tcp() if link == "tcp" else server.start_pty()
        async with server, READERS[kind](url) as reader:
            for data in noise:
                await server.emit_raw(data)
                for _ in range(40):  # every frame, then the timeout once the noise is used up
                    try:
                        await reader.next_result()
                    except ReaderTimeout:
                        break
                    except ReaderError:
                        pass
                else:
                    raise AssertionError(f"{data!r} never ran dry")

    asyncio.run(scenario())


def test_a_flood_without_a_terminator_is_a_protocol_error_not_unbounded_memory() -> None:
    async def scenario() -> None:
        server = ReaderSimServer(KeyenceSim())
        url = await server.start_tcp()
        async with server, READERS["keyence"](url) as reader:
            reader.settings.timeout_s = 10.0  # the flood, not the clock, must end the wait
            await server.emit_raw(b"A" * (MAX_FRAME + 4096))
            with pytest.raises(ReaderProtocolError, match="without a frame end"):
                await reader.next_result()

    asyncio.run(scenario())
