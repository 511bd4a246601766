"""Leibinger-specific behaviour beyond the shared contract, against the Leibinger simulator over a pty/TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress

import pytest

from drivers.printers.base import BadRecord, Fault, Nak, PrinterState, PrintEventKind, Record
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.sim.faults import SimFault
from drivers.sim.leibinger import ERR_INK_LOW, LeibingerSim


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


@asynccontextmanager
async def pair(sim: LeibingerSim, **settings: object) -> AsyncIterator[Leibinger]:
    url = f"tcp://127.0.0.1:{await sim.serve_tcp(0)}"
    driver = Leibinger(LeibingerSettings(url=url, capacity=sim.capacity, timeout_s=0.2, retries=1, **settings))
    try:
        await driver.connect()
        yield driver
    finally:
        await driver.close()
        await sim.close()


def recs(first: int, n: int) -> list[Record]:
    return [Record(s, f"C{s}") for s in range(first, first + n)]


def test_records_left_from_an_earlier_session_are_flushed_on_connect() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        sim.store("OLD1", 1)
        sim.store("OLD2", 2)
        async with pair(sim) as d:
            assert len(sim.fifo) == 0
            st = await d.status()
            assert st.fifo_lost and st.fifo_depth == 0
            await d.push(recs(1, 2))
            await d.start()
            sim.trigger(2)
            assert (await d.status()).last_printed == 2
            assert sim.printed == ["C1", "C2"]  # never OLD1/OLD2

    run(main())


def test_ink_low_maps_through_error_faults() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim, error_faults={ERR_INK_LOW: Fault.INK_LOW}) as d:
            sim.inject(SimFault.INK_LOW)
            st = await d.status()
            assert st.faults == {Fault.INK_LOW}
            await d.clear_fault()
            assert (await d.status()).faults == frozenset()

    run(main())


def test_empty_fifo_on_a_product_reports_buffer_empty() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim) as d:
            await d.start()
            sim.trigger(1)
            st = await d.status()
            assert st.faults == {Fault.BUFFER_EMPTY} and st.state is PrinterState.PRINTING
            assert sim.missed == 1

    run(main())


def test_texts_the_frame_cannot_carry_are_refused_before_sending() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim) as d:
            for text in ("A\tB", "A\rB", "Ω≠"):
                with pytest.raises(BadRecord):
                    await d.push([Record(1, "OK"), Record(2, text)])
            assert len(sim.fifo) == 0 and d.last_push_accepted == 0

    run(main())


def test_a_refused_record_mid_batch_keeps_the_stored_prefix() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim) as d:
            await d.push(recs(1, 2))
            sim.inject(SimFault.NAK)  # the next =MR is refused; the ones after it are out of sequence
            with pytest.raises(Nak):
                await d.push(recs(3, 4))
            assert d.last_push_accepted == 0
            st = await d.status()
            assert st.fifo_depth == 2
            await d.push(recs(3, 4))  # the driver's next index still follows what the coder holds
            await d.start()
            sim.trigger(6)
            assert (await d.status()).last_printed == 6
            assert sim.printed == [f"C{i}" for i in range(1, 7)]

    run(main())


def test_lost_answer_to_a_stored_record_is_found_by_asking_the_coder() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim, window=1) as d:
            sim.inject(SimFault.GARBAGE)  # the coder stores record 1 but its answer is garbled
            with pytest.raises(Exception, match="no valid reply"):
                await d.push(recs(1, 1))
            assert d.last_push_accepted == 1  # found by ?SM: the record is in the FIFO after all
            await d.push(recs(2, 1))
            await d.start()
            sim.trigger(2)
            assert (await d.status()).last_printed == 2

    run(main())


def test_polling_emits_printed_events_while_products_pass() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim, poll_s=0.02) as d:
            events = aiter(d.events())
            await d.push(recs(1, 3))
            await d.start()
            sim.trigger(3)
            seen: list[int | None] = []
            while len(seen) < 3:
                e = await asyncio.wait_for(anext(events), 5)
                if e.kind is PrintEventKind.PRINTED:
                    seen.append(e.seq)
            assert seen == [1, 2, 3]

    run(main())


def test_conveyor_and_random_faults_never_print_a_record_twice() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16, rate_per_min=6000, faults="stop:0.05,seed=11")
        async with pair(sim) as d:
            pushed: list[str] = []
            seq = 0
            await d.start()
            for _ in range(40):
                st = await d.status()
                if st.state is not PrinterState.PRINTING:
                    await d.start()
                room = 16 - (st.fifo_depth or 0)
                batch = [Record(seq + i + 1, f"S{seq + i + 1}") for i in range(min(room, 4))]
                if batch:
                    seq += len(batch)
                    pushed += [r.text for r in batch]
                    with suppress(Nak):  # a stop between status and push: refused, out of sequence
                        await d.push(batch)
                await asyncio.sleep(0.01)
            assert len(sim.printed) == len(set(sim.printed))  # no duplicates, whatever was cleared
            assert set(sim.printed) <= set(pushed)
            assert sim.printed == sorted(sim.printed, key=lambda t: int(t[1:]))

    run(main())
