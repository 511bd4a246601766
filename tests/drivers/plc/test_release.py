"""Positive release in the PLC simulator, at the register level over Modbus/TCP.

The expectations are the PLC logic of docs/technicians.md written out per item: under `gate: release`
an item passes the gate only if its seq was written to `release_fire` before it reached the gate; every
other item (never released, released too late, the agent silent) is removed and counted by the confirm
sensor; the heartbeat watchdog stops the belt; the holding register keeps the value last written, so a
new connection (a restarted agent) reads back the last release.
"""

from __future__ import annotations

import asyncio

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.plc import GateMode, LinePlc, PlcSettings, Signal
from drivers.sim.plc import ConveyorModel, PlcSim, example_map
from tests.conftest import free_port

RELEASE_ADDRESS = 2  # example_map(): release_fire on holding register 2
CONFIRM_ADDRESS = 1  # reject_confirm on input register 1


def settings(url: str) -> PlcSettings:
    return PlcSettings(url=url, timeout_s=1.0, registers=example_map(), gate=GateMode.RELEASE)


def test_release_mode_needs_the_release_register() -> None:
    raw = example_map().model_dump()
    del raw["release_fire"]
    with pytest.raises(ValueError, match=r"gate: release needs registers\.release_fire"):
        PlcSettings.model_validate({"url": "tcp://x:1", "registers": raw})
    assert PlcSettings.model_validate({"url": "tcp://x:1", "registers": raw, "gate": "reject"}).gate is GateMode.REJECT


def test_only_released_items_pass_and_the_register_reads_back_after_a_new_connection() -> None:
    async def scenario() -> None:
        async with PlcSim(example_map(), port=free_port(), camera_at=1, gate_at=3, gate=GateMode.RELEASE) as sim:
            async with LinePlc(settings(sim.url)) as plc:
                await plc.run_line(True)
                for _ in range(2):
                    sim.model.step()  # items 1 and 2 past the head
                await plc.release(2)  # item 2 judged good; item 1 never released
                for _ in range(3):
                    sim.model.step()  # counter 5: items 1 and 2 reached the gate (at 3 pitches)
                assert sim.model.rejected == [1] and sim.model.passed == [2]
                await plc.release(1)  # too late: item 1 is gone
                assert sim.model.late_releases == [1]
            # A restarted agent: a new Modbus connection, raw register reads (function codes 3 and 4).
            client = AsyncModbusTcpClient("127.0.0.1", port=sim.port)
            await client.connect()
            try:
                held = await client.read_holding_registers(RELEASE_ADDRESS, count=1, device_id=1)
                assert held.registers == [1]  # the last value written, as a PLC holding register keeps it
                confirms = await client.read_input_registers(CONFIRM_ADDRESS, count=1, device_id=1)
                assert confirms.registers == [1]  # item 1 removed so far (item 3 reaches the gate at 6)
                # Release item 7 by a raw write (function code 6) of its low 16 bits: it passes.
                await client.write_register(RELEASE_ADDRESS, 7, device_id=1)
            finally:
                client.close()
            for _ in range(5):
                sim.model.step()  # counter 10: items 3..7 reached the gate
            assert sim.model.passed == [2, 7] and sim.model.rejected == [1, 3, 4, 5, 6]
            async with LinePlc(settings(sim.url)) as plc:
                assert await plc.last_released() == 7
                assert await plc.confirmed() == 5  # 1, 3, 4, 5, 6: each removal counted once

    asyncio.run(scenario())


def test_a_reject_overrides_a_release_and_16_bit_seqs_wrap() -> None:
    m = ConveyorModel(example_map(), camera_at=1, gate_at=2, gate=GateMode.RELEASE, counter=65534, running=True)
    m.write(Signal.RELEASE_FIRE, 65535)  # item 65535
    m.write(Signal.RELEASE_FIRE, 0)  # item 65536: its low 16 bits are 0
    m.write(Signal.REJECT_FIRE, 0)  # ... and then rejected after all: removed
    m.write(Signal.RELEASE_FIRE, 1)  # item 65537
    for _ in range(5):
        m.step()
    assert m.passed == [65535, 65537] and m.rejected == [65533, 65534, 65536]  # counter 65539: up to 65537


def test_the_watchdog_stops_the_belt_and_unreleased_items_are_removed_when_it_runs_again() -> None:
    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()
    m = ConveyorModel(example_map(), camera_at=1, gate_at=3, gate=GateMode.RELEASE, watchdog_s=1.0, clock=clock)
    m.write(Signal.HEARTBEAT, 1)
    m.write(Signal.LINE_RUN, 1)
    for _ in range(3):
        m.step()
    m.write(Signal.RELEASE_FIRE, 1)  # the agent judged item 1 good, then went silent
    clock.t += 1.5
    assert m.step() is None and not m.running and m.watchdog_trips == 1  # the belt stops
    assert m.counter == 3 and m.passed == [] and m.rejected == []
    m.write(Signal.LINE_RUN, 1)
    assert not m.running  # refused until the agent beats again
    m.write(Signal.HEARTBEAT, 2)  # the restarted agent beats and runs the belt; it releases nothing
    m.write(Signal.LINE_RUN, 1)
    for _ in range(3):
        m.step()
    assert m.passed == [1] and m.rejected == [2, 3]  # what the silent agent never released is removed
    assert m.confirms == 2


def test_reject_mode_lets_what_the_agent_never_named_pass() -> None:
    """The older reject-only logic, for comparison: silence means pass (why release is the default)."""
    m = ConveyorModel(example_map(), camera_at=1, gate_at=2, gate=GateMode.REJECT, running=True)
    m.write(Signal.REJECT_FIRE, 2)
    m.write(Signal.RELEASE_FIRE, 3)  # ignored by a reject-only gate (its register still holds the value)
    for _ in range(5):
        m.step()
    assert m.rejected == [2] and m.passed == [1, 3]
    assert m.read(Signal.RELEASE_FIRE) == 3
