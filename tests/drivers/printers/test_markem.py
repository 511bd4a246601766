"""Markem-Imaje NGPCL: message byte tables, the de-framer on random bytes, the simulator's logic."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.printers.base import BufferFull, Fault, Nak, Printer, PrinterState, ProtocolError, Record
from drivers.printers.markem import MarkemNgpcl, MarkemSettings
from drivers.printers.markem_codec import STATUS_REQUEST, Deframer, Message, encode, select_job, update_field
from drivers.sim.coder_model import CoderModel
from drivers.sim.faults import SimFault
from drivers.sim.markem import MarkemSim, MarkemSimProtocol
from tests.drivers.printers.random_answers import only_printer_errors


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (select_job("job"), b"{~JS0|job|0|}"),
        (update_field("Field", "Val"), b"{~JU0||0|Field|Val|}"),
        (STATUS_REQUEST, b"{~DR}"),
        (Message("NK1", ()), b"{~NK1|}"),
        (Message("DS0", ("1", "", "42", "3")), b"{~DS0|1||42|3|}"),
    ],
)
def test_messages_encode_to_the_documented_bytes_and_back(message: Message, wire: bytes) -> None:
    assert encode(message) == wire
    assert Deframer().feed(wire) == [message]


def test_messages_split_across_reads_and_nak_is_recognised() -> None:
    d = Deframer()
    got = [m for b in b"{~NK1|}{~DS0|0||7|0|}" for m in d.feed(bytes([b]))]
    assert [m.is_nak for m in got] == [True, False]
    assert got[1].fields == ("0", "", "7", "0")


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"xx", "does not start"),
        (b"{~JS0|a|{~DR}", "opened inside another"),
        (b"{~J*|}", "no valid code"),
        (b"{~DS0|a|b}", "must each end"),
    ],
)
def test_garbage_is_a_protocol_error(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        Deframer().feed(wire)


def test_field_values_that_cannot_be_framed_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be framed"):
        encode(update_field("SERIAL", "A|B"))


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        Deframer().feed(data)


def test_sim_queues_updates_silently_naks_refusals_and_reports_status() -> None:
    s = MarkemSimProtocol(CoderModel(capacity=2))
    ju = b"".join(encode(update_field("SERIAL", v)) for v in ("A", "B", "C"))
    assert s.receive(ju) == b"{~NK1|}"  # the third does not fit
    assert s.receive(encode(update_field("OTHER", "X"))) == b"{~NK1|}"
    assert s.receive(b"{~PS0|1|}{~DR}") == b"{~DS0|1||0|2|}"
    assert s.model.fire() == "A"
    s.model.faults.add(Fault.INK_LOW)
    assert s.receive(b"{~DR}") == b"{~DS0|1|IL|1|1|}"
    assert s.receive(b"{~PS0|0|}{~DR}") == b"{~DS0|0|IL|1|0|}"  # stop cleared the queue


def test_sim_job_change_empties_the_queue_and_unknown_jobs_are_refused() -> None:
    s = MarkemSimProtocol(CoderModel(capacity=4), jobs=("SERIAL",))
    s.receive(encode(update_field("SERIAL", "A")))
    assert s.receive(encode(select_job("NOPE"))) == b"{~NK1|}"
    assert s.receive(encode(select_job("SERIAL"))) == b""
    assert (s.job, list(s.model.queue)) == ("SERIAL", [])


def test_sim_garbage_from_host_is_answered_with_nak_and_injections_apply() -> None:
    s = MarkemSimProtocol(CoderModel(capacity=4))
    assert s.receive(b"hello") == b"{~NK1|}"
    s.inject.armed.extend([SimFault.NAK, SimFault.SILENCE])
    assert s.receive(encode(update_field("SERIAL", "A")) + b"{~DR}") == b"{~NK1|}"  # DR went unanswered
    assert s.receive(b"{~DR}") == b"{~DS0|0||0|0|}"


# --- driver behaviour the contract suite does not reach (the contract pair covers the rest) -------


@asynccontextmanager
async def pair(link: str, **settings: Any) -> AsyncIterator[tuple[MarkemNgpcl, MarkemSim]]:
    s = MarkemSim(capacity=8)
    url = await s.serve_pty() if link == "pty" else f"tcp://127.0.0.1:{await s.serve_tcp(0)}"
    driver = MarkemNgpcl(MarkemSettings(url=url, timeout_s=0.3, retries=1, fifo_depth=8, **settings))
    try:
        await driver.connect()
        yield driver, s
    finally:
        await driver.close()
        await s.close()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_a_refusal_inside_a_pipelined_push_names_exactly_the_refused_record(link: str) -> None:
    async def go() -> None:
        async with pair(link, start_code="PS0") as (driver, s):
            s.inject(SimFault.NAK)  # the first field update is refused, the rest are stored
            with pytest.raises(BufferFull, match=r"seqs \[1\]"):
                await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            assert list(s.model.queue) == ["B", "C"]
            await driver.start()
            s.trigger(2)
            assert (await driver.status()).last_printed == 3

    run(go())


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_without_a_configured_start_message_start_says_why_and_clear_reselects_the_job(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            with pytest.raises(Nak, match="no public print start"):
                await driver.start()
            await driver.select_job("LOT-7")
            await driver.push([Record(1, "A")])
            await driver.clear_fifo()
            assert (s.job, list(s.model.queue)) == ("LOT-7", [])
            assert (await driver.status()).fifo_lost is True

    run(go())


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_faults_from_ds0_and_clear_fault_with_a_configured_message(link: str) -> None:
    async def go() -> None:
        async with pair(link, start_code="PS0", clear_faults_code="EC0") as (driver, s):
            s.model.fault(Fault.INK_EMPTY)
            st_ = await driver.status()
            assert (st_.state, st_.faults) == (PrinterState.FAULT, {Fault.INK_EMPTY})
            await driver.clear_fault()
            assert (await driver.status()).state is PrinterState.IDLE

    run(go())


# --- the driver against a device that answers random bytes: only typed errors come out --------------


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_random_answers_raise_only_printer_errors(answer: bytes) -> None:
    only_printer_errors(make_driver, answer)


def make_driver(url: str) -> Printer:
    return MarkemNgpcl(MarkemSettings(url=url, timeout_s=0.05, retries=0))
