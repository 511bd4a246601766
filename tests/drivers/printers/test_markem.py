"""Markem-Imaje NGPCL: byte tables from the NGPCL Usage Guide v25 and from captures of real coders.

Sources: "NGPCL Usage Guide" v25 (Markem Technologies, 2014; public in cxzhe/JunSheng, docs/), whose
section 5 examples are the tables below; the replies captured on real coders in
GlenCashen/videojet-message-manager (emulator/emulator.py NGPCL_DS, emulator/README.md, server/*.js,
test/ngpcl-*.test.js). The driver-vs-simulator checks are the single-slot counterparts of the contract
checks the Markem Pair skips (pairs.py).
"""

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
    BadRecord,
    BufferFull,
    DeviceTimeout,
    Fault,
    LinkDown,
    Nak,
    Printer,
    PrinterError,
    PrinterState,
    PrintEvent,
    PrintEventKind,
    ProtocolError,
    Record,
)
from drivers.printers.fifo import CoderKind
from drivers.printers.markem import MarkemNgpcl, MarkemSettings
from drivers.printers.markem_codec import (
    COUNTS_REQUEST,
    DEVICE_STATUS,
    JOB_REQUEST,
    VERSION_REQUEST,
    Deframer,
    Delimiters,
    Message,
    clear_to_send,
    decode,
    device_status_core,
    encode,
    field_value,
    print_status,
    read_field,
    select_job,
    state_change,
    update_fields,
)
from drivers.sim.faults import SimFault
from drivers.sim.markem import MarkemSim, MarkemSimProtocol, SlotModel
from drivers.sim.markem import Message as SimMessage
from tests.drivers.printers.random_answers import only_printer_errors

# -- the codec ---------------------------------------------------------------------------------------

# (message the driver builds, the bytes: guide section 5 examples and the public client's test table)
ENCODED = [
    (select_job("9 Months.job"), b"{~JS0|9 Months.job|0|}"),  # GlenCashen test/ngpcl-protocol.test.js
    (update_fields([("Batch1", "T0067"), ("Batch", "TBUNDRC-51")], timing=0),
     b"{~JU0||0|Batch1|T0067|Batch|TBUNDRC-51|}"),  # same test
    (read_field("Batch1"), b"{~FR|Batch1|}"),  # emulator/README.md; guide 5.6 `~FR|Field1|`
    (JOB_REQUEST, b"{~JR|}"),  # 5.3
    (DEVICE_STATUS, b"{~DR|}"),  # 5.10
    (COUNTS_REQUEST, b"{~CR|}"),  # 5.14
    (clear_to_send(0), b"{~DC0|}"),  # 5.12
    (print_status(0), b"{~PS|0|}"),  # 5.20
    (state_change("04"), b"{~ST|04|}"),  # 5.22
    (VERSION_REQUEST, b"{~VR}"),  # 5.29
]


@pytest.mark.parametrize(("message", "wire"), ENCODED, ids=[w.decode() for _, w in ENCODED])
def test_requests_encode_to_the_documented_bytes_and_back(message: Message, wire: bytes) -> None:
    assert encode(message) == wire
    assert Deframer().feed(wire) == [message]


# (packet contents from the guide's examples, identifier, fields)
GUIDE_EXAMPLES = [
    ("~NK1|", "NK", ("1",)),  # 5.1
    ("~JS0|Job1|1|Field1|Field1Value|", "JS", ("0", "Job1", "1", "Field1", "Field1Value")),  # 5.2
    ("~JS0|", "JS", ("0",)),  # 5.2 command reply
    ("~JNCurrentJob|", "JN", ("CurrentJob",)),  # 5.4 without the status field
    ("~JN0|CurrentJob|", "JN", ("0", "CurrentJob")),  # 5.4 with it
    ("~JU0||001|Field1|Field1Value|", "JU", ("0", "", "001", "Field1", "Field1Value")),  # 5.5
    ("~FC0|Field1Name|Field1Value|", "FC", ("0", "Field1Name", "Field1Value")),  # 5.7
    ("~FC1|", "FC", ("1",)),  # 5.7 field not found
    ("~DS0|1|0|0|0|0|1|000000005|06|1|", "DS", ("0", "1", "0", "0", "0", "0", "1", "000000005", "06", "1")),
    ("~DV0|1|", "DV", ("0", "1")),  # 5.13
    ("~CV0|TOTAL|000000000|BATCH|000000000|", "CV", ("0", "TOTAL", "000000000", "BATCH", "000000000")),
    ("~PG|0|0|", "PG", ("", "0", "0")),  # 5.19
    ("~PR0|0|", "PR", ("0", "0")),  # 5.21
    ("~VV0|001|001|001|", "VV", ("0", "001", "001", "001")),  # 5.30
    ("~PS|1|", "PS", ("", "1")),  # 10.3, sent between STX and ETX
    ("0042~JS0|", "JS", ("0",)),  # section 4: an optional message number before the identifier
]


@pytest.mark.parametrize(("inner", "ident", "fields"), GUIDE_EXAMPLES, ids=[g[0] for g in GUIDE_EXAMPLES])
def test_the_guides_examples_decode(inner: str, ident: str, fields: tuple[str, ...]) -> None:
    assert decode(inner.encode()) == Message(ident, fields)
    for start, end in ((b"{", b"}"), (b"\x02", b"\x03")):  # printable and traditional delimiters
        assert Deframer().feed(start + inner.encode() + end) == [Message(ident, fields)]


@pytest.mark.parametrize(("body", "core"), [
    (("0", "1", "0", "0", "0", "2", "0", "000000000", "06", "1"),  # captured: one more leading field
     ("1", "0", "0", "0", "2", "0", "000000000", "06", "1")),
    (("1", "0", "0", "0", "0", "1", "000000005", "06", "1", "X"),  # the guide's, with adopter data
     ("1", "0", "0", "0", "0", "1", "000000005", "06", "1")),
])
def test_device_status_layouts(body: tuple[str, ...], core: tuple[str, ...]) -> None:
    assert device_status_core(body) == core


@pytest.mark.parametrize("body", [(), ("0", "1"), ("2", "0", "0", "0", "0", "1", "000000005", "06", "1"),
                                  ("1", "0", "0", "0", "0", "1", "000000005", "12", "1")])
def test_device_status_that_does_not_fit_is_a_protocol_error(body: tuple[str, ...]) -> None:
    with pytest.raises(ProtocolError):
        device_status_core(body)


def test_field_contents_with_and_without_the_status_field() -> None:
    assert field_value(("0", "Batch1", "T0067"), "batch1", status_field=True) == "T0067"
    assert field_value(("0", "F", "A\x00\x00"), "F", status_field=True) == "A"  # 4.2 NUL padding
    assert field_value(("1",), "F", status_field=True) is None
    assert field_value(("Field1Name", "Field1Value"), "Field1Name", status_field=False) == "Field1Value"
    assert field_value(("",), "F", status_field=False) is None
    with pytest.raises(ProtocolError):
        field_value(("0", "Other", "X"), "F", status_field=True)


def test_traditional_delimiters_encode_with_stx_etx() -> None:
    assert encode(DEVICE_STATUS, Delimiters.TRADITIONAL) == b"\x02~DR|\x03"


# Every status string captured on a real coder (GlenCashen emulator/emulator.py NGPCL_DS, "captured
# during real testing", and test/ngpcl-status.test.js), with the state the driver must report.
DS_CAPTURES = [
    (b"{~DS0|0|1|0|0|0|2|0|000000000|06|1|}", PrinterState.PRINTING, "producing"),  # "green: printing"
    (b"{~DS0|0|0|0|0|0|2|0|000000000|11|1|}", PrinterState.IDLE, "held"),  # "off: idle/no light"
    (b"{~DS0|0|0|0|1|0|2|0|000000000|05|1|}", PrinterState.IDLE, "standby"),  # "yellow: interlock/attention"
    (b"{~DS0|0|0|1|1|0|2|0|000000000|09|1|}", PrinterState.FAULT, "aborted"),  # "blue: beam stop"
    (b"{~DS0|0|0|0|0|0|2|0|000000000|04|1|}", PrinterState.IDLE, "ready"),  # "red: stopped/not ready"
    (b"{~DS0|0|0|0|0|0|2|0|000000000|02|1|}", PrinterState.IDLE, "stopped"),  # test: "Off"
    (b"{~DS0|1|0|0|0|0|1|000000005|06|1|}", PrinterState.PRINTING, "producing"),  # guide 5.11 example
]
CAPTURED_REPLIES = [b"{~JN0|Bundy 15 Month.job|}", b"{~FC0|Batch1|T0067|}", b"{~FC0|Batch|TBUNDRC-51|}",
                    b"{~JS0|}", b"{~JS1|}", b"{~JU0|}", b"{~FC1|}", b"{~NK1|}"] + [d for d, _, _ in DS_CAPTURES]


def test_captured_replies_with_cr_lf_split_anywhere_decode() -> None:
    stream = b"".join(r + b"\r\n" for r in CAPTURED_REPLIES)
    whole = Deframer().feed(stream)
    assert [encode(m) for m in whole] == CAPTURED_REPLIES
    d = Deframer()
    assert [m for i in range(len(stream)) for m in d.feed(stream[i:i + 1])] == whole
    assert whole[0] == Message("JN", ("0", "Bundy 15 Month.job")) and whole[5] == Message("JU", ("0",))


@pytest.mark.parametrize(
    ("wire", "message"),
    [(b"xx", "outside a packet"), (b"~DR|}", "outside a packet"), (b"{~JS0|a|{~DR|}", "inside another"),
     (b"{~J*|}", "identifier"), (b"{~DS0|a}", "must end"), (b"{JS0|}", "identifier")],
)
def test_garbage_is_a_protocol_error(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        Deframer().feed(wire)


@pytest.mark.parametrize("text", ["A|B", "A}", "{A", "A~B", "A\r\nB", "A\x00", "€"])
def test_values_that_cannot_be_carried_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="NGPCL field"):
        encode(update_fields([("SERIAL", text)]))


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        Deframer().feed(data)


# -- the simulator, from the guide and the captures ---------------------------------------------------


def test_sim_answers_as_the_guide_and_the_captures_say() -> None:
    s = MarkemSimProtocol(SlotModel(capacity=1), field_name="Batch", jobs=("Bundy 15 Month.job",))
    table = [
        (b"{~DR|}\r", b"{~DS0|0|0|0|0|0|0|0|000000000|04|1|}\r\n"),
        (b"{~JS0|nope.job|0|}", b"{~JS1|}\r\n"),
        (b"{~JS0|Bundy 15 Month.job|0|}", b"{~JS0|}\r\n"),
        (b"{~JR|}", b"{~JN0|Bundy 15 Month.job|}\r\n"),
        (b"{~JU0||0|Batch|TBUNDRC-51|}", b"{~JU0|}\r\n"),
        (b"{~JU0||0|Batch1|T0067|}", b"{~JU1|}\r\n"),  # not in the image (10.2)
        (b"{~FR|Batch|}", b"{~FC0|Batch|TBUNDRC-51|}\r\n"),
        (b"{~FR|Batch1|}", b"{~FC1|}\r\n"),
        (b"{~ST|07|}", b"{~ST1|}\r\n"),  # SmartDate: READY, PRODUCING, HELD only
        (b"{~ST|06|}", b"{~ST0|}\r\n"),
        (b"{~DC0|}", b"{~DV0|1|}\r\n"),  # imaged, not printed yet: not clear to send
        (b"{~PS|0|}", b"{~PR0|0|}\r\n"),
        (b"{~PG|0|0|}", b"{~PG0|}\r\n"),  # a print go prints the field
        (b"{~DR|}", b"{~DS0|0|1|0|0|0|2|0|000000000|06|1|}\r\n"),  # the captured "printing" string
        (b"{~DC0|}", b"{~DV0|0|}\r\n"),
        (b"{~CR|}", b"{~CV0|TOTAL|000000001|BATCH|000000001|}\r\n"),
        (b"\x02~DR|\x03", b"\x02~DS0|0|1|0|0|0|2|0|000000000|06|1|\x03\r\n"),
        (b"{~VR}", b"{~VV0|001|000|000|}\r\n"),
        (b"{~ZZ|}", b"{~NK1|}\r\n"),
        (b"hello", b"{~NK1|}\r\n"),
    ]
    for request, reply in table:
        assert s.receive(request) == reply, request
    assert s.model.printed == ["TBUNDRC-51"]


def test_sim_field_prints_on_every_trigger_and_survives_a_stop_and_faults_show_in_ds() -> None:
    s = MarkemSimProtocol(SlotModel(capacity=1))
    s.receive(b"{~JU1||0|SERIAL|A|}{~ST|06|}")
    assert [s.model.fire(), s.model.fire()] == ["A", "A"]  # no new data: the same code again
    s.receive(b"{~ST|04|}{~ST|06|}")
    assert s.model.fire() == "A"
    s.model.faults.add(Fault.INK_LOW)
    assert s.receive(b"{~DR|}") == b"{~DS0|0|1|0|1|0|2|0|000000000|06|1|}\r\n"  # warning flag
    s.model.fault(Fault.HEAD_FAULT)
    assert s.receive(b"{~DR|}{~ST|06|}") == b"{~DS0|0|0|1|1|0|2|0|000000000|09|1|}\r\n{~ST1|}\r\n"
    assert s.receive(b"{~ST|04|}{~DR|}") == b"{~ST0|}\r\n{~DS0|0|0|0|0|0|2|0|000000000|04|1|}\r\n"
    s.inject.armed.extend([SimFault.BUFFER_FULL, SimFault.NAK, SimFault.SILENCE])
    assert s.receive(b"{~JU1||0|SERIAL|B|}{~DR|}{~DR|}") == b"{~JU1|}\r\n{~NK1|}\r\n"
    assert s.model.slot == "A"


def test_sim_without_the_status_field() -> None:
    s = MarkemSimProtocol(SlotModel(capacity=1), reply_status=False, job="J")
    guide = MarkemSimProtocol(SlotModel(capacity=1), ds_lead=False)  # the guide's 5.11 layout
    assert guide.receive(b"{~DR|}") == b"{~DS0|0|0|0|0|0|0|000000000|04|1|}\r\n"
    assert s.receive(b"{~JR|}{~DR|}{~FR|X|}") == b"{~JNJ|}\r\n{~DS0|0|0|0|0|0|0|000000000|04|1|}\r\n{~FC|}\r\n"


# -- the driver against the simulator, pty and TCP ------------------------------------------------------


@asynccontextmanager
async def pair(link: str, sim: MarkemSim | None = None, **options: Any) -> AsyncIterator[tuple[MarkemNgpcl, MarkemSim]]:
    s = sim or MarkemSim()
    url = await s.serve_pty() if link == "pty" else f"tcp://127.0.0.1:{await s.serve_tcp(0)}"
    driver = MarkemNgpcl(MarkemSettings(url=url, timeout_s=0.3, retries=1, **options))
    try:
        await driver.connect()
        yield driver, s
    finally:
        await driver.close()
        await s.close()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


async def drain(driver: Printer) -> list[PrintEvent]:
    events = aiter(driver.events())
    out: list[PrintEvent] = []
    with contextlib.suppress(TimeoutError):
        while True:
            out.append(await asyncio.wait_for(anext(events), 0.05))
    return out


LINKS = ["pty", "tcp"]


def test_capabilities_say_single_slot_with_a_counter_and_a_line_rate() -> None:
    caps = MarkemNgpcl(MarkemSettings(url="/dev/null", baud=9600)).capabilities
    assert (caps.kind, caps.fifo_capacity, caps.counters, caps.print_complete_events) == (
        CoderKind.SINGLE_SLOT, 1, True, False)
    assert (caps.status, caps.proves_flush, caps.double_print_guard) == (True, False, False)
    assert caps.max_items_per_min is not None and 0 < caps.max_items_per_min < 60
    tcp = MarkemNgpcl(MarkemSettings(url="tcp://h:21000", confirm="none")).capabilities
    assert (tcp.counters, tcp.max_items_per_min) == (False, 120.0)


@pytest.mark.parametrize("link", LINKS)
def test_one_code_per_print_each_confirmed_by_the_count(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.start()
            for seq in (1, 2, 3):
                await driver.push([Record(seq, f"CODE{seq}")])
                with pytest.raises(BufferFull, match="not proven printed"):
                    await driver.push([Record(seq + 10, "NEXT")])
                assert s.trigger(1) == 1
                st_ = await driver.status()
                assert (st_.state, st_.last_printed, st_.fifo_depth, st_.fifo_lost) == (
                    PrinterState.PRINTING, seq, 0, False)
            assert s.printed == ["CODE1", "CODE2", "CODE3"]
            assert [e.seq for e in await drain(driver) if e.kind is PrintEventKind.PRINTED] == [1, 2, 3]
            with pytest.raises(BufferFull):
                await driver.push([Record(4, "A"), Record(5, "B")])  # two codes never go at once
            assert s.protocol.model.counter == 3

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_second_print_of_the_same_code_is_reported(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.start()
            await driver.push([Record(7, "SEVEN")])
            s.trigger(3)  # the line outran the link: the field printed its code three times
            assert (await driver.status()).last_printed == 7
            faults = [e for e in await drain(driver) if e.kind is PrintEventKind.FAULT]
            assert [(e.seq, e.faults) for e in faults] == [(7, {Fault.SEQUENCE_ERROR})]
            assert "2 more time" in faults[0].detail

    run(go())


class BusyLine(MarkemSimProtocol):
    """A product passes the head while a Job Update is being imaged (it prints the old image)."""

    def _update(self, pairs: tuple[str, ...], ident: str) -> SimMessage:
        self.slot_model.fire()
        return super()._update(pairs, ident)


@pytest.mark.parametrize("link", LINKS)
def test_a_print_while_the_field_changes_puts_the_code_in_doubt_and_voids_it(link: str) -> None:
    async def go() -> None:
        sim = MarkemSim()
        sim.protocol = BusyLine(SlotModel(capacity=1), inject=sim.protocol.inject)
        async with pair(link, sim) as (driver, _):
            await driver.start()
            await driver.push([Record(1, "ONE")])
            st_ = await driver.status()
            assert (st_.fifo_lost, st_.last_printed, st_.fifo_depth) == (True, None, 0)
            assert PrintEventKind.FIFO_LOST in [e.kind for e in await drain(driver)]
            assert sim.protocol.slot_model.slot == ""  # voided: it cannot print again

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_refused_updates_are_naks_and_leave_nothing_pending(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            s.inject(SimFault.BUFFER_FULL)  # the next Job Update fails: {~JU1|}
            with pytest.raises(Nak, match="refused"):
                await driver.push([Record(1, "A")])
            assert (await driver.status()).fifo_depth == 0
            await driver.push([Record(2, "B")])
            await driver.start()
            s.trigger(1)
            assert (await driver.status()).last_printed == 2
            assert s.printed == ["B"]
        async with pair(link, field_name="NOT_IN_THE_JOB") as (driver, s):
            with pytest.raises(Nak, match="refused"):
                await driver.push([Record(1, "A")])
        async with pair(link) as (driver, s):
            with pytest.raises(BadRecord, match="control characters"):
                await driver.push([Record(1, "A|B")])

    run(go())


class TakesUnknownFields(MarkemSimProtocol):
    """"Markem accepts unknown fields, but readback will fail" (GlenCashen emulator/emulator.py, ~JU0)."""

    def _update(self, pairs: tuple[str, ...], ident: str) -> SimMessage:
        known = [x for name, value in zip(pairs[0::2], pairs[1::2], strict=True) if name == self.field_name
                 for x in (name, value)]
        super()._update(tuple(known), ident)
        return SimMessage(ident, ("0",))


@pytest.mark.parametrize("link", LINKS)
def test_an_update_the_field_did_not_take_is_caught_by_the_read_back(link: str) -> None:
    async def go() -> None:
        sim = MarkemSim()
        sim.protocol = TakesUnknownFields(SlotModel(capacity=1), inject=sim.protocol.inject)
        async with pair(link, sim, field_name="Batch1") as (driver, s):
            await driver.start()
            with pytest.raises(Nak, match="not taken"):
                await driver.push([Record(1, "A")])
            s.trigger(1)
            st_ = await driver.status()
            assert (st_.last_printed, st_.fifo_depth) == (None, 0)  # the print was not of seq 1
            assert s.printed == [""]

    run(go())


class MaskedField(MarkemSimProtocol):
    """A field whose data validation mask (5.5) refuses an empty value."""

    def _update(self, pairs: tuple[str, ...], ident: str) -> SimMessage:
        if "" in pairs[1::2]:
            return SimMessage(ident, ("1",))
        return super()._update(pairs, ident)


@pytest.mark.parametrize("link", LINKS)
def test_a_field_that_refuses_the_void_text_is_reported_until_void_text_fits(link: str) -> None:
    async def go() -> None:
        for void_text in ("", "VOID"):
            sim = MarkemSim()
            sim.protocol = MaskedField(SlotModel(capacity=1), inject=sim.protocol.inject)
            async with pair(link, sim, void_text=void_text) as (driver, _):
                await driver.push([Record(1, "ONE")])
                if void_text:
                    await driver.clear_fifo()
                    assert sim.protocol.slot_model.slot == "VOID"
                else:
                    with pytest.raises(Nak, match="void_text"):
                        await driver.clear_fifo()
        async with pair(link, field_name="NOT_IN_THE_JOB") as (driver, _):
            await driver.clear_fifo()  # no such field: nothing can print from it, nothing to void

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_panel_stop_keeps_the_code_and_stop_voids_it(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.push([Record(1, "A")])
            await driver.start()
            s.stop_printing()  # at the panel: the field keeps its code
            st_ = await driver.status()
            assert (st_.state, st_.fifo_lost, st_.fifo_depth) == (PrinterState.IDLE, False, 1)
            await driver.start()
            s.trigger(1)
            assert (await driver.status()).last_printed == 1
            await driver.push([Record(2, "B")])
            await driver.stop()  # B never printed: in doubt, and voided so a restart cannot print A or B
            st_ = await driver.status()
            assert (st_.state, st_.fifo_lost, st_.fifo_depth, st_.last_printed) == (PrinterState.IDLE, True, 0, 1)
            await driver.start()
            s.trigger(1)
            assert s.printed == ["A", ""]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_power_loss_puts_the_field_in_doubt_and_voids_it(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.push([Record(1, "ONE")])
            await driver.start()
            s.trigger(1)
            await driver.push([Record(2, "TWO")])
            await s.power_off()
            with pytest.raises(LinkDown):
                for _ in range(10):
                    with contextlib.suppress(DeviceTimeout):
                        await driver.status()
            await s.power_on()
            for _ in range(200):
                with contextlib.suppress(LinkDown, DeviceTimeout):
                    st_ = await driver.status()
                    break
                await asyncio.sleep(0.02)
            assert (st_.fifo_lost, st_.last_printed, st_.fifo_depth) == (True, 1, 0)
            assert s.protocol.slot_model.slot == ""  # TWO can no longer print
            kinds = {e.kind for e in await drain(driver)}
            assert {PrintEventKind.LINK_DOWN, PrintEventKind.LINK_UP, PrintEventKind.FIFO_LOST} <= kinds

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_settle_confirms_what_printed_and_puts_the_rest_in_doubt(link: str) -> None:
    async def go() -> None:
        async with pair(link) as (driver, s):
            await driver.start()
            await driver.push([Record(1, "ONE")])
            s.trigger(1)
            await driver.status()
            await driver.push([Record(2, "TWO")])
            settlement = await driver.settle()
            assert settlement.status.last_printed == 1
            assert (settlement.fates.unknown, settlement.fates.flushed) == ((2,), ())
            assert settlement.status.state is PrinterState.PRINTING  # settling did not stop the coder
            assert s.protocol.slot_model.slot == ""
            await driver.push([Record(3, "THREE")])
            s.trigger(1)
            assert (await driver.status()).last_printed == 3

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_faults_garbage_jobs_and_identity(link: str) -> None:
    async def go() -> None:
        async with pair(link, MarkemSim(jobs=("LOT-7",))) as (driver, s):
            ident = await driver.identity()
            assert (ident["version"], ident["job"], ident["state"]) == ("001.000.000", "", "ready")
            with pytest.raises(Nak, match="refused"):
                await driver.select_job("NOPE")
            await driver.select_job("LOT-7")
            assert (s.job, (await driver.identity())["job"]) == ("LOT-7", "LOT-7")
            s.protocol.model.fault(Fault.HEAD_FAULT)
            st_ = await driver.status()
            assert (st_.state, st_.faults) == (PrinterState.FAULT, {Fault.OTHER})
            await driver.clear_fault()
            assert (await driver.status()).state is PrinterState.IDLE
            s.inject(SimFault.GARBAGE, count=2)
            with pytest.raises(ProtocolError):
                await driver.status()
            await driver.push([Record(1, "A")])
            assert (await driver.status()).fifo_depth == 1

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_without_counts_nothing_is_confirmed_by_the_coder(link: str) -> None:
    async def go() -> None:
        async with pair(link, confirm="none") as (driver, s):
            await driver.start()
            await driver.push([Record(1, "A")])
            s.trigger(1)
            st_ = await driver.status()
            assert (st_.last_printed, st_.print_count, st_.fifo_depth) == (None, None, 1)
            with pytest.raises(BufferFull):
                await driver.push([Record(2, "B")])
            assert (await driver.settle()).fates.unknown == (1,)  # the camera decides, not the coder
            await driver.push([Record(2, "B")])

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_other_device_settings_status_field_off_and_stx_etx(link: str) -> None:
    async def go() -> None:
        async with pair(link, MarkemSim(reply_status=False, ds_lead=False), reply_status=False,
                        delimiters=Delimiters.TRADITIONAL) as (driver, s):
            await driver.start()
            await driver.push([Record(1, "A")])
            s.trigger(1)
            st_ = await driver.status()
            assert (st_.state, st_.last_printed) == (PrinterState.PRINTING, 1)
        async with pair(link, MarkemSim(reply_status=False)) as (driver, s):  # the setting is wrong
            await driver.start()
            await driver.push([Record(1, "A")])  # the counts reply showed the coder's setting
            s.trigger(1)
            assert (await driver.status()).last_printed == 1

    run(go())


# -- the driver against a device that answers random bytes: only typed errors come out --------------


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_random_answers_raise_only_printer_errors(answer: bytes) -> None:
    only_printer_errors(make_driver, answer)


@settings(max_examples=10, deadline=None)
@given(st.sampled_from([d for d, _, _ in DS_CAPTURES] + CAPTURED_REPLIES))
def test_well_formed_but_wrong_answers_raise_only_printer_errors(answer: bytes) -> None:
    only_printer_errors(make_driver, answer + b"\r\n")


def make_driver(url: str) -> Printer:
    return MarkemNgpcl(MarkemSettings(url=url, timeout_s=0.05, retries=0))


# -- every captured status string, through the driver ---------------------------------------------------


async def _device(ds: bytes) -> tuple[asyncio.Server, int]:
    """A coder that answers `~DR` with one captured string and `~CR` with a count of 5."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        while data := await reader.read(4096):
            buf += data
            while b"}" in buf:
                packet, _, buf = buf.partition(b"}")
                reply = ds if packet.endswith(b"~DR|") else b"{~CV0|TOTAL|000000005|BATCH|000000005|}"
                writer.write(reply + b"\r\n")
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.mark.parametrize(("ds", "state", "name"), DS_CAPTURES, ids=[d.decode() for d, _, _ in DS_CAPTURES])
def test_every_captured_status_reads_as_its_state(ds: bytes, state: PrinterState, name: str) -> None:
    async def go() -> None:
        server, port = await _device(ds)
        driver = MarkemNgpcl(MarkemSettings(url=f"tcp://127.0.0.1:{port}", timeout_s=0.3))
        try:
            await driver.connect()
            st_ = await driver.status()
            assert (st_.state, st_.print_count) == (state, 5)
            assert name in st_.detail
            assert ("warning active" in st_.detail) == (ds.split(b"|")[4] == b"1")
        finally:
            await driver.close()
            server.close()

    run(go())


# -- a seeded fault run: the driver never confirms a print that did not happen ---------------------------

FAULTS = "nak:0.03,garbage:0.03,silence:0.01,buffer_full:0.02,stop:0.02,power_loss:0.005,ink_low:0.01,down=0.05"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fault_run_confirms_only_real_prints(seed: int) -> None:
    async def go() -> None:
        sim = MarkemSim(faults=f"{FAULTS},seed={seed}")
        driver = MarkemNgpcl(MarkemSettings(url=f"tcp://127.0.0.1:{await sim.serve_tcp(0)}", timeout_s=0.1,
                                            retries=1))
        texts: dict[int, str] = {}
        refused: set[int] = set()
        events: list[PrintEvent] = []
        seq = 0

        async def collect() -> None:
            async for e in driver.events():
                events.append(e)

        collector = asyncio.create_task(collect())
        try:
            for _ in range(20):
                with contextlib.suppress(PrinterError):
                    await driver.connect()
                    break
            for _ in range(300):
                with contextlib.suppress(PrinterError):
                    st_ = await driver.status()
                    if st_.state is PrinterState.FAULT:
                        await driver.clear_fault()
                    elif st_.state is not PrinterState.PRINTING:
                        await driver.start()
                    elif st_.fifo_depth == 0:
                        seq += 1
                        texts[seq] = f"S{seq}"
                        try:
                            await driver.push([Record(seq, texts[seq])])
                        except Nak:
                            refused.add(seq)  # refused or not taken: the field does not hold it
                sim.trigger(1)
            with contextlib.suppress(PrinterError):
                await driver.settle()
            await asyncio.sleep(0)
        finally:
            collector.cancel()
            await driver.close()
            await sim.close()
        confirmed = [e.seq for e in events if e.kind is PrintEventKind.PRINTED and e.seq is not None]
        printed = set(sim.printed) - {""}
        assert len(confirmed) == len(set(confirmed)), "a seq was confirmed twice"
        assert {texts[s] for s in confirmed} <= printed, "the driver confirmed a print that did not happen"
        assert not {texts[s] for s in refused} & printed, "a code the coder refused was printed"
        assert len(confirmed) > 20, "the run made no progress"

    asyncio.run(asyncio.wait_for(go(), 60))
