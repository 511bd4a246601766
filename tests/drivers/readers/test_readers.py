"""Reader drivers against their simulators, over a real pty and a real TCP socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from drivers.readers.base import (
    CodeReader,
    ReaderLinkError,
    ReaderProtocolError,
    ReaderStatusError,
    ReaderTimeout,
    TriggerMode,
    read_with_deadline,
)
from drivers.readers.dataman import DataMan, DataManSettings
from drivers.readers.generic import GenericReader, GenericSettings
from drivers.readers.keyence import KeyenceSettings, KeyenceSR
from drivers.sim.readers import DmccSim, GenericSim, KeyenceSim, Outcome, ReaderSimServer, SimProtocol

GS1 = "0109506000134352\x1d21ABC123\x1d10LOT1"

Kind = tuple[Callable[[], SimProtocol], Callable[[str, dict[str, Any]], CodeReader]]
KINDS: dict[str, Kind] = {
    "dataman": (DmccSim, lambda url, kw: DataMan(DataManSettings(url=url, timeout_s=0.3, **kw))),
    "dataman-extended": (lambda: DmccSim(response=DmccSim.EXTENDED),
                         lambda url, kw: DataMan(DataManSettings(url=url, timeout_s=0.3, **kw))),
    "dataman-plain": (lambda: DmccSim(response=DmccSim.EXTENDED),
                      lambda url, kw: DataMan(DataManSettings(url=url, timeout_s=0.3, command_ids=False, **kw))),
    "keyence": (KeyenceSim, lambda url, kw: KeyenceSR(KeyenceSettings(url=url, timeout_s=0.3, **kw))),
    "keyence-mixed": (KeyenceSim,  # commands in STX/ETX, data setting none/CR
                      lambda url, kw: KeyenceSR(KeyenceSettings(url=url, timeout_s=0.3, framing="stx_etx", **kw))),
    "keyence-sr600": (lambda: KeyenceSim(ack=False),
                      lambda url, kw: KeyenceSR(KeyenceSettings(url=url, timeout_s=0.3, **kw))),
    "keyence-stx": (lambda: KeyenceSim(stx_etx=True),
                    lambda url, kw: KeyenceSR(KeyenceSettings(url=url, timeout_s=0.3, framing="stx_etx", **kw))),
    "generic": (lambda: GenericSim(trigger="\\x16T\\r", header="\\x02", terminator="\\x03", no_read="NR"),
                lambda url, kw: GenericReader(GenericSettings(url=url, timeout_s=0.3, trigger_command="\\x16T\\r",
                                                              header="\\x02", terminator="\\x03", no_read="NR",
                                                              **kw))),
}


async def serve(kind: str, link: str) -> tuple[ReaderSimServer, Callable[..., CodeReader]]:
    make_sim, make_reader = KINDS[kind]
    server = ReaderSimServer(make_sim())
    url = await server.start_tcp() if link == "tcp" else server.start_pty()
    return server, lambda **kw: make_reader(url, kw)


@pytest.mark.parametrize("link", ["pty", "tcp"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_reads_no_reads_garbage_and_silence(kind: str, link: str) -> None:
    async def scenario() -> None:
        server, make = await serve(kind, link)
        server.protocol.results.extend(["C0001", GS1, Outcome.NO_READ, Outcome.GARBAGE, Outcome.SILENCE,
                                        "https://id.example.com/01/09506000134352/21/X?17=270101"])
        async with server, make() as reader:
            assert (await reader.read()).text == "C0001"
            assert (await reader.read()).text == GS1  # GS separators survive the wire
            assert (await reader.read()).text is None  # the configured no-read string
            with pytest.raises(ReaderProtocolError, match=r"garbage|malformed|without STX|lacks header"):
                await reader.read()
            with pytest.raises(ReaderTimeout, match=r"no result within 0.3 s"):
                await reader.read()
            assert (await reader.read()).text.startswith("https://id.example.com/")  # type: ignore[union-attr]
            assert server.protocol.triggers == 6
            assert (await read_with_deadline(reader)).text is None  # empty queue: no-read string

    asyncio.run(scenario())


@pytest.mark.parametrize(("kind", "code", "words"), [("dataman-extended", 105, "reader unavailable"),
                                                    ("keyence", 20, "not executable in the current status")])
def test_error_replies_are_status_errors_naming_the_vendor_code(kind: str, code: int, words: str) -> None:
    async def scenario() -> None:
        server, make = await serve(kind, "tcp")
        server.protocol.results.extend([Outcome.ERROR, "C9"])
        async with server, make() as reader:
            with pytest.raises(ReaderStatusError, match=words) as err:
                await reader.read()
            assert err.value.code == code
            assert (await reader.read()).text == "C9"

    asyncio.run(scenario())


@pytest.mark.parametrize("link", ["pty", "tcp"])
@pytest.mark.parametrize("kind", ["dataman", "keyence", "generic"])
def test_power_loss_is_a_typed_error_and_the_reader_is_back_after_power_on(kind: str, link: str) -> None:
    async def scenario() -> None:
        server, make = await serve(kind, link)
        server.protocol.results.extend([Outcome.POWER_LOSS, "C2"])
        async with server:
            reader = make()
            await reader.open()
            with pytest.raises((ReaderLinkError, ReaderTimeout)):  # TCP drops; a tty goes silent
                await reader.read()
            with pytest.raises((ReaderLinkError, ReaderTimeout)):  # still off
                await reader.read()
            server.power_on()
            await reader.close()
            await reader.open()
            assert (await reader.read()).text == "C2"
            await reader.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_externally_triggered_results_arrive_unasked(link: str) -> None:
    async def scenario() -> None:
        server, make = await serve("keyence", link)
        async with server, make(trigger=TriggerMode.EXTERNAL) as reader:
            await server.emit("C42")
            await server.emit(Outcome.NO_READ)
            assert (await reader.next_result()).text == "C42"
            assert (await reader.next_result()).text is None
            with pytest.raises(ReaderTimeout):
                await reader.next_result()
            assert server.protocol.triggers == 0

    asyncio.run(scenario())


def test_keyence_sends_esc_to_clear_the_buffer_and_survives_noise() -> None:
    sim = KeyenceSim()
    sim.results.append("C1")
    assert sim.feed(b"noise\x1bLON\r") == b"OK,LON\rC1\r"
    reader = KeyenceSR(KeyenceSettings(url="tcp://127.0.0.1:1"))
    assert reader.encode_trigger() == b"\x1bLON\r"


def test_dmcc_checks_the_command_id_of_the_extended_reply() -> None:
    reader = DataMan(DataManSettings(url="tcp://127.0.0.1:1"))
    assert reader.encode_trigger() == b"||0:1>TRIGGER ON\r\n"
    with pytest.raises(ReaderProtocolError, match="reply for command 7, expected 1"):
        reader.interpret(b"||0:7[0]")


def test_closed_or_missing_links_are_link_errors(tmp_path: Any) -> None:
    async def scenario() -> None:
        with pytest.raises(ReaderLinkError, match="cannot"):
            await GenericReader(GenericSettings(url=str(tmp_path / "no-such-tty"))).open()
        with pytest.raises(ReaderLinkError, match="not open"):
            await GenericReader(GenericSettings(url="tcp://127.0.0.1:1")).read()

    asyncio.run(scenario())
