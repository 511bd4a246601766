"""Hitachi communication buffer: byte tables, random bytes, the simulator's logic, the driver over pty and TCP."""

from __future__ import annotations

import asyncio
import contextlib
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
    ProtocolError,
    Record,
)
from drivers.printers.hitachi import HitachiBuffer, HitachiSettings
from drivers.printers.hitachi_codec import (
    Bcc,
    TextDeframer,
    bcc_xor,
    decode_print_contents,
    encode_print_contents,
    frame_text,
    parse_answer,
    split_items,
)
from drivers.sim.coder_model import CoderModel
from drivers.sim.faults import SimFault
from drivers.sim.hitachi import HitachiSim, HitachiSimProtocol
from tests.drivers.printers.random_answers import only_printer_errors

ENQ, ACK, NAK, DC2 = b"\x05", b"\x06", b"\x15", b"\x12"
CLEAR = b"\x02\x1b2v\x03"
RESTART = b"\x02\x1bw\x03"


@pytest.mark.parametrize(
    ("code", "wire"),
    [
        ("ABC", b"\x10\x31ABC"),
        ("0123456789AB", b"\x10\x310123456789\x10\x32AB"),
    ],
)
def test_codes_spread_over_items_of_ten_chars(code: str, wire: bytes) -> None:
    items = split_items(code)
    assert encode_print_contents(items) == wire
    assert decode_print_contents(wire) == items


def test_frame_with_and_without_bcc() -> None:
    assert frame_text(b"\x10\x31A") == b"\x02\x10\x31A\x03"
    # XOR of 0x10 0x31 0x41 0x03 = 0x63
    assert frame_text(b"\x10\x31A", Bcc.XOR) == b"\x02\x10\x31A\x03\x63"
    assert bcc_xor(b"\x10\x31A\x03") == 0x63


@pytest.mark.parametrize(
    ("code", "message"),
    [("X" * 81, "exceeds 80"), ("", "empty"), ("é", "not ASCII")],
)
def test_codes_a_data_set_cannot_hold_are_refused(code: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_print_contents(split_items(code))


def test_exchange_limit_is_1500_bytes() -> None:
    assert len(frame_text(b"x" * 1498)) == 1500
    with pytest.raises(ValueError, match="1500"):
        frame_text(b"x" * 1499)


def test_answers_parse_and_garbage_is_a_protocol_error() -> None:
    assert parse_answer(0x06) is True
    assert parse_answer(0x15) is False
    with pytest.raises(ProtocolError, match="0x41"):
        parse_answer(0x41)


@given(st.binary(max_size=64), st.sampled_from(list(Bcc)))
def test_random_bytes_raise_only_protocol_errors(data: bytes, bcc: Bcc) -> None:
    try:
        for kind, payload in TextDeframer(bcc).feed(data):
            if kind == "text":
                decode_print_contents(payload)
    except ProtocolError:
        pass


def sim(capacity: int = 3, n: int = 2) -> HitachiSimProtocol:
    return HitachiSimProtocol(CoderModel(capacity=capacity), refill_n=n)


def data_set(code: str) -> bytes:
    return frame_text(encode_print_contents(split_items(code)))


def test_sim_handshake_buffer_full_and_bad_text() -> None:
    s = sim(capacity=2)
    assert s.receive(ENQ) == ACK
    assert s.receive(data_set("A1")) == ACK
    assert s.receive(ENQ + data_set("A2")) == ACK + ACK
    assert s.receive(data_set("A3")) == NAK  # buffer full
    assert s.receive(b"\x02ZZ\x03") == NAK  # not print contents
    assert list(s.model.queue) == ["A1", "A2"]


def test_sim_restart_needs_n_sets_after_clear_and_stop_clears() -> None:
    s = sim(capacity=4, n=2)
    s.receive(data_set("A1") + data_set("A2"))
    assert s.receive(RESTART) == ACK
    assert s.receive(CLEAR) == ACK
    assert (list(s.model.queue), s.model.running) == ([], False)
    s.receive(data_set("B1"))
    assert s.receive(RESTART) == NAK  # only 1 of N=2 sets
    s.receive(data_set("B2"))
    assert s.receive(RESTART) == ACK
    assert [s.model.fire(), s.model.fire(), s.model.fire()] == ["B1", "B2", None]


def test_sim_offline_bcc_and_injections() -> None:
    s = HitachiSimProtocol(CoderModel(capacity=2), bcc=Bcc.XOR)
    assert s.receive(frame_text(b"\x101A", Bcc.XOR)) == ACK
    assert s.receive(b"\x02\x101B\x03\x00") == NAK  # wrong BCC
    s.online = False
    assert s.receive(ENQ + DC2) == NAK + NAK
    s.online = True
    s.inject.armed.append(SimFault.NAK)
    assert s.receive(DC2 + DC2) == NAK + ACK
    s.model.power_loss()
    assert s.receive(ENQ) == b""  # powered off: no answer at all


# --- the driver against the simulator, over a pty and over TCP ------------------------------------

LINKS = ["pty", "tcp"]


@asynccontextmanager
async def pair(link: str, *, capacity: int = 4, n: int = 2, bcc: Bcc = Bcc.NONE) -> AsyncIterator[
        tuple[HitachiBuffer, HitachiSim]]:
    s = HitachiSim(capacity=capacity, refill_n=n, bcc=bcc)
    url = await s.serve_pty() if link == "pty" else f"tcp://127.0.0.1:{await s.serve_tcp(0)}"
    driver = HitachiBuffer(HitachiSettings(url=url, timeout_s=0.3, retries=1, buffer_size=capacity,
                                           refill_n=n, bcc=bcc))
    try:
        await driver.connect()
        yield driver, s
    finally:
        await driver.close()
        await s.close()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("bcc", list(Bcc))
def test_data_sets_print_in_order_after_restart_with_n_sets(link: str, bcc: Bcc) -> None:
    async def go() -> None:
        async with pair(link, bcc=bcc) as (driver, s):
            await driver.push([Record(1, "CODE-0000000000001")])
            with pytest.raises(Nak, match="fewer than 2 data sets"):
                await driver.start()
            await driver.push([Record(2, "CODE-0000000000002")])
            await driver.start()
            assert s.trigger(3) == 2
            assert s.printed == ["CODE-0000000000001", "CODE-0000000000002"]
            st_ = await driver.status()
            assert (st_.state, st_.last_printed, st_.fifo_depth) == (PrinterState.PRINTING, None, None)

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_full_buffer_refuses_with_buffer_full_and_keeps_what_it_took(link: str) -> None:
    async def go() -> None:
        async with pair(link, capacity=2) as (driver, s):
            with pytest.raises(BufferFull, match="seq 3"):
                await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            assert list(s.model.queue) == ["A", "B"]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_stop_clears_the_buffer_and_reports_the_loss_once(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.push([Record(1, "A"), Record(2, "B")])
            await driver.stop()
            assert list(s.model.queue) == []
            assert [(await driver.status()).fifo_lost, (await driver.status()).fifo_lost] == [True, False]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_offline_printer_is_a_fault_and_refuses_data(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            s.protocol.online = False  # type: ignore[attr-defined]
            st_ = await driver.status()
            assert (st_.state, st_.faults) == (PrinterState.FAULT, {Fault.OTHER})
            with pytest.raises(BufferFull, match="off-line"):
                await driver.push([Record(1, "A")])
            with pytest.raises(Nak, match="at the printer"):
                await driver.clear_fault()
            s.protocol.online = True  # type: ignore[attr-defined]
            await driver.clear_fault()

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_power_loss_empties_the_buffer_and_the_driver_says_so(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.push([Record(1, "A"), Record(2, "B")])
            await s.power_off()
            with pytest.raises(LinkDown):
                for _ in range(3):
                    with contextlib.suppress(DeviceTimeout):
                        await driver.status()
            await s.power_on()
            st_ = await driver.status()
            assert (st_.fifo_lost, st_.state) == (True, PrinterState.IDLE)
            await driver.push([Record(3, "C")])
            assert list(s.model.queue) == ["C"]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_garbage_answer_to_a_data_set_is_a_protocol_error_and_puts_it_in_doubt(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.push([Record(1, "A")])
            s.inject(SimFault.GARBAGE, count=2)  # the ENQ is answered with garbage
            with pytest.raises(ProtocolError):
                await driver.push([Record(2, "B")])
            assert (await driver.status()).fifo_lost is True

    run(go())


# --- the driver against a device that answers random bytes: only typed errors come out --------------


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_random_answers_raise_only_printer_errors(answer: bytes) -> None:
    only_printer_errors(make_driver, answer)


def make_driver(url: str) -> Printer:
    return HitachiBuffer(HitachiSettings(url=url, timeout_s=0.05, retries=0))
