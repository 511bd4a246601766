"""The printer contract (drivers/printers/base.py docstring), as checks any driver+simulator pair must pass.

Each check is an async function taking a `Bench` (a connected driver, its simulator, the pair);
test_contract.py runs every check for every pair in pairs.py over a pty and over TCP. The simulator is
stepped by hand (`sim.trigger(n)`: n products pass the head), so nothing here depends on timing.

Kind-aware: a check names the kinds of coder it holds for (`@kinds(...)`, drivers/printers/fifo.py
CoderKind), and runs for a pair only when the pair's driver declares one of them in its Capabilities.
FIFO checks push several records at once; a single slot has its own checks (a second push refused
before the first is printed, the counter's proof, settle's flushed-or-printed, a repeat print reported).
Checks with no `@kinds` hold for every coder (settle never changes whether the coder prints, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import pytest

from drivers.printers.base import (
    BufferFull,
    Capabilities,
    DeviceTimeout,
    LinkDown,
    Nak,
    Printer,
    PrinterError,
    PrinterState,
    PrinterStatus,
    PrintEvent,
    PrintEventKind,
    ProtocolError,
    Record,
)
from drivers.printers.fifo import CoderKind
from drivers.sim.faults import SimFault
from tests.drivers.printers.pairs import RETRIES, ContractSim, Pair

LINKS = ("pty", "tcp")
Check = Callable[["Bench"], Awaitable[None]]
FIFO = (CoderKind.INDEXED_FIFO, CoderKind.COUNTED_FIFO)
SINGLE = (CoderKind.SINGLE_SLOT,)
_KINDS: dict[str, frozenset[CoderKind]] = {}  # check name -> the kinds it holds for (absent: all)


def kinds(*which: CoderKind) -> Callable[[Check], Check]:
    def mark(check: Check) -> Check:
        _KINDS[check.__name__] = frozenset(which)
        return check

    return mark


def applies(check: Check, caps: Capabilities) -> bool:
    return caps.kind in _KINDS.get(check.__name__, frozenset(CoderKind))


@dataclass
class Bench:
    driver: Printer
    sim: ContractSim
    pair: Pair

    async def drain(self) -> list[PrintEvent]:
        """Events already emitted (the driver emits while it handles a call, so after the call).
        A fresh iterator each time: the one a timeout cancels is finished for good."""
        events = aiter(self.driver.events())
        out: list[PrintEvent] = []
        with suppress(TimeoutError):
            while True:
                out.append(await asyncio.wait_for(anext(events), 0.05))
        return out

    async def recovered(self) -> PrinterStatus:
        """status() once the device answers again (the driver reconnects on its own)."""
        last: Exception | None = None
        for _ in range(200):
            try:
                return await self.driver.status()
            except (LinkDown, DeviceTimeout) as exc:
                last = exc
                await asyncio.sleep(0.02)
        raise AssertionError(f"driver never recovered: {last}")


@asynccontextmanager
async def linked(pair: Pair, link: str) -> AsyncIterator[Bench]:
    sim = pair.make_sim(pair.capacity)
    url = await sim.serve_pty() if link == "pty" else f"tcp://127.0.0.1:{await sim.serve_tcp(0)}"
    driver = pair.make_driver(url, pair.capacity)
    try:
        await driver.connect()
        yield Bench(driver, sim, pair)
    finally:
        await driver.close()
        await sim.close()


def records(first: int, n: int) -> list[Record]:
    return [Record(seq, f"CODE{seq:06d}^\\") for seq in range(first, first + n)]


def ours(b: Bench, pushed: list[Record]) -> list[str]:
    """What the coder printed of `pushed`, in order (a void text a driver writes over a slot is not ours)."""
    texts = {r.text for r in pushed}
    return [t for t in b.sim.printed if t in texts]


async def check_identity_and_idle_status(b: Bench) -> None:
    ident = await b.driver.identity()
    assert ident["protocol"]
    st = await b.driver.status()
    assert st.state is PrinterState.IDLE
    assert (st.fifo_depth, st.last_printed, st.fifo_lost) == (0, None, False)
    assert st.fifo_capacity == b.pair.capacity


async def check_select_job(b: Bench) -> None:
    await b.driver.select_job("JOB-42")
    assert b.sim.job == "JOB-42"


@kinds(*FIFO)
async def check_prints_confirmed_in_order(b: Bench) -> None:
    batch = records(1001, 10)
    await b.driver.push(batch)
    await b.driver.start()
    assert b.sim.trigger(6) == 6
    st = await b.driver.status()
    assert st.state is PrinterState.PRINTING
    assert (st.last_printed, st.fifo_depth, st.print_count) == (1006, 4, 6)
    assert b.sim.printed == [r.text for r in batch[:6]]
    printed = [e.seq for e in await b.drain() if e.kind is PrintEventKind.PRINTED]
    assert printed == list(range(1001, 1007))


@kinds(*FIFO)
async def check_index_wraps_over_many_refills(b: Bench) -> None:
    await b.driver.start()
    pushed: list[Record] = []
    for round_no in range(5):  # 50 records through a FIFO of 16: every mailing index is reused
        batch = records(1 + round_no * 10, 10)
        await b.driver.push(batch)
        pushed += batch
        b.sim.trigger(10)
        assert (await b.driver.status()).last_printed == batch[-1].seq
    assert b.sim.printed == [r.text for r in pushed]


@kinds(*FIFO)
async def check_buffer_full_raises(b: Bench) -> None:
    # The capacity the driver promises (an indexed coder keeps one index free), not the coder's own.
    cap = b.driver.capabilities.fifo_capacity
    assert cap <= b.pair.capacity
    await b.driver.push(records(1, cap))
    with pytest.raises(BufferFull):
        await b.driver.push(records(1 + cap, 1))
    await b.driver.start()
    b.sim.trigger(2)
    await b.driver.push(records(1 + cap, 2))  # room again after two prints
    assert (await b.driver.status()).fifo_depth == cap


@kinds(*FIFO)
async def check_device_refusing_full_raises(b: Bench) -> None:
    b.sim.inject(SimFault.BUFFER_FULL)
    with pytest.raises(BufferFull):
        await b.driver.push(records(1, 1))
    await b.driver.push(records(2, 3))
    await b.driver.start()
    b.sim.trigger(3)
    assert (await b.driver.status()).last_printed == 4
    assert len(b.sim.printed) == 3


async def check_nak_raises_nak(b: Bench) -> None:
    b.sim.inject(SimFault.NAK)
    with pytest.raises(Nak):
        await b.driver.start()
    await b.driver.start()
    assert (await b.driver.status()).state is PrinterState.PRINTING


async def check_garbage_raises_protocol_error_and_recovers(b: Bench) -> None:
    b.sim.inject(SimFault.GARBAGE, count=RETRIES + 1)
    with pytest.raises(ProtocolError):
        await b.driver.status()
    n = min(2, b.driver.capabilities.fifo_capacity)
    await b.driver.push(records(1, n))
    assert (await b.driver.status()).fifo_depth == n


async def check_silence_raises_timeout(b: Bench) -> None:
    b.sim.inject(SimFault.SILENCE, count=RETRIES + 1)
    with pytest.raises(DeviceTimeout):
        await b.driver.status()
    assert (await b.driver.status()).state is PrinterState.IDLE


@kinds(*FIFO)
async def check_stop_clears_fifo(b: Bench) -> None:
    await b.driver.push(records(1, 8))
    await b.driver.start()
    b.sim.trigger(3)
    await b.driver.stop()
    st = await b.driver.status()
    assert (st.fifo_lost, st.last_printed, st.fifo_depth) == (True, 3, 0)
    assert PrintEventKind.FIFO_LOST in [e.kind for e in await b.drain()]
    await b.driver.push(records(9, 2))  # a fresh push clears the flag and prints on
    await b.driver.start()
    b.sim.trigger(2)
    st = await b.driver.status()
    assert (st.fifo_lost, st.last_printed) == (False, 10)
    assert len(b.sim.printed) == 5


@kinds(*FIFO)
async def check_stop_at_the_panel_is_noticed(b: Bench) -> None:
    await b.driver.push(records(1, 5))
    await b.driver.start()
    b.sim.trigger(1)
    b.sim.stop_printing()  # nobody told the driver
    st = await b.driver.status()
    assert (st.fifo_lost, st.last_printed, st.state) == (True, 1, PrinterState.IDLE)


@kinds(*FIFO)
async def check_power_loss(b: Bench) -> None:
    await b.driver.push(records(1, 8))
    await b.driver.start()
    b.sim.trigger(2)
    assert (await b.driver.status()).last_printed == 2
    await b.sim.power_off()
    with pytest.raises(LinkDown):
        for _ in range(10):
            with suppress(DeviceTimeout):
                await b.driver.status()
    await b.sim.power_on()
    st = await b.recovered()
    assert (st.fifo_lost, st.last_printed, st.fifo_depth, st.print_count) == (True, 2, 0, 2), st
    kinds = [e.kind for e in await b.drain()]
    assert {PrintEventKind.LINK_DOWN, PrintEventKind.LINK_UP, PrintEventKind.FIFO_LOST} <= set(kinds)
    await b.driver.push(records(9, 3))
    await b.driver.start()
    b.sim.trigger(3)
    assert (await b.driver.status()).last_printed == 11
    assert b.sim.printed == [r.text for r in records(1, 2) + records(9, 3)]


# ---- every kind ---------------------------------------------------------------------------------

async def check_capabilities_are_coherent(b: Bench) -> None:
    caps = b.driver.capabilities
    assert caps.fifo_capacity >= 1
    if caps.kind is CoderKind.SINGLE_SLOT:
        assert caps.fifo_capacity == 1
    if caps.kind is CoderKind.INDEXED_FIFO:
        assert caps.fifo_capacity < b.pair.capacity or not caps.indexed, "an indexed ring keeps one index free"
    if caps.max_items_per_min is not None:
        assert caps.max_items_per_min > 0


async def check_settle_never_changes_whether_the_coder_prints(b: Bench) -> None:
    """A coder that can only empty its queue while stopped (Hitachi 5.9.3-2) refuses instead: a Nak,
    and it goes on printing."""
    await b.driver.start()
    await b.driver.push(records(1, 1))
    try:
        settled = await b.driver.settle()
    except Nak:
        pass
    else:
        assert settled.status.state is PrinterState.PRINTING
    assert (await b.driver.status()).state is PrinterState.PRINTING
    await b.driver.stop()
    await b.driver.push(records(2, 1))
    settled = await b.driver.settle()
    assert settled.status.state is not PrinterState.PRINTING


async def check_settle_accounts_for_every_record(b: Bench) -> None:
    """Printed ones through last_printed; flushed ones only if the driver can prove it; no overlap."""
    n = b.driver.capabilities.fifo_capacity
    batch = records(1, min(n, 3))
    await b.driver.push(batch[:1])
    await b.driver.start()
    b.sim.trigger(1)
    if len(batch) > 1:
        await b.driver.push(batch[1:])
    try:
        settled = await b.driver.settle()
    except Nak:  # a coder that empties its queue only while stopped (Hitachi 5.9.3-2)
        await b.driver.stop()
        settled = await b.driver.settle()
    assert ours(b, batch) == [batch[0].text]
    caps = b.driver.capabilities
    assert settled.status.last_printed == (1 if caps.counters or caps.print_complete_events else None)
    assert 1 not in settled.fates.flushed
    assert set(settled.fates.flushed) <= {r.seq for r in batch[1:]}
    if not b.driver.capabilities.proves_flush:
        assert settled.fates.flushed == ()
    b.sim.trigger(3)
    # What prints after a settle (a record already loaded into the head, where a coder keeps one) must be
    # one the settle left in doubt: never one it proved flushed, never one printed before.
    later = ours(b, batch)[1:]
    texts = {r.text: r.seq for r in batch}
    assert len(later) == len(set(later)) and batch[0].text not in later
    assert not {texts[t] for t in later} & set(settled.fates.flushed), "a record proved flushed printed"


# ---- single slot ----------------------------------------------------------------------------------

@kinds(*SINGLE)
async def check_single_slot_refuses_a_second_push_before_the_first_printed(b: Bench) -> None:
    await b.driver.start()
    await b.driver.push(records(1, 1))
    with pytest.raises(BufferFull):
        await b.driver.push(records(2, 1))
    with pytest.raises(BufferFull):
        await b.driver.push(records(2, 2))
    b.sim.trigger(1)
    await b.driver.status()
    await b.driver.push(records(2, 1))
    b.sim.trigger(1)
    assert b.sim.printed == [r.text for r in records(1, 2)]


@kinds(*SINGLE)
async def check_single_slot_counter_confirms(b: Bench) -> None:
    if not b.driver.capabilities.counters:
        return  # nothing to confirm with (the feeder does not feed such a coder)
    await b.driver.start()
    await b.driver.push(records(5, 1))
    st = await b.driver.status()
    assert st.last_printed is None
    b.sim.trigger(1)
    st = await b.driver.status()
    assert st.last_printed == 5
    assert [e.seq for e in await b.drain() if e.kind is PrintEventKind.PRINTED] == [5]


@kinds(*SINGLE)
async def check_single_slot_settle_flush_vs_printed(b: Bench) -> None:
    await b.driver.start()
    await b.driver.push(records(1, 1))
    settled = await b.driver.settle()  # no product passed: never printed
    assert settled.status.last_printed is None
    assert settled.fates.flushed == ((1,) if b.driver.capabilities.proves_flush else ())
    await b.driver.push(records(2, 1))
    b.sim.trigger(1)
    settled = await b.driver.settle()  # printed before the settle: printed, never flushed
    assert (settled.status.last_printed, settled.fates.flushed) == (2, ())
    b.sim.trigger(1)  # the slot was emptied (or voided): no code of ours again on the next product
    assert ours(b, records(1, 2)) == [records(2, 1)[0].text]


@kinds(*SINGLE)
async def check_single_slot_repeat_print_reported(b: Bench) -> None:
    """A product passing a slot that still holds a printed code prints it again: that is a duplicate on
    the line, and the driver must say so (a FAULT event), never confirm a second record with it."""
    await b.driver.start()
    await b.driver.push(records(1, 1))
    b.sim.trigger(1)
    assert (await b.driver.status()).last_printed == 1
    b.sim.trigger(1)
    st = await b.driver.status()
    assert st.last_printed == 1
    events = await b.drain()
    assert [e.seq for e in events if e.kind is PrintEventKind.PRINTED] == [1]
    if b.sim.printed.count(records(1, 1)[0].text) > 1:
        assert any(e.kind is PrintEventKind.FAULT for e in events), "a repeat print went unreported"


CHECKS: list[Check] = [
    check_identity_and_idle_status,
    check_select_job,
    check_prints_confirmed_in_order,
    check_index_wraps_over_many_refills,
    check_buffer_full_raises,
    check_device_refusing_full_raises,
    check_nak_raises_nak,
    check_garbage_raises_protocol_error_and_recovers,
    check_silence_raises_timeout,
    check_stop_clears_fifo,
    check_stop_at_the_panel_is_noticed,
    check_power_loss,
    check_capabilities_are_coherent,
    check_settle_never_changes_whether_the_coder_prints,
    check_settle_accounts_for_every_record,
    check_single_slot_refuses_a_second_push_before_the_first_printed,
    check_single_slot_counter_confirms,
    check_single_slot_settle_flush_vs_printed,
    check_single_slot_repeat_print_reported,
]


def run_check(pair: Pair, link: str, check: Callable[[Bench], Awaitable[None]]) -> None:
    name = check.__name__.removeprefix("check_")
    if name in pair.skip:
        pytest.skip(f"{pair.name} cannot show {name}")
    caps = pair.make_driver("tcp://127.0.0.1:1", pair.capacity).capabilities  # built, never connected
    if not applies(check, caps):
        pytest.skip(f"{name} is not a check for a {caps.kind} coder")

    async def main() -> None:
        async with linked(pair, link) as bench:
            await check(bench)

    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    except PrinterError as exc:  # an unexpected driver error: show which pair and link
        raise AssertionError(f"{pair.name} over {link}: {type(exc).__name__}: {exc}") from exc
