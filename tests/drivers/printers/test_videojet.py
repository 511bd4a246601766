"""Videojet WSI: packet byte tables, random bytes, the simulator's logic, and the driver over pty and TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.printers.base import (
    BufferFull,
    DeviceTimeout,
    Fault,
    LinkDown,
    Nak,
    Printer,
    PrinterState,
    PrintEvent,
    PrintEventKind,
    ProtocolError,
    Record,
)
from drivers.printers.counted_fifo import CountedFifo
from drivers.printers.videojet import VideojetSettings, VideojetWsi
from drivers.printers.videojet_codec import (
    Check,
    Packet,
    PacketType,
    WsiChecksum,
    WsiDeframer,
    encode_packet,
    int_field,
)
from drivers.sim.coder_model import CoderModel
from drivers.sim.faults import SimFault
from drivers.sim.videojet import VideojetSim, VideojetSimProtocol
from tests.drivers.printers.random_answers import only_printer_errors

U = PacketType.UPDATE_USER_FIELD


@pytest.mark.parametrize(
    ("packet", "checksum", "wire"),
    [
        (Packet(PacketType.SELECT_MESSAGE, ("SERIAL",)), WsiChecksum.NONE, b"\x02MSERIAL\x03"),
        (Packet(U, ("SERIAL", "ABC123")), WsiChecksum.NONE, b"\x02USERIAL\nABC123\x03"),
        (Packet(PacketType.COUNTERS), WsiChecksum.NONE, b"\x02G\x03"),
        (Packet(PacketType.PRINT_ON_OFF, ("1",)), WsiChecksum.NONE, b"\x02O1\x03"),
        # sum of b"G" = 0x47; of b"O1" = 0x4F + 0x31 = 0x80
        (Packet(PacketType.COUNTERS), WsiChecksum.SUM_HEX, b"\x02G47\x03"),
        (Packet(PacketType.PRINT_ON_OFF, ("1",)), WsiChecksum.SUM_HEX, b"\x02O180\x03"),
    ],
)
def test_packets_encode_to_the_documented_bytes_and_back(
    packet: Packet, checksum: WsiChecksum, wire: bytes
) -> None:
    assert encode_packet(packet, checksum) == wire
    assert WsiDeframer(checksum).feed(wire) == [packet]


def test_check_sequences_and_packets_split_across_reads() -> None:
    d = WsiDeframer()
    stream = b"$8D!51\x02G42\n3\x03$8D"
    got = [item for b in stream for item in d.feed(bytes([b]))]
    assert got == [Check(True), Check(False), Packet(PacketType.COUNTERS, ("42", "3")), Check(True)]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"$9Z", "neither"),
        (b"X", "unexpected byte 0x58"),
        (b"\x02Z\x03", "unknown WSI packet type 'Z'"),
        (b"\x02\x03", "empty"),
    ],
)
def test_garbage_is_a_protocol_error_naming_the_bytes(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        WsiDeframer().feed(wire)


def test_bad_checksum_is_refused() -> None:
    with pytest.raises(ProtocolError, match="checksum"):
        WsiDeframer(WsiChecksum.SUM_HEX).feed(b"\x02G48\x03")


def test_fields_that_framing_cannot_carry_are_refused() -> None:
    with pytest.raises(ValueError, match="LF"):
        encode_packet(Packet(U, ("SERIAL", "A\nB")))


def test_number_fields_must_be_ascii_digits() -> None:
    with pytest.raises(ProtocolError, match="not a number"):
        int_field(Packet(PacketType.COUNTERS, ("\u00b2",)), 0, "product count")


@given(st.binary(max_size=64), st.sampled_from(list(WsiChecksum)))
def test_random_bytes_raise_only_protocol_errors(data: bytes, checksum: WsiChecksum) -> None:
    d = WsiDeframer(checksum)
    with contextlib.suppress(ProtocolError):
        d.feed(data)


def sim(capacity: int = 2) -> VideojetSimProtocol:
    return VideojetSimProtocol(CoderModel(capacity=capacity))


def test_sim_queues_updates_acks_them_and_naks_when_full() -> None:
    s = sim(capacity=2)
    wire = b"".join(encode_packet(Packet(U, ("SERIAL", t))) for t in ("A", "B", "C"))
    assert s.receive(wire) == b"$8D$8D!51"
    assert s.receive(encode_packet(Packet(U, ("OTHER", "X")))) == b"!51"
    assert s.receive(b"\x02O1\x03") == b"$8D"
    assert [s.model.fire(), s.model.fire(), s.model.fire()] == ["A", "B", None]
    assert s.receive(b"\x02G\x03") == b"\x02G2\n0\x03"


def test_sim_stop_clears_queue_but_keeps_counter_and_reports_faults() -> None:
    s = sim(capacity=4)
    s.receive(b"\x02O1\x03" + encode_packet(Packet(U, ("SERIAL", "A"))) + encode_packet(Packet(U, ("SERIAL", "B"))))
    s.model.fire()
    assert s.receive(b"\x02K\x03") == b"$8D"
    assert (list(s.model.queue), s.model.counter) == ([], 1)
    s.model.fault(Fault.INK_EMPTY)
    s.model.faults.add(Fault.INK_LOW)
    assert s.receive(b"\x02E\x03") == b"\x02E2\nIE,IL\x03"
    assert s.receive(b"\x02O1\x03") == b"!51"  # cannot start while the jet is faulted


def test_sim_injected_faults_replace_the_answer_and_skip_the_request() -> None:
    s = sim()
    s.inject.armed.append(SimFault.NAK)
    assert s.receive(b"\x02H\x03\x02H\x03") == b"!51\x02HVJ1620-SIM\x03"
    s.inject.armed.extend([SimFault.GARBAGE, SimFault.SILENCE, SimFault.BUFFER_FULL])
    garbage = s.receive(encode_packet(Packet(U, ("SERIAL", "A"))))
    with pytest.raises(ProtocolError):
        WsiDeframer().feed(garbage)
    assert s.receive(encode_packet(Packet(U, ("SERIAL", "B")))) == b""
    assert s.receive(encode_packet(Packet(U, ("SERIAL", "C")))) == b"!51"  # refused as if full
    assert list(s.model.queue) == []  # none of the faulted requests was executed


# --- the driver against the simulator, over a pty and over TCP ------------------------------------

LINKS = ["pty", "tcp"]


@asynccontextmanager
async def pair(link: str, **sim_args: Any) -> AsyncIterator[tuple[VideojetWsi, VideojetSim]]:
    sim_ = VideojetSim(**sim_args)
    url = await sim_.serve_pty() if link == "pty" else f"tcp://127.0.0.1:{await sim_.serve_tcp(0)}"
    settings = VideojetSettings(url=url, timeout_s=0.3, retries=1, fifo_depth=sim_.model.capacity)
    driver = VideojetWsi(settings)
    try:
        await driver.connect()
        yield driver, sim_
    finally:
        await driver.close()
        await sim_.close()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


async def drain(driver: VideojetWsi) -> list[PrintEvent]:
    out: list[PrintEvent] = []
    events = driver.events()
    while True:
        try:
            out.append(await asyncio.wait_for(anext(events), 0.05))
        except TimeoutError:
            return out


@pytest.mark.parametrize("link", LINKS)
def test_driver_prints_in_order_and_derives_last_printed_from_the_counter(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            assert (await driver.identity())["model"] == "VJ1620-SIM"
            await driver.push([Record(5, "CODE5"), Record(6, "CODE6"), Record(7, "CODE7")])
            await driver.start()
            assert s.trigger(2) == 2
            st_ = await driver.status()
            assert (st_.state, st_.last_printed, st_.print_count, st_.fifo_depth) == (PrinterState.PRINTING, 6, 2, 1)
            assert s.printed == ["CODE5", "CODE6"]
            printed = [e.seq for e in await drain(driver) if e.kind is PrintEventKind.PRINTED]
            assert printed == [5, 6]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_driver_refuses_past_capacity_and_maps_printer_refusal_to_buffer_full(link: str) -> None:
    async def go() -> None:
        async with pair(link, capacity=2) as (driver, s):
            with pytest.raises(BufferFull, match="room for 2"):
                await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            s.inject(SimFault.BUFFER_FULL)
            with pytest.raises(BufferFull, match=r"seqs \[1\]"):
                await driver.push([Record(1, "A")])
            await driver.push([Record(2, "B")])
            assert list(s.model.queue) == ["B"]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_stop_confirms_what_printed_and_loses_the_rest_once(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            s.trigger()
            await driver.stop()
            first, second = await driver.status(), await driver.status()
            assert (first.fifo_lost, first.last_printed, first.fifo_depth, second.fifo_lost) == (True, 1, 0, False)
            assert s.model.queue == deque()

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_garbage_is_a_protocol_error_and_the_next_exchange_works(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            s.inject(SimFault.GARBAGE, count=2)  # the query and its one retry
            with pytest.raises(ProtocolError):
                await driver.status()
            assert (await driver.status()).state is PrinterState.IDLE

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_silence_puts_the_queue_in_doubt_and_pushes_wait_for_a_flush(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.push([Record(1, "A")])
            s.inject(SimFault.SILENCE, count=2)
            with pytest.raises(DeviceTimeout, match="answer to WSI"):
                await driver.status()
            assert (await driver.status()).fifo_lost is True
            with pytest.raises(Nak, match=r"clear_fifo\(\) before pushing"):
                await driver.push([Record(2, "B")])  # seq 1 may still be queued: nothing may go behind it
            await driver.clear_fifo()
            await driver.push([Record(2, "B")])
            assert list(s.model.queue) == ["B"]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_power_loss_keeps_the_counter_and_loses_the_queue(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B")])
            s.trigger()
            await s.power_off()
            with pytest.raises(LinkDown):
                for _ in range(3):  # a pty goes silent: LinkDown after link_down_after timeouts
                    with contextlib.suppress(DeviceTimeout):
                        await driver.status()
            await s.power_on()
            after = await driver.status()
            assert (after.fifo_lost, after.last_printed, after.print_count) == (True, 1, 1)
            assert (after.state, after.fifo_depth) == (PrinterState.IDLE, 0)
            await driver.push([Record(3, "C")])
            assert list(s.model.queue) == ["C"]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_faults_are_reported_and_clear_fault_says_what_to_do(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            s.model.fault(Fault.HEAD_FAULT)
            st_ = await driver.status()
            assert (st_.state, st_.faults) == (PrinterState.FAULT, {Fault.HEAD_FAULT})
            with pytest.raises(Nak, match="at the printer"):
                await driver.clear_fault()
            with pytest.raises(Nak, match="!51"):
                await driver.start()
            s.model.clear_faults()
            await driver.clear_fault()

    run(go())


def test_missing_device_is_link_down() -> None:
    async def go() -> None:
        driver = VideojetWsi(VideojetSettings(url="tcp://127.0.0.1:1", timeout_s=0.3))
        with pytest.raises(LinkDown, match="127"):
            await driver.connect()

    run(go())


# --- last_printed from the product counter (drivers/printers/counted_fifo.py) ----------------------


def test_counter_delta_confirms_seqs_oldest_first_from_a_baseline() -> None:
    f = CountedFifo("t", capacity=4)
    assert f.observe(100) == []  # the first reading is only the baseline
    f.queued([7, 8, 9])
    assert [e.seq for e in f.observe(102)] == [7, 8]
    assert (f.last_printed, f.depth, f.room) == (8, 1, 3)
    assert f.observe(101) == []  # a counter reset at the panel confirms nothing
    assert [e.seq for e in f.observe(102)] == [9]


def test_a_possible_loss_keeps_attributing_until_flushed_and_reports_once() -> None:
    f = CountedFifo("t", capacity=4)
    f.observe(0)
    f.queued([1, 2, 3])
    assert [e.kind for e in f.lose("silence")] == [PrintEventKind.FIFO_LOST]
    assert f.lose("again") == [] and f.suspect == "silence"
    assert [e.seq for e in f.observe(1)] == [1]  # the queue survived: seq 1 did print
    assert f.flushed("print off") == []  # already reported
    assert (f.depth, f.suspect, f.take_lost(), f.take_lost()) == (0, None, True, False)


def test_wrapping_counters_are_read_modulo() -> None:
    f = CountedFifo("t", capacity=4, modulo=1 << 16)
    f.observe(0xFFFF)
    f.queued([1, 2])
    assert [e.seq for e in f.observe(1)] == [1, 2]


@pytest.mark.parametrize("link", LINKS)
def test_a_refusal_inside_a_pipelined_window_names_exactly_the_refused_record(link: str) -> None:
    async def go() -> None:
        async with pair(link, capacity=8) as (driver, s):
            await driver.push([Record(1, "A")])
            s.inject(SimFault.BUFFER_FULL)  # the next update is refused, the ones after it stored
            with pytest.raises(BufferFull, match=r"seqs \[2\]"):
                await driver.push([Record(2, "B"), Record(3, "C")])
            assert list(s.model.queue) == ["A", "C"]
            await driver.start()
            s.trigger(2)
            assert (await driver.status()).last_printed == 3

    run(go())


# --- the driver against a device that answers random bytes: only typed errors come out --------------


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_random_answers_raise_only_printer_errors(answer: bytes) -> None:
    only_printer_errors(make_driver, answer)


def make_driver(url: str) -> Printer:
    return VideojetWsi(VideojetSettings(url=url, timeout_s=0.05, retries=0))
