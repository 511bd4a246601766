"""The PLC adapter against the PLC simulator: a real pymodbus server over Modbus/TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from drivers.plc import Buses, LinePlc, PlcDeviceError, PlcLinkError, PlcSettings, PlcTimeout, Signal, unwrap
from drivers.sim.plc import PlcSim, example_map
from tests.conftest import free_port


def settings(url: str, **extra: object) -> PlcSettings:
    return PlcSettings.model_validate({"url": url, "timeout_s": 0.3, "registers": example_map(), **extra})


def test_map_refuses_a_written_signal_in_a_read_only_table() -> None:
    raw = example_map().model_dump()
    raw["reject_fire"] = {"table": "input", "address": 5}
    with pytest.raises(ValueError, match="reject_fire is written by the agent"):
        PlcSettings.model_validate({"url": "tcp://x:1", "registers": raw})


def test_unknown_register_map_key_is_refused() -> None:
    raw = example_map().model_dump()
    raw["lamp"] = {"table": "coil", "address": 9}
    with pytest.raises(ValueError, match="lamp"):
        PlcSettings.model_validate({"url": "tcp://x:1", "registers": raw})


@pytest.mark.parametrize(("raw", "near", "full"), [(5, 3, 5), (2, 65534, 65538), (65535, 65537, 65535),
                                                    (0, 0, 0), (100, 65636, 65636)])
def test_unwrap_16_bit_counter(raw: int, near: int, full: int) -> None:
    assert unwrap(raw, near) == full


def test_run_counter_lights_heartbeat_and_reject_over_modbus_tcp() -> None:
    async def scenario() -> None:
        sim = PlcSim(example_map(), port=free_port(), camera_at=2, gate_at=4)
        async with sim, LinePlc(settings(sim.url)) as plc:
            assert await plc.read(Signal.LINE_RUN) == 0
            await plc.run_line(True)
            assert sim.model.running
            for _ in range(3):
                sim.model.step()
            assert await plc.counter() == 3
            await plc.fire_reject(2)
            await plc.lights(green=False, amber=True, red=True, buzzer=True)
            assert await plc.read(Signal.LIGHT_AMBER) == 1
            assert await plc.read(Signal.LIGHT_GREEN) == 0
            assert await plc.heartbeat() == 1
            assert sim.model.heartbeat == 1
            for _ in range(4):
                sim.model.step()
            assert sim.model.rejected == [2]
            assert sim.model.passed == [1, 3]
            assert await plc.confirmed() == 1
            probe = await plc.probe()
            assert probe[Signal.COUNTER] == 7
            assert await plc.read_many([Signal.REJECT_CONFIRM, Signal.COUNTER, Signal.LINE_RUN]) == {
                Signal.COUNTER: 7, Signal.REJECT_CONFIRM: 1, Signal.LINE_RUN: 1}
            assert probe[Signal.BUZZER] == 1
            await plc.run_line(False)
            sim.model.step()
            assert await plc.counter() == 7  # a stopped line does not move

    asyncio.run(scenario())


def test_rtu_framing_over_a_serial_url() -> None:
    async def scenario() -> None:
        async with PlcSim(example_map(), port=free_port(), rtu=True) as sim:
            assert sim.url.startswith("socket://")
            async with LinePlc(settings(sim.url)) as plc:
                await plc.run_line(True)
                sim.model.step()
                sim.model.step()
                assert await plc.read_many([Signal.COUNTER, Signal.LINE_RUN]) == {
                    Signal.COUNTER: 2, Signal.LINE_RUN: 1}
                await plc.fire_reject(9)
                assert sim.model.pending == {9}

    asyncio.run(scenario())


def test_a_dead_slave_times_out_alone_and_the_bus_stays_up() -> None:
    async def scenario() -> None:
        raw = example_map().model_dump()
        raw["light_red"] = {"table": "coil", "address": 3, "device_id": 2}  # remote I/O on the same bus
        async with PlcSim(example_map(), port=free_port(), device_ids=(1, 2)) as sim:
            sim.dead.add(2)
            cfg = settings(sim.url, registers=raw, slave_timeouts={2: 0.2})
            async with LinePlc(cfg) as plc:
                with pytest.raises(PlcTimeout, match=r"slave 2.*light_red.*no answer within 0.2s"):
                    await plc.write(Signal.LIGHT_RED, 1)
                sim.model.running = True
                sim.model.step()
                assert await plc.counter() == 1  # slave 1 on the same connection still answers
                probe = await plc.probe()
                assert isinstance(probe[Signal.LIGHT_RED], PlcTimeout)
                assert probe[Signal.COUNTER] == 1

    asyncio.run(scenario())


def test_two_plcs_on_one_bus_share_one_lock() -> None:
    buses = Buses()
    a = LinePlc(settings("tcp://127.0.0.1:1"), name="a", buses=buses)
    b = LinePlc(settings("tcp://127.0.0.1:1", device_id=2), name="b", buses=buses)
    c = LinePlc(settings("tcp://127.0.0.1:2"), name="c", buses=buses)
    assert a.bus is b.bus
    assert a.bus.lock is b.bus.lock
    assert c.bus is not a.bus


def test_unmapped_address_is_a_device_error() -> None:
    async def scenario() -> None:
        raw = example_map().model_dump()
        raw["heartbeat"] = {"table": "holding", "address": 900}
        async with PlcSim(example_map(), port=free_port()) as sim, LinePlc(settings(sim.url, registers=raw)) as plc:
            with pytest.raises(PlcDeviceError, match=r"heartbeat.*exception 2") as err:
                await plc.heartbeat()
            assert err.value.exception_code == 2

    asyncio.run(scenario())


def test_nobody_listening_is_a_link_error() -> None:
    async def scenario() -> None:
        with pytest.raises(PlcLinkError, match=r"cannot connect|refused"):
            await LinePlc(settings(f"tcp://127.0.0.1:{free_port()}")).open()

    asyncio.run(scenario())
