"""Runs under a seeded random fault schedule: the driver never confirms a print that did not happen.

The feeder's safety rests on two driver promises, checked here against the simulator's own record:
every seq the driver reports PRINTED was printed, with the text pushed for it; and every record that
was pushed and is not confirmed printed is reported lost (FIFO_LOST) or still waiting, never silently
dropped. Short runs here; the long ones carry @pytest.mark.soak.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from drivers.printers.base import PrinterError, PrinterState, PrintEventKind, Record
from drivers.printers.generic import GenericPrinter, GenericSettings
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.printers.serializing import SerializingPrinter
from drivers.sim.base import SimCoder
from drivers.sim.generic import GenericSim
from drivers.sim.leibinger import LeibingerSim

FAULTS = "nak:0.02,garbage:0.02,silence:0.01,buffer_full:0.01,stop:0.01,power_loss:0.003,ink_low:0.01,down=0.05"
CAP = 16


def leibinger(url: str) -> SerializingPrinter:
    return Leibinger(LeibingerSettings(url=url, capacity=CAP, timeout_s=0.1, retries=1, reconnect_max_s=0.2))


def generic_stx(url: str) -> SerializingPrinter:
    return GenericPrinter(GenericSettings(
        url=url, protocol_file="example_stx", capacity=CAP, timeout_s=0.1, retries=1, reconnect_max_s=0.2,
    ))


def generic_leibinger(url: str) -> SerializingPrinter:
    return GenericPrinter(GenericSettings(
        url=url, protocol_file="leibinger", capacity=CAP, timeout_s=0.1, retries=1, reconnect_max_s=0.2,
    ))


RUNS: dict[str, tuple[Callable[[str], SimCoder], Callable[[str], SerializingPrinter]]] = {
    "leibinger": (lambda spec: LeibingerSim(capacity=CAP, faults=spec), leibinger),
    "generic+example_stx": (lambda spec: GenericSim(protocol="example_stx", capacity=CAP, faults=spec), generic_stx),
    # config/printers/leibinger.yaml against the native simulator, under the same fault schedule
    "generic+leibinger.yaml": (lambda spec: LeibingerSim(capacity=CAP, faults=spec), generic_leibinger),
}


async def fault_run(name: str, seed: int, products: int) -> None:
    make_sim, make_driver = RUNS[name]
    sim = make_sim(f"{FAULTS},seed={seed}")
    driver = make_driver(f"tcp://127.0.0.1:{await sim.serve_tcp(0)}")
    confirmed: list[int] = []
    lost = 0
    texts: dict[int, str] = {}
    seq = 0
    for _ in range(20):  # the fault schedule may refuse the first exchanges too
        try:
            await driver.connect()
            break
        except PrinterError:
            await driver.close()
    try:
        for _ in range(products * 20):  # bounded, whatever the faults do
            if len(sim.printed) >= products:
                break
            try:
                status = await driver.status()
                if status.faults:
                    await driver.clear_fault()
                if status.state is not PrinterState.PRINTING:
                    await driver.start()
                room = CAP - len(driver.tracker)
                batch = [Record(seq + i + 1, f"S{seq + i + 1}") for i in range(min(room, 5))]
                seq += len(batch)  # a seq is used once, whatever happens to the push
                texts.update({r.seq: r.text for r in batch})
                if batch:
                    await driver.push(batch)
            except PrinterError:
                await asyncio.sleep(0.01)
            sim.trigger(2)
            for event in driver.pending_events():
                if event.kind is PrintEventKind.PRINTED and event.seq is not None:
                    confirmed.append(event.seq)
                elif event.kind is PrintEventKind.FIFO_LOST:
                    lost += 1
    finally:
        await driver.close()
        await sim.close()
    printed = set(sim.printed)
    assert len(sim.printed) == len(printed), "a record was printed twice"
    assert len(confirmed) == len(set(confirmed)), "a seq was confirmed twice"
    assert {texts[s] for s in confirmed} <= printed, "the driver confirmed a print that did not happen"
    assert confirmed == sorted(confirmed)
    assert sim.printed == sorted(sim.printed, key=lambda t: int(t[1:])), "printed out of order"


@pytest.mark.parametrize("name", sorted(RUNS))
def test_short_fault_run(name: str) -> None:
    asyncio.run(asyncio.wait_for(fault_run(name, 1, 60), 60))


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("name", sorted(RUNS))
def test_soak_fault_run(name: str, seed: int) -> None:
    asyncio.run(asyncio.wait_for(fault_run(name, seed, 3000), 900))
