"""The Modbus marker driver against a real pymodbus TCP server running the marker simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.plc.bus import pack_text, unpack_text
from drivers.printers.base import (
    BufferFull,
    DeviceTimeout,
    Fault,
    LinkDown,
    Nak,
    Printer,
    PrinterError,
    PrinterState,
    PrintEventKind,
    Record,
)
from drivers.printers.modbus_marker import ModbusMarker, ModbusMarkerSettings, join_u32, split_u32
from drivers.sim.modbus_marker import MarkerModel, ModbusMarkerSim, UnsupportedLink
from tests.conftest import free_port
from tests.drivers.printers.contract import CHECKS, Bench, run_check
from tests.drivers.printers.pairs import RETRIES, TIMEOUT_S, Pair


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


@asynccontextmanager
async def pair(slots: int = 4, rate: float | None = None) -> AsyncIterator[tuple[ModbusMarker, ModbusMarkerSim]]:
    settings = ModbusMarkerSettings(port=free_port(), slots=slots, text_registers=8, timeout_s=0.3)
    sim = ModbusMarkerSim(settings, rate_per_s=rate)
    await sim.start()
    driver = ModbusMarker(settings)
    try:
        await driver.connect()
        yield driver, sim
    finally:
        await driver.close()
        await sim.close()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.parametrize(
    ("text", "registers", "words"),
    [
        ("AB", 1, [0x4142]),
        ("ABC", 2, [0x4142, 0x4300]),
        ("", 2, [0, 0]),
        ("0104", 3, [0x3031, 0x3034, 0]),
    ],
)
def test_text_packs_two_chars_per_register_high_byte_first(text: str, registers: int, words: list[int]) -> None:
    assert pack_text(text, registers) == words
    assert unpack_text(words) == text


@pytest.mark.parametrize(("text", "registers"), [("ABC", 1), ("é", 4), ("A\x00B", 4)])
def test_text_that_cannot_be_stored_exactly_is_refused(text: str, registers: int) -> None:
    with pytest.raises(ValueError, match="text"):
        pack_text(text, registers)


@given(st.lists(st.integers(min_value=-5, max_value=70000), max_size=20))
def test_unpacking_random_registers_raises_only_value_error(words: list[int]) -> None:
    with suppress(ValueError):
        unpack_text(words)


@given(st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_u32_round_trips_through_two_registers(value: int) -> None:
    assert join_u32(split_u32(value)) == value


def test_model_prints_slots_in_ring_order_and_stop_discards_queue() -> None:
    s = ModbusMarkerSettings(slots=2, text_registers=2)
    m = MarkerModel(s)
    m.write_coil(s.run_coil, True)
    for n, text in enumerate(["AA", "BB", "CC"]):
        assert m.write_holding(s.text_address + (n % 2) * 2, pack_text(text, 2))
        assert m.write_holding(s.queued_address, split_u32(n + 1) + split_u32(n))
        assert m.fire() == text
    assert m.fire() is None  # empty queue: the product passes unmarked
    assert Fault.BUFFER_EMPTY in m.faults
    assert m.write_holding(s.queued_address, split_u32(4) + split_u32(3))
    m.write_coil(s.run_coil, False)
    assert m.depth == 0
    assert m.printed_texts == ["AA", "BB", "CC"]


def test_model_takes_a_queue_count_only_as_a_compare_and_set_of_its_own_count() -> None:
    s = ModbusMarkerSettings(slots=4, text_registers=2)
    m = MarkerModel(s)
    assert m.write_holding(s.queued_address, split_u32(2) + split_u32(0))
    m.stop()  # the panel: queued := printed = 0
    assert not m.write_holding(s.queued_address, split_u32(3) + split_u32(2))  # read before the stop
    assert not m.write_holding(s.queued_address, split_u32(1))  # a bare count bypasses the compare
    assert not m.write_holding(s.queued_address + 1, [5, 0, 0])
    assert m.queued == 0


def test_pushed_records_print_in_order_and_last_printed_follows_the_counter() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            assert (await driver.identity())["model"].startswith("LINEAGENT")
            await driver.start()
            await driver.push([Record(10, "CODE-10"), Record(11, "CODE-11"), Record(12, "CODE-12")])
            st0 = await driver.status()
            assert (st0.state, st0.fifo_depth, st0.last_printed) == (PrinterState.PRINTING, 3, None)
            sim.model.fire()
            await driver.trigger()  # on-demand print through the trigger coil
            st1 = await driver.status()
            assert (st1.fifo_depth, st1.last_printed, st1.print_count) == (1, 11, 2)
            assert sim.printed == ["CODE-10", "CODE-11"]

    run(go())


def test_conveyor_prints_everything_pushed_and_printed_events_carry_seqs() -> None:
    async def go() -> None:
        async with pair(slots=8, rate=200.0) as (driver, sim):
            await driver.start()
            seqs = list(range(1, 21))
            pending = list(seqs)
            while pending:
                status = await driver.status()
                room = 8 - (status.fifo_depth or 0)
                batch, pending = pending[:room], pending[room:]
                if batch:
                    await driver.push([Record(s, f"C{s:05d}") for s in batch])
                await asyncio.sleep(0.01)

            async def done() -> bool:
                return (await driver.status()).last_printed == 20

            await until(done, "all 20 records printed")
            assert sim.printed == [f"C{s:05d}" for s in seqs]
            events = driver.events()
            printed = [(await anext(events)) for _ in range(21)]  # LINK_UP + 20 PRINTED
            assert [e.seq for e in printed if e.kind is PrintEventKind.PRINTED] == seqs

    run(go())


def test_pushing_past_capacity_raises_buffer_full_and_writes_nothing() -> None:
    async def go() -> None:
        async with pair(slots=2) as (driver, sim):
            await driver.push([Record(1, "A")])
            with pytest.raises(BufferFull, match="room for 1 of 2"):
                await driver.push([Record(2, "B"), Record(3, "C")])
            assert sim.model.queued == 1

    run(go())


def test_text_too_long_for_a_slot_is_refused_before_anything_is_written() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            with pytest.raises(Nak, match="seq 7"):
                await driver.push([Record(7, "X" * 17)])
            assert sim.model.queued == 0

    run(go())


def test_stop_loses_the_fifo_once_and_says_so() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B")])
            sim.model.fire()
            await driver.stop()
            first = await driver.status()
            assert (first.state, first.fifo_lost, first.last_printed, first.fifo_depth) == (
                PrinterState.IDLE, True, 1, 0)
            assert (await driver.status()).fifo_lost is False
            kinds = []
            events = driver.events()
            for _ in range(3):
                kinds.append((await anext(events)).kind)
            assert kinds == [PrintEventKind.LINK_UP, PrintEventKind.PRINTED, PrintEventKind.FIFO_LOST]

    run(go())


def test_power_loss_keeps_the_counter_loses_the_queue_and_reconnects() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            sim.model.fire()
            await sim.power_loss()
            with pytest.raises((LinkDown, DeviceTimeout)):
                await driver.status()
            await sim.start()
            after = await driver.status()
            assert (after.fifo_lost, after.last_printed, after.print_count) == (True, 1, 1)
            assert after.state is PrinterState.IDLE

    run(go())


def test_nak_silence_and_faults_surface_as_typed_errors_and_states() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            sim.nak = True
            with pytest.raises(Nak, match="exception 6"):
                await driver.status()
            sim.nak = False
            sim.inject(Fault.INK_LOW)
            low = await driver.status()
            assert low.faults == {Fault.INK_LOW}
            assert low.state is PrinterState.IDLE
            sim.inject(Fault.HEAD_FAULT)
            assert (await driver.status()).state is PrinterState.FAULT
            await driver.clear_fault()
            assert (await driver.status()).faults == frozenset()
            sim.silent.set()
            with pytest.raises(DeviceTimeout):
                await driver.status()

    run(go())


def test_no_server_is_link_down() -> None:
    async def go() -> None:
        driver = ModbusMarker(ModbusMarkerSettings(port=free_port(), timeout_s=0.3))
        with pytest.raises(LinkDown, match=r"127\.0\.0\.1"):
            await driver.connect()
        with pytest.raises(PrinterError):
            await driver.select_job("any")

    run(go())


def test_a_push_after_an_unseen_panel_stop_is_refused_and_the_stop_stays() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            sim.model.fire()
            await driver.status()  # the driver's last look: 2 queued
            sim.model.stop()  # the operator, before the next push
            sim.model.running = True
            with pytest.raises(Nak, match="marker reports 1 queued, driver queued 3"):
                await driver.push([Record(4, "D")])
            assert sim.model.depth == 0  # the push did not bring back the discarded B and C
            status = await driver.status()
            assert (status.fifo_lost, status.last_printed) == (True, 1)
            await driver.push([Record(5, "E")])  # the count is known again: pushes resume
            sim.model.fire()
            sim.model.fire()
            assert sim.printed == ["A", "E"]
            assert (await driver.status()).last_printed == 5

    run(go())


def test_a_stop_between_the_read_and_the_count_write_is_refused_by_the_marker() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B")])
            sim.model.fire()
            s = sim.settings
            sim.on_write = lambda address, _values: (  # the stop lands while seq 3's text is written
                sim.model.stop() if address >= s.text_address else None
            )
            with pytest.raises(Nak, match="count write for seq 3 refused"):
                await driver.push([Record(3, "C")])
            sim.on_write = None
            assert (sim.model.queued, sim.model.printed) == (1, 1)  # the stop stands; no stale slots
            assert (await driver.status()).fifo_lost is True
            sim.model.running = True
            await driver.push([Record(4, "D")])
            sim.model.fire()
            assert sim.printed == ["A", "D"]
            events = driver.events()
            kinds = [(await anext(events)).kind for _ in range(3)]
            assert kinds == [PrintEventKind.LINK_UP, PrintEventKind.PRINTED, PrintEventKind.FIFO_LOST]

    run(go())


def test_a_push_after_a_power_cycle_it_did_not_see_writes_no_stale_count() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            sim.model.fire()
            await driver.status()
            await sim.power_loss()
            await sim.start()
            sim.model.running = True
            for _ in range(3):  # the dead link, then the reconnect's own finding, may refuse a push
                with suppress(LinkDown, DeviceTimeout, Nak):
                    await driver.push([Record(4, "D")])
                    break
            sim.model.fire()
            sim.model.fire()  # the queue holds only D: no stale count, so no blank slot is printed
            assert sim.printed == ["A", "D"]
            assert sim.model.missed == 1
            status = await driver.status()
            assert (status.last_printed, status.fifo_depth) == (4, 0)

    run(go())


def test_records_left_by_an_earlier_host_block_pushes_until_the_queue_is_cleared() -> None:
    async def go() -> None:
        async with pair() as (first, sim):
            await first.push([Record(1, "OLD-1"), Record(2, "OLD-2")])
            second = ModbusMarker(first.settings)  # e.g. the agent restarted after a crash
            await second.connect()
            try:
                with pytest.raises(Nak, match=r"clear_fifo\(\) before pushing"):
                    await second.push([Record(3, "NEW-3")])  # a print of OLD-1 would be counted as seq 3
                await second.clear_fifo()
                await second.start()
                await second.push([Record(3, "NEW-3")])
                sim.model.fire()
                assert (await second.status()).last_printed == 3
                assert sim.printed == ["NEW-3"]
            finally:
                await second.close()

    run(go())


def test_registry_interface_free_port_and_seeded_faults() -> None:
    async def go() -> None:
        sim = ModbusMarkerSim(faults="stop@2,seed=3")  # as `lineagent sim printer --protocol modbus_marker`
        port = await sim.serve_tcp(0)
        driver = ModbusMarker(ModbusMarkerSettings(port=port, timeout_s=0.3))
        try:
            await driver.connect()
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            assert sim.trigger(3) == 2  # the scheduled stop after print 2 cleared "C"
            st_ = await driver.status()
            assert (st_.last_printed, st_.fifo_lost, st_.state) == (2, True, PrinterState.IDLE)
            with pytest.raises(UnsupportedLink, match="TCP only"):
                await sim.serve_pty()
        finally:
            await driver.close()
            await sim.close()

    run(go())


def test_clear_fifo_discards_the_queue_and_leaves_the_marker_running() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            sim.model.fire()
            await driver.clear_fifo()
            assert sim.model.running, "clear_fifo() must not change whether the marker prints"
            assert sim.model.depth == 0
            st_ = await driver.status()
            assert (st_.state, st_.last_printed, st_.fifo_depth) == (PrinterState.PRINTING, 1, 0)
            await driver.push([Record(4, "D")])
            sim.model.fire()
            assert sim.printed == ["A", "D"]

    run(go())


def test_settle_proves_only_its_own_flush_and_leaves_an_unseen_stop_unknown() -> None:
    async def go() -> None:
        async with pair() as (driver, sim):
            await driver.start()
            await driver.push([Record(1, "A"), Record(2, "B"), Record(3, "C")])
            sim.model.fire()
            settled = await driver.settle()  # our flush, then the counter: B and C never printed
            assert (settled.status.last_printed, settled.fates.flushed) == (1, (2, 3))
            assert sim.model.running
            await driver.push([Record(4, "D"), Record(5, "E")])
            sim.model.stop()  # at the panel: nobody can say the driver saw every print before it
            sim.model.running = True
            settled = await driver.settle()
            assert settled.fates.flushed == ()  # D and E stay in doubt
            assert settled.status.last_printed == 1

    run(go())


# --- the shared printer contract (contract.py), over TCP only: Modbus TCP has no serial form here ----

MODBUS_CANNOT = frozenset({
    "select_job",  # the register map has no job
    "device_refusing_full_raises",  # the ring's fill level is the host's own count: nothing to refuse
    "garbage_raises_protocol_error_and_recovers",  # pymodbus frames every answer; no garbage to inject
})


def _modbus_driver(url: str, capacity: int) -> Printer:
    port = int(url.rsplit(":", 1)[1])
    settings = ModbusMarkerSettings(port=port, slots=capacity, text_registers=8, timeout_s=TIMEOUT_S, retries=RETRIES)
    return ModbusMarker(settings)


MODBUS_PAIR = Pair(
    "modbus_marker",
    lambda cap: ModbusMarkerSim(ModbusMarkerSettings(slots=cap, text_registers=8)),
    _modbus_driver,
    skip=MODBUS_CANNOT,
)


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
def test_contract_over_tcp(check: Callable[[Bench], Awaitable[None]]) -> None:
    run_check(MODBUS_PAIR, "tcp", check)
