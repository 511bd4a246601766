"""Videojet WSI (P/N 462115-01 Rev AD): the manual's own examples as byte tables, the simulator as the
manual describes the printer, and the single-slot driver against it over a pty and over TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.framing import Frame
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
from drivers.printers.counted_fifo import CountedFifo
from drivers.printers.fifo import CoderKind, Fates
from drivers.printers.videojet import VideojetSettings, VideojetWsi
from drivers.printers.videojet_codec import (
    Alarm,
    CheckSeq,
    Cmd,
    DataPacket,
    QueryCheck,
    ReplyReader,
    VideojetModel,
    check_sequence,
    check_user_data,
    counter_value,
    error_status,
    max_items_per_min,
    model_rules,
    packet,
    part_number,
)
from drivers.sim.faults import SimFault
from drivers.sim.videojet import VideojetSim
from tests.drivers.printers.random_answers import only_printer_errors

# --- the manual's own examples ----------------------------------------------------------------------


@pytest.mark.parametrize(("cmd", "data", "wire", "check"), [
    (Cmd.RESET_COUNTER, "A", b"\x02RA\x03", b"$93"),  # 3.16 example 1
    (Cmd.RESET_COUNTER, "B", b"\x02RB\x03", b"$94"),  # 3.16 example 2
    (Cmd.GET_COUNTER, "A", b"\x02GA\x03", b"$88"),  # 3.15 example 1 (the packet; 0x47 + 0x41)
    (Cmd.GET_COUNTER, "B", b"\x02GB\x03", b"$89"),  # 3.15 example 2
])
def test_check_sequences_sum_the_hosts_packet(cmd: Cmd, data: str, wire: bytes, check: bytes) -> None:
    assert packet(cmd, data) == wire
    assert check_sequence(wire[1:-1]) == check
    assert check_sequence(wire[1:-1], ok=False) == b"!" + check[1:]


def test_update_message_text_example_3_3_2() -> None:
    wire = packet(Cmd.UPDATE_MESSAGE_TEXT, "00" "0001" "034" "200000" "12345", "01" "0001" "025" "200000" "ABCDE")
    assert wire == b"\x02T00000103420000012345\n010001025200000ABCDE\x03"


def test_modify_message_parameters_example_3_4_1() -> None:
    fields = "0", "0", "0350", "06", "2", "00031", "00001", "00100", "01", "16", "1", "007", "16-high", "5", "00350"
    assert packet(Cmd.MESSAGE_PARAMETERS, "".join(fields)) == (
        b"\x02P00035006200031000010010001161007" b"16-high500350\x03")


def test_update_logo_example_3_7_matches_its_bit_pattern() -> None:
    pattern = [0x1F, 0xFC, 0x3F, 0xFE, 0x70, 0x1F, 0x60, 0x3B, 0x60, 0x73, 0x60, 0xE3, 0x61, 0xC3, 0x63,
               0x83, 0x67, 0x03, 0x7E, 0x07, 0x3F, 0xFE, 0x1F, 0xFC, 0x00, 0x00]
    data = "16" "013" + "".join(f"{b:02X}" for b in pattern)
    assert packet(Cmd.UPDATE_LOGO, "16 High Zero Logo", data) == (
        b"\x02L16 High Zero Logo\n160131FFC3FFE701F603B607360E361C3638367037E073FFE1FFC0000\x03")


def test_replies_of_the_examples_decode() -> None:
    h = bytes.fromhex("02 31 2E 30 2E 33 38 35 57 20 20 20 20 20 20 20 20 03")  # 3.10
    reader = ReplyReader()
    (reply,) = reader.feed(h)
    assert isinstance(reply, DataPacket) and part_number(reply) == "1.0.385W"
    assert [counter_value(r) for r in reader.feed(b"\x0200000678\x03\x0200000679\x03")  # 3.15
            if isinstance(r, DataPacket)] == [678, 679]
    assert counter_value(DataPacket("0000000678")) == 678  # ten digits, as 3.15's text says
    assert reader.feed(b"$93!94") == [CheckSeq(True, 0x93), CheckSeq(False, 0x94)]


def test_error_status_layout_3_11() -> None:
    e = error_status(DataPacket("8010004"))  # ink core empty, bad nozzle; red trafficator
    assert [(b.byte, b.bit, b.text) for b in e.errors] == [(1, 3, "ink core empty"), (3, 0, "bad nozzle")]
    assert {b.fault for b in e.errors} == {Fault.INK_EMPTY, Fault.HEAD_FAULT}
    assert e.alarm == Alarm.RED and e.encode() == "8010004"
    assert error_status(DataPacket("0000003")).alarm == Alarm.GREEN | Alarm.AMBER


def test_appendix_the_1710_and_1610dh_lack_g_o_q_r_z_and_the_error_reply() -> None:
    for model in (VideojetModel.V1710, VideojetModel.V1610DH):
        rules = model_rules(model)
        assert not any(rules.has(c) for c in (Cmd.GET_COUNTER, Cmd.PRINT_ON_OFF, Cmd.SELECTED_MESSAGE,
                                              Cmd.RESET_COUNTER, Cmd.SET_DATE_TIME))
        assert rules.has(Cmd.UPDATE_USER_FIELD) and rules.has(Cmd.ERROR_STATUS) and not rules.error_reply
    assert model_rules(VideojetModel.V1620).commands == frozenset(Cmd)


@pytest.mark.parametrize(("wire", "message"), [
    (b"$9Z", "two hex digits"),
    (b"X", "unexpected byte 0x58"),
    (b"\x02AB\x01\x03", "control byte 0x01"),
    (b"\x02" + b"9" * 80, "without ETX"),
])
def test_garbage_is_a_protocol_error_naming_the_bytes(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        ReplyReader().feed(wire)


def test_replies_split_across_reads_and_lower_case_hex() -> None:
    reader = ReplyReader()
    got = [r for b in b"$8d\x0212\x03!0A" for r in reader.feed(bytes([b]))]
    assert got == [CheckSeq(True, 0x8D), DataPacket("12"), CheckSeq(False, 0x0A)]


@pytest.mark.parametrize("text", ["", "A" * 51, "A\nB", "\u00e9t\u00e9", "A\x7fB\x1b"])
def test_user_data_the_manual_does_not_allow_is_refused(text: str) -> None:
    with pytest.raises(BadRecord):
        check_user_data(text)


@given(st.binary(max_size=80))
def test_random_bytes_into_the_reader_raise_only_protocol_errors(data: bytes) -> None:
    reader = ReplyReader()
    with contextlib.suppress(ProtocolError):
        for item in reader.feed(data):
            with contextlib.suppress(ProtocolError):
                counter_value(item) if isinstance(item, DataPacket) else None
                error_status(item) if isinstance(item, DataPacket) else None
                part_number(item) if isinstance(item, DataPacket) else None


def test_max_items_per_min_is_the_exchanges_of_one_item() -> None:
    byte = 10 / 9600
    u, g, e, d = ((4 + 6 + 20 + 3) * byte, (4 + 12) * byte, (3 + 9) * byte, (3 + 6 + 3) * byte)
    cycle = 2 * (g + e) + d + 2 * g + u + 8 * 0.020
    got = max_items_per_min(baud=9600, turnaround_s=0.020, field_name_len=6, code_len=20)
    assert got == pytest.approx(60 / cycle) and 190 < got < 210
    assert max_items_per_min(baud=None, turnaround_s=0.020, field_name_len=6, code_len=20) == pytest.approx(375)


# --- the simulator, as the manual describes the printer -------------------------------------------


def ask(sim: VideojetSim, wire: bytes) -> bytes:
    out = b""
    for item in sim.deframer().feed(wire):
        out += sim.dispatch(item) or b""
    return out


def test_sim_answers_the_manuals_examples() -> None:
    s = VideojetSim()
    assert ask(s, b"\x02RA\x03") == b"$93" and ask(s, b"\x02RB\x03") == b"$94"
    assert ask(s, b"\x02H\x03") == b"\x021.0.385W        \x03"
    assert ask(s, b"\x02GA\x03") == b"\x020000000000\x03"
    assert ask(s, b"\x02E\x03") == b"\x020000002\x03"  # no error, amber: not printing
    assert ask(s, b"\x02A\x03") == b"!41" and ask(s, b"\x02J\x03") == b"!4A"  # unknown; start jet disabled
    assert ask(s, b"\x02G\x03") == b"!47" and ask(s, b"\x02USERIAL\x03") == b"!15"  # G needs A/B; U needs data
    assert ask(s, b"\x02UOTHER\nX\x03") == b"!" + check_sequence(b"UOTHER\nX")[1:]
    assert ask(s, b"\x02M" + b"M" * 31 + b"\x03").startswith(b"!")


def test_sim_user_field_prints_whatever_it_holds_on_every_product() -> None:
    s = VideojetSim()
    assert ask(s, b"\x02O1\x03") == b"$80"
    ask(s, b"\x02USERIAL\nC1\x03")
    assert s.trigger(2) == 2
    ask(s, b"\x02USERIAL\nC2\x03")
    s.trigger()
    ask(s, b"\x02DSERIAL\x03")
    s.trigger()
    assert (s.printed, s.void_prints, s.counter, s.product_counter) == (["C1", "C1", "C2"], 1, 4, 4)
    assert ask(s, b"\x02GA\x03") == b"\x020000000004\x03"
    s.stop_printing()  # a panel stop leaves the field as it is
    s.trigger()
    assert ask(s, b"\x02GB\x03") == b"\x020000000005\x03" and ask(s, b"\x02GA\x03") == b"\x020000000004\x03"


def test_sim_1710_has_no_g_o_q_r_z_and_no_error_reply() -> None:
    s = VideojetSim(model="1710")
    assert ask(s, b"\x02GA\x03") == b"$88" and ask(s, b"\x02O1\x03") == b"$80"  # no data, nothing done
    assert not s.running
    assert ask(s, b"\x02A\x03") == b"$41" and ask(s, b"\x02UOTHER\nX\x03") == check_sequence(b"UOTHER\nX")
    assert ask(s, b"\x02H\x03").startswith(b"\x021.0.385W")


def test_sim_injected_nak_is_the_error_reply_and_nothing_is_done() -> None:
    s = VideojetSim()
    s.inject(SimFault.NAK)
    assert ask(s, b"\x02USERIAL\nC1\x03") == b"!" + check_sequence(b"USERIAL\nC1")[1:]
    assert s.fields["SERIAL"] == ""
    s.faults.add(Fault.HEAD_FAULT)
    assert ask(s, b"\x02E\x03") == b"\x020010004\x03" and ask(s, b"\x02O1\x03") == b"!80"


# --- the driver against the simulator, over a pty and over TCP ------------------------------------

LINKS = ["pty", "tcp"]


class ScriptedSim(VideojetSim):
    """A `U` refused (`refuse_u`), a product passing right after a `U` was executed (`race_on_u`), or a
    `U`'s answer lost (`mute_u`): moments a fault plan cannot aim at."""

    refuse_u = 0
    race_on_u = 0
    mute_u = 0

    def handle(self, frame: Frame) -> bytes | None:
        is_u = frame.payload[:1] == b"U"
        if is_u and self.refuse_u:
            self.refuse_u -= 1
            return self.nak(frame, "scripted")
        answer = super().handle(frame)
        if is_u and self.race_on_u:
            self.race_on_u -= 1
            self.trigger()
        if is_u and self.mute_u:
            self.mute_u -= 1
            return None
        return answer


@asynccontextmanager
async def linked(link: str, sim: VideojetSim | None = None, **options: Any) -> AsyncIterator[
        tuple[VideojetWsi, VideojetSim]]:
    s = sim or ScriptedSim()
    url = await s.serve_pty() if link == "pty" else f"tcp://127.0.0.1:{await s.serve_tcp(0)}"
    fields: dict[str, Any] = {"model": VideojetModel.V1620, "timeout_s": 0.3, "retries": 1, **options}
    driver = VideojetWsi(VideojetSettings(url=url, **fields))
    try:
        await driver.connect()
        yield driver, s
    finally:
        await driver.close()
        await s.close()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


async def drain(driver: Printer) -> list[PrintEvent]:
    out: list[PrintEvent] = []
    events = aiter(driver.events())
    with contextlib.suppress(TimeoutError):
        while True:
            out.append(await asyncio.wait_for(anext(events), 0.05))
    return out


@pytest.mark.parametrize("link", LINKS)
def test_one_code_at_a_time_each_proven_by_the_print_counter(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (driver, s):
            caps = driver.capabilities
            assert (caps.kind, caps.fifo_capacity, caps.counters, caps.proves_flush) == (
                CoderKind.SINGLE_SLOT, 1, True, True)
            assert caps.max_items_per_min is not None and caps.max_items_per_min > 0
            await driver.start()
            await driver.push([Record(1, "C1")])
            with pytest.raises(BufferFull, match="seq 1 holds the field"):
                await driver.push([Record(2, "C2")])
            with pytest.raises(BufferFull, match="holds one"):
                await driver.push([Record(2, "C2"), Record(3, "C3")])
            st_ = await driver.status()
            assert (st_.state, st_.last_printed, st_.fifo_depth) == (PrinterState.PRINTING, None, 1)
            s.trigger()
            await driver.push([Record(2, "C2")])  # the push itself reads the counter first
            s.trigger()
            st_ = await driver.status()
            assert (st_.last_printed, st_.fifo_depth, st_.print_count) == (2, 0, 2)
            assert [e.seq for e in await drain(driver) if e.kind is PrintEventKind.PRINTED] == [1, 2]
            assert s.printed == ["C1", "C2"] and s.fields["SERIAL"] == ""  # voided once seen printed
            assert b"USERIAL\nC1" in s.packets  # the code exactly as given: the host sends no checksum

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_code_printed_on_several_products_is_reported_and_stays_printed(link: str) -> None:
    async def go() -> None:
        async with linked(link, void_after_print=False) as (driver, s):
            await driver.start()
            await driver.push([Record(7, "C7")])
            s.trigger(2)
            assert (await driver.status()).last_printed == 7
            s.trigger()  # the field still holds C7: a third product gets it too
            await driver.status()
            events = await drain(driver)
            faults = [e.detail for e in events if e.kind is PrintEventKind.FAULT]
            assert "seq 7 printed on 2 products" in faults[0] and "printed again on 1 more" in faults[1]
            assert [e.seq for e in events if e.kind is PrintEventKind.PRINTED] == [7]
            assert s.printed == ["C7", "C7", "C7"]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_settle_proves_flushed_or_printed(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (driver, s):
            await driver.start()
            await driver.push([Record(1, "C1")])
            settled = await driver.settle()
            assert (settled.fates.flushed, settled.fates.unknown, s.fields["SERIAL"]) == ((1,), (), "")
            assert settled.status.fifo_lost and settled.status.state is PrinterState.PRINTING
            await driver.push([Record(2, "C2")])
            s.trigger()
            settled = await driver.settle()
            assert (settled.fates.printed, settled.fates.flushed, settled.status.last_printed) == ((2,), (), 2)
            s.trigger()  # a void print, not a repeat
            assert (s.printed, s.void_prints) == (["C2"], 1)

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_product_during_the_update_puts_the_code_in_doubt_and_voids_the_field(link: str) -> None:
    async def go() -> None:
        sim = ScriptedSim()
        async with linked(link, sim) as (driver, s):
            await driver.start()
            sim.race_on_u = 1
            await driver.push([Record(1, "C1")])
            kinds = [e.kind for e in await drain(driver)]
            assert PrintEventKind.FAULT in kinds and PrintEventKind.FIFO_LOST in kinds
            assert s.fields["SERIAL"] == ""
            with pytest.raises(Nak, match="settle"):
                await driver.push([Record(2, "C2")])
            assert (await driver.settle()).fates.unknown == (1,)
            await driver.push([Record(2, "C2")])

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_lost_answer_to_an_update_puts_it_in_doubt_and_the_field_is_voided(link: str) -> None:
    async def go() -> None:
        sim = ScriptedSim()
        async with linked(link, sim) as (driver, s):
            await driver.start()
            sim.mute_u = 1
            with pytest.raises(DeviceTimeout):
                await driver.push([Record(1, "C1")])
            assert s.fields["SERIAL"] == "C1"  # stored, but the driver cannot know
            st_ = await driver.status()
            assert (st_.fifo_lost, s.fields["SERIAL"]) == (True, "")
            s.trigger()
            assert s.printed == []
            assert (await driver.settle()).fates.unknown == (1,)

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_refused_update_is_not_in_the_coder_and_may_be_pushed_again(link: str) -> None:
    async def go() -> None:
        sim = ScriptedSim()
        async with linked(link, sim) as (driver, s):
            sim.refuse_u = 1
            with pytest.raises(Nak, match="unknown command or failed"):
                await driver.push([Record(1, "C1")])
            st_ = await driver.status()
            assert (st_.fifo_depth, st_.fifo_lost, s.fields["SERIAL"]) == (0, False, "")
            await driver.push([Record(2, "C2")])
            assert (await driver.status()).fifo_depth == 1 and s.fields["SERIAL"] == "C2"

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_counter_reset_at_the_panel_proves_nothing(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (driver, s):
            await driver.start()
            await driver.push([Record(1, "C1")])
            s.trigger()
            await driver.push([Record(2, "C2")])
            s.counter = 0  # reset at the printer (3.16 R A does the same): the count goes back from 1 to 0
            st_ = await driver.status()
            assert (st_.last_printed, st_.fifo_lost) == (1, True)
            with pytest.raises(Nak, match="settle"):
                await driver.push([Record(3, "C3")])
            assert (await driver.settle()).fates == Fates(printed=(1,), unknown=(2,))

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_select_job_settles_the_field_and_checks_the_selection(link: str) -> None:
    async def go() -> None:
        async with linked(link, VideojetSim(messages=["JOB-A", "JOB-B"])) as (driver, s):
            await driver.push([Record(1, "C1")])
            await driver.select_job("JOB-B")
            assert (s.job, s.fields["SERIAL"]) == ("JOB-B", "")
            with pytest.raises(Nak, match="unknown command or failed"):
                await driver.select_job("JOB-C")  # 3.1: an unknown message leaves JOB-B selected
            assert (await driver.settle()).fates.flushed == (1,)

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_stop_at_the_panel_loses_nothing(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (driver, s):
            await driver.start()
            await driver.push([Record(1, "C1")])
            s.stop_printing()
            st_ = await driver.status()
            assert (st_.state, st_.fifo_lost, st_.fifo_depth) == (PrinterState.IDLE, False, 1)
            await driver.start()
            s.trigger()
            assert (await driver.status()).last_printed == 1

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_power_loss_puts_the_slot_in_doubt_and_voids_the_field(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (driver, s):
            await driver.start()
            await driver.push([Record(1, "C1")])
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
            assert st_.fifo_lost and s.fields["SERIAL"] == ""
            kinds = {e.kind for e in await drain(driver)}
            assert {PrintEventKind.LINK_DOWN, PrintEventKind.LINK_UP, PrintEventKind.FIFO_LOST} <= kinds
            assert (await driver.settle()).fates.unknown == (1,)
            await driver.push([Record(2, "C2")])
            await driver.start()  # printing is off after a power loss
            s.trigger()
            assert (await driver.status()).last_printed == 2 and s.printed == ["C2"]

    run(go())


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize(("mode", "digits"), [("before", 10), ("after", 8), ("none", 8)])
def test_query_replies_with_or_without_a_check_sequence(link: str, mode: str, digits: int) -> None:
    async def go() -> None:
        async with linked(link, VideojetSim(query_check=mode, counter_digits=digits)) as (driver, s):
            assert (await driver.identity())["query_check"] == mode
            await driver.start()
            await driver.push([Record(1, "C1")])
            s.trigger()
            assert (await driver.status()).last_printed == 1

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_the_1710_can_confirm_nothing_and_says_so(link: str) -> None:
    async def go() -> None:
        async with linked(link, VideojetSim(model="1710"), model=VideojetModel.V1710) as (driver, s):
            caps = driver.capabilities
            assert (caps.counters, caps.proves_flush, caps.max_items_per_min) == (False, False, 0.0)
            assert "message" not in await driver.identity()
            with pytest.raises(Nak, match="at the printer"):
                await driver.start()
            s.running = True  # printing switched on at the printer
            await driver.push([Record(1, "C1")])
            s.trigger()
            st_ = await driver.status()
            assert (st_.state, st_.last_printed, st_.print_count, st_.fifo_depth) == (PrinterState.PRINTING, None,
                                                                                      None, 1)
            with pytest.raises(BufferFull, match="never provable"):
                await driver.push([Record(2, "C2")])
            assert (await driver.settle()).fates.unknown == (1,)
            assert s.fields["SERIAL"] == "" and not [p for p in s.packets if p[:1] in b"GOQRZ"]

    run(go())


def test_a_1620_driver_on_a_1710_fails_at_connect() -> None:
    async def go() -> None:
        s = VideojetSim(model="1710")
        port = await s.serve_tcp(0)
        driver = VideojetWsi(VideojetSettings(url=f"tcp://127.0.0.1:{port}", model=VideojetModel.V1620,
                                              timeout_s=0.2, retries=0))
        try:
            with pytest.raises(PrinterError):
                await driver.connect()
        finally:
            await driver.close()
            await s.close()

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_faults_come_from_the_error_bits_and_the_traffic_light(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (driver, s):
            s.faults.add(Fault.HEAD_FAULT)
            st_ = await driver.status()
            assert (st_.state, st_.faults, st_.detail) == (PrinterState.FAULT, {Fault.HEAD_FAULT}, "bad nozzle")
            with pytest.raises(Nak, match="at the printer"):
                await driver.clear_fault()
            with pytest.raises(Nak, match="!80"):
                await driver.start()
            s.faults.clear()
            await driver.clear_fault()

    run(go())


FAULTS = "nak:0.03,garbage:0.03,silence:0.02,stop:0.01,power_loss:0.005,ink_low:0.01,down=0.05"


@pytest.mark.parametrize("seed", [1, 2, 3, 39, 46])
def test_under_random_faults_every_fact_the_driver_states_is_true(seed: int) -> None:
    """Confirmed printed -> printed with its text; flushed -> never printed, not even later; a code
    printed twice was reported (FAULT) or put in doubt. Now and then two products pass per code."""

    async def go() -> None:
        sim = VideojetSim(faults=f"{FAULTS},seed={seed}")
        driver = VideojetWsi(VideojetSettings(url=f"tcp://127.0.0.1:{await sim.serve_tcp(0)}",
                                              model=VideojetModel.V1620, timeout_s=0.1, retries=1))
        events: list[PrintEvent] = []

        async def watch() -> None:
            async for e in driver.events():
                events.append(e)

        watcher = asyncio.create_task(watch())
        fates, seq, rng = Fates(), 0, sim.plan.rng
        for _ in range(20):
            with contextlib.suppress(PrinterError):
                await driver.connect()
                break
        try:
            for _ in range(600):
                if len(sim.printed) >= 80:
                    break
                try:
                    if (await driver.status()).state is PrinterState.IDLE:
                        await driver.start()
                    seq += 1  # a seq is used once, whatever happens to its push
                    try:
                        await driver.push([Record(seq, f"S{seq}")])
                    except BufferFull:
                        pass
                    except Nak as exc:
                        if "settle" in str(exc):
                            fates += (await driver.settle()).fates
                    if rng.random() < 0.1:  # a reconcile before the product comes: a flush to prove
                        fates += (await driver.settle()).fates
                except PrinterError:
                    await asyncio.sleep(0.01)  # a power loss lasts 50 ms: products pass meanwhile
                sim.trigger(2 if rng.random() < 0.05 else 1)
            for _ in range(50):
                try:
                    fates += (await driver.settle()).fates
                    break
                except PrinterError:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the watcher takes the last events
        finally:
            await driver.close()
            watcher.cancel()
            await sim.close()
        printed = {e.seq for e in events if e.kind is PrintEventKind.PRINTED}
        reported = {e.seq for e in events if e.kind in (PrintEventKind.FAULT, PrintEventKind.FIFO_LOST)}
        assert {f"S{n}" for n in printed} <= set(sim.printed), "confirmed a print that did not happen"
        assert not {f"S{n}" for n in fates.flushed} & set(sim.printed), "a flushed code was printed"
        assert not printed & set(fates.flushed) and len(printed) > 20
        twice = {int(t[1:]) for t in sim.printed if sim.printed.count(t) > 1}
        assert twice <= reported | set(fates.unknown), f"unreported repeats {twice - reported}"

    run(go())


async def _answering(answer: bytes) -> tuple[asyncio.Server, str]:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            writer.write(answer)
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    return server, f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_a_check_sequence_for_another_packet_is_a_line_error() -> None:
    async def go() -> None:
        server, url = await _answering(b"$93")
        driver = VideojetWsi(VideojetSettings(url=url, model=VideojetModel.V1620, timeout_s=0.2, retries=0,
                                              query_check=QueryCheck.NONE))
        try:
            with pytest.raises(ProtocolError, match="does not sum our H packet"):
                await driver.connect()
        finally:
            await driver.close()
            server.close()

    run(go())


def test_missing_device_is_link_down() -> None:
    async def go() -> None:
        driver = VideojetWsi(VideojetSettings(url="tcp://127.0.0.1:1", model=VideojetModel.V1620, timeout_s=0.3))
        with pytest.raises(LinkDown, match="127"):
            await driver.connect()

    run(go())


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_random_answers_raise_only_printer_errors(answer: bytes) -> None:
    only_printer_errors(make_driver, answer)


def make_driver(url: str) -> Printer:
    return VideojetWsi(VideojetSettings(url=url, model=VideojetModel.V1620, timeout_s=0.05, retries=0))


# --- drivers/printers/counted_fifo.py (shared by other drivers; its tests lived here) --------------


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
