"""Every protocol under a seeded random fault schedule: the driver never confirms a print that did not
happen (0 false confirmations), whatever its kind of coder.

The feeder's safety rests on two driver promises, checked here against the simulator's own record:
every seq the driver reports printed (a PRINTED event, or status().last_printed) was printed, with the
text pushed for it; and what settle() proves FLUSHED was never printed. The run counts false
confirmations (and false flushes) instead of stopping at the first, so a soak run reports how many.
Faults come from the test's own seeded RNG through the simulator interface every pair offers
(tests/drivers/printers/pairs.py ContractSim), so every protocol gets the same schedule. Short runs
here; the long ones carry @pytest.mark.soak (LINEAGENT_SOAK=1).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field

import pytest

from drivers.printers.base import PrinterError, PrinterState, PrintEvent, PrintEventKind, Record
from drivers.printers.fifo import CoderKind
from drivers.sim.faults import SimFault
from tests.agent.coders import CODERS, faults_for, kind_of, press_start, slot_fresh
from tests.drivers.printers.pairs import ContractSim, Pair

CAP = 16
P_FAULT = 0.03  # per loop: how often a fault hits


@dataclass
class Tally:
    confirmed: set[int] = field(default_factory=set)
    flushed: set[int] = field(default_factory=set)
    false_confirmations: list[int] = field(default_factory=list)
    false_flushes: list[int] = field(default_factory=list)
    faults: int = 0


def _judge(tally: Tally, texts: dict[int, str], printed: list[str]) -> None:
    done = set(printed)
    tally.false_confirmations = sorted(s for s in tally.confirmed if texts[s] not in done)
    tally.false_flushes = sorted(s for s in tally.flushed if texts[s] in done)


async def fault_run(pair: Pair, seed: int, products: int, *, soak: bool = False) -> Tally:
    rng = random.Random(seed)
    kind = kind_of(pair)
    faults = faults_for(pair, kind, soak=soak)
    sim = pair.make_sim(CAP)
    driver = pair.make_driver(f"tcp://127.0.0.1:{await sim.serve_tcp(0)}", CAP)
    cap = driver.capabilities.fifo_capacity
    tally, texts = Tally(), {}
    open_: list[int] = []  # pushed, not yet confirmed or settled
    events: asyncio.Queue[PrintEvent] = asyncio.Queue()

    async def pump() -> None:
        async for event in driver.events():
            events.put_nowait(event)

    def confirmed(seqs: Iterable[int]) -> None:
        for s in seqs:
            if s in texts:
                tally.confirmed.add(s)
            if s in open_:
                open_.remove(s)

    settled_at = [float("-inf")]

    async def settle() -> None:
        settlement = await driver.settle()
        settled_at[0] = time.monotonic()  # what the driver emitted until now is covered by this settle
        last = settlement.status.last_printed
        confirmed(s for s in list(open_) if last is not None and s <= last)
        tally.flushed.update(settlement.fates.flushed)
        open_.clear()

    for _ in range(20):
        with suppress(PrinterError):
            await driver.connect()
            break
    pumping = asyncio.create_task(pump())
    seq, lost = 0, False
    try:
        for _ in range(products * 20):  # bounded, whatever the faults do
            if len(sim.printed) >= products:
                break
            if rng.random() < P_FAULT:
                await _inject(sim, rng.choice(faults), rng)
                tally.faults += 1
            # As the feeder does: events first, in order; a loss known before a push is settled before
            # it (after a loss, last_printed may jump over lost records: seqs no longer print in order).
            while not events.empty():
                event = events.get_nowait()
                if event.kind is PrintEventKind.PRINTED and event.seq is not None:
                    confirmed([event.seq])
                elif event.kind is PrintEventKind.FIFO_LOST and event.at > settled_at[0] and open_:
                    lost = True
            try:
                if lost:
                    await settle()
                    lost = False
                status = await driver.status()
                if status.fifo_lost and open_:
                    lost = True
                else:
                    last = status.last_printed
                    confirmed(s for s in list(open_) if last is not None and s <= last)
                    if status.faults:
                        await driver.clear_fault()
                    if status.state is not PrinterState.PRINTING:
                        await driver.start()
                    n = min(cap - len(open_), 5)
                    batch = [Record(seq + i + 1, f"S{seq + i + 1}") for i in range(max(n, 0))]
                    seq += len(batch)  # a seq is used once, whatever happens to the push
                    texts.update({r.seq: r.text for r in batch})
                    open_.extend(r.seq for r in batch)
                    if batch:
                        await driver.push(batch)
            except PrinterError:
                lost = True  # after any failure: settle before pushing again, as the feeder does
                await asyncio.sleep(0.01)
            if not (driver.capabilities.counters or driver.capabilities.print_complete_events):
                # Nothing to confirm with (the camera does it on a line): what printed makes room.
                done = set(sim.printed)
                open_[:] = [s for s in open_ if texts[s] not in done]
            press_start(sim)
            if kind is not CoderKind.SINGLE_SLOT or slot_fresh(sim) is not False:
                sim.trigger(1 if kind is CoderKind.SINGLE_SLOT else 2)
            await asyncio.sleep(0)
        with suppress(PrinterError):
            await settle()
    finally:
        pumping.cancel()
        with suppress(asyncio.CancelledError):
            await pumping
        await driver.close()
        await sim.close()
    _judge(tally, texts, sim.printed)
    return tally


async def _inject(sim: ContractSim, fault: SimFault, rng: random.Random) -> None:
    if fault is SimFault.POWER_LOSS:
        await sim.power_off()
        await asyncio.sleep(0.05)
        await sim.power_on()
    else:
        sim.inject(fault, rng.randint(1, 3))


def check(tally: Tally, name: str) -> None:
    assert not tally.false_confirmations, (
        f"{name}: {len(tally.false_confirmations)} false confirmations (seqs {tally.false_confirmations[:5]}) "
        f"in {len(tally.confirmed)} confirmed, {tally.faults} faults")
    assert not tally.false_flushes, f"{name}: proven flushed but printed: {tally.false_flushes[:5]}"


@pytest.mark.parametrize("name", sorted(CODERS))
def test_short_fault_run(name: str) -> None:
    check(asyncio.run(asyncio.wait_for(fault_run(CODERS[name], 1, 60), 120)), name)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("name", sorted(CODERS))
def test_soak_fault_run(name: str, seed: int) -> None:
    tally = asyncio.run(asyncio.wait_for(fault_run(CODERS[name], seed, 3000, soak=True), 900))
    print(f"{name} seed {seed}: {len(tally.confirmed)} confirmed, {len(tally.false_confirmations)} false, "
          f"{len(tally.flushed)} flushed, {tally.faults} faults")
    check(tally, name)
