"""The Hitachi driver against its simulator (drivers/sim/hitachi.py) over a pty and TCP: prints, the off-line
repeat (RX manual rev D 5.9.2 example 3), clear/restart rules (5.9.3-2), refusals, outages, unsolicited
status and random answers. Byte tables and the simulator's own answers are in test_hitachi.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from drivers.printers.base import (
    BadRecord,
    BufferFull,
    DeviceTimeout,
    Fault,
    LinkDown,
    Nak,
    PrinterError,
    PrinterState,
    PrintEvent,
    PrintEventKind,
    ProtocolError,
    Record,
)
from drivers.printers.fifo import CoderKind
from drivers.printers.hitachi import HitachiBuffer, HitachiSettings
from drivers.printers.hitachi_codec import STATUS_QUERY, Bcc, Model, frame, print_contents
from drivers.sim.faults import SimFault
from drivers.sim.hitachi import HitachiSim
from tests.drivers.printers.random_answers import only_printer_errors

ENQ, ACK = b"\x05", b"\x06"


# ---- the driver against the simulator ----------------------------------------------------------
LINKS = ("pty", "tcp")
FAST = {"timeout_s": 0.3, "retries": 1, "restart_settle_s": 0.05}


@asynccontextmanager
async def linked(link: str, sim_kw: dict[str, Any] | None = None,
                 **drv_kw: Any) -> AsyncIterator[tuple[HitachiBuffer, HitachiSim]]:
    s = HitachiSim(**{"restart_delay_s": 0.05, **(sim_kw or {})})
    url = await s.serve_pty() if link == "pty" else f"tcp://127.0.0.1:{await s.serve_tcp(0)}"
    driver = HitachiBuffer(HitachiSettings(url=url, **{**FAST, **drv_kw}))
    try:
        await driver.connect()
        yield driver, s
    finally:
        await driver.close()
        await s.close()


async def drain(driver: HitachiBuffer) -> list[PrintEvent]:
    events = aiter(driver.events())
    out: list[PrintEvent] = []
    with contextlib.suppress(TimeoutError):
        while True:
            out.append(await asyncio.wait_for(anext(events), 0.05))
    return out


def run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def recs(first: int, n: int) -> list[Record]:
    return [Record(i, f"LOT7-{i:06d}") for i in range(first, first + n)]


@pytest.mark.parametrize("link", LINKS)
def test_capabilities_identity_status_and_prints(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (d, s):
            caps = d.capabilities
            assert (caps.kind, caps.counters, caps.print_complete_events, caps.proves_flush, caps.status) == (
                CoderKind.COUNTED_FIFO, False, False, False, True)
            assert (await d.identity())["protocol"] == "hitachi-buffer"
            st = await d.status()
            assert (st.state, st.fifo_depth, st.last_printed, st.fifo_lost) == (PrinterState.IDLE, None, None, False)
            await d.push(recs(1, 5))
            await d.start()
            assert s.trigger(3) == 3
            assert s.printed == [r.text for r in recs(1, 3)]
            assert (await d.status()).state is PrinterState.PRINTING
            s.stop_printing()  # a stop at the panel (standby) keeps the buffer
            assert (await d.status()).state is PrinterState.IDLE
            await d.start()
            assert s.trigger(3) == 2 and s.printed[3:] == [r.text for r in recs(4, 2)]
            assert (await d.status()).faults == {Fault.BUFFER_EMPTY}
            await d.clear_fault()
            assert (await d.status()).state is PrinterState.IDLE
            await d.push(recs(6, 2))
            await d.stop()  # the driver's stop also clears the buffer: nothing left to land later
            assert (await d.status()).fifo_lost
            assert PrintEventKind.FIFO_LOST in [e.kind for e in await drain(d)]
            await d.start()
            assert s.trigger(1) == 0 and len(s.printed) == 5

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_offline_repeat_is_a_fifo_loss_and_a_latched_fault(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (d, s):
            await d.push(recs(1, 4))
            await d.start()
            s.trigger(1)
            s.hitachi.go_offline()  # Comm Off at the panel: the coder repeats record 2 (example 3)
            s.trigger(2)  # before any poll can see it: only the line stop (a fault) limits this
            assert s.printed == ["LOT7-000001", "LOT7-000002", "LOT7-000002"]
            st = await d.status()
            assert (st.state, st.fifo_lost, Fault.OTHER in st.faults) == (PrinterState.FAULT, True, True)
            kinds = [e.kind for e in await drain(d)]
            assert PrintEventKind.FIFO_LOST in kinds and PrintEventKind.FAULT in kinds
            with pytest.raises(Nak, match="off-line"):
                await d.push(recs(5, 1))
            s.hitachi.go_online()
            assert (await d.status()).state is PrinterState.FAULT  # still latched: standard mode
            s.trigger(2)
            assert s.printed[-2:] == ["", ""]  # the driver erased the code: no third copy of record 2
            with pytest.raises(Nak):
                await d.start()
            s.hitachi.rearm()  # the technician sets the buffer function up again
            s.stop_printing()
            await d.clear_fault()
            await d.push(recs(10, 2))
            await d.start()
            s.trigger(2)
            assert s.printed[-2:] == [r.text for r in recs(10, 2)]
            assert [t for t in s.printed if t].count("LOT7-000002") == 2  # no third copy

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_full_buffer_and_offline_refusals(link: str) -> None:
    async def go() -> None:
        async with linked(link, {"capacity": 3}) as (d, s):
            await d.push(recs(1, 3))
            with pytest.raises(BufferFull):
                await d.push(recs(4, 1))
            s.inject(SimFault.BUFFER_FULL)
            await d.start()
            s.trigger(1)
            with pytest.raises(BufferFull):
                await d.push(recs(4, 1))
            await d.push(recs(5, 1))
            with pytest.raises(BadRecord):
                await d.push([Record(9, "Ä")])

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_a_coder_left_overwrite_protected_is_named(link: str) -> None:
    async def go() -> None:
        async with linked(link, {"overwrite_enabled": False}) as (d, _sim):
            await d.push(recs(1, 1))
            with pytest.raises(BufferFull, match="overwrite-enabled"):  # 5.5.1 (1): ENQ now answered NAK
                await d.push(recs(2, 1))

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_clear_only_while_not_printing_and_restart_settles(link: str) -> None:
    async def go() -> None:
        async with linked(link, {"restart_delay_s": 0.2}, restart_settle_s=0.2) as (d, s):
            await d.push(recs(1, 3))
            await d.start()
            with pytest.raises(Nak, match="not printing"):
                await d.clear_fifo()
            s.stop_printing()
            settled = await d.settle()  # clear buffer, then restart at once (N = 0)
            assert settled.fates.unknown == (1, 2, 3) and not settled.fates.flushed
            assert settled.status.fifo_lost
            await d.push(recs(4, 2))
            await d.start()  # returns only 200 ms after the restart's ACK
            assert s.trigger(2) == 2 and s.printed == [r.text for r in recs(4, 2)]

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_restart_too_early_is_the_coders_timing_fault(link: str) -> None:
    async def go() -> None:
        async with linked(link, {"restart_delay_s": 30.0}, restart_settle_s=0.0) as (d, s):
            await d.clear_fifo()
            await d.push(recs(1, 1))
            await d.start()
            assert s.trigger(1) == 0
            assert (await d.status()).state is PrinterState.FAULT

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_job_call_up_bcc_and_no_enq(link: str) -> None:
    async def go() -> None:
        async with linked(link, {"bcc": True}, bcc=Bcc.XOR, use_enq=False) as (d, s):
            await d.select_job("12")
            assert s.job == "12"
            with pytest.raises(Nak, match=r"1\.\.2000"):
                await d.select_job("JOB-42")
            await d.push(recs(1, 2))
            with pytest.raises(Nak, match=r"5\.9\.3-3"):
                await d.select_job("13")
            await d.start()
            assert s.trigger(2) == 2

    run(go())


@pytest.mark.parametrize(("link", "fitted"), [("pty", True), ("tcp", True), ("pty", False), ("tcp", False)])
def test_without_the_status_query_dc2_tells_off_line(link: str, fitted: bool) -> None:
    """`status_query: false`, or a coder that does not answer ESC # (no option SOP-04) in the default."""

    async def go() -> None:
        async with linked(link, {"answers_status": fitted}, status_query=False if fitted else None) as (d, s):
            assert not d.capabilities.status
            await d.push(recs(1, 2))
            await d.start()
            assert (await d.status()).state is PrinterState.PRINTING and s.trigger(2) == 2
            s.hitachi.go_offline()
            st = await d.status()  # DC2 answered NAK (5.4.1)
            assert (st.state, st.fifo_lost) == (PrinterState.FAULT, True)

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_esc_headers_of_older_models(link: str) -> None:
    async def go() -> None:
        async with linked(link, model=Model.PX, legacy_restart_header=0x77) as (d, s):
            assert (await d.identity())["clock"]
            await d.clear_fifo()  # STX ESC 2DH ETX, then STX ESC 77H ETX as the RX manual lists them
            await d.push(recs(1, 1))  # PX: 10 characters per item, items 1 and 2
            await d.start()
            assert s.trigger(1) == 1 and s.printed == ["LOT7-000001"]
            with pytest.raises(Nak, match="not settled"):
                await d.select_job("12")

    run(go())


@pytest.mark.parametrize("link", LINKS)
def test_garbage_silence_and_power_loss(link: str) -> None:
    async def go() -> None:
        async with linked(link) as (d, s):
            s.inject(SimFault.GARBAGE, count=2)
            with pytest.raises(ProtocolError):
                await d.status()
            s.inject(SimFault.SILENCE, count=2)
            with pytest.raises(DeviceTimeout):
                await d.status()
            await d.push(recs(1, 4))
            s.inject(SimFault.INK_LOW)
            st = await d.status()
            assert (st.state, st.faults) == (PrinterState.IDLE, {Fault.INK_LOW})
            await s.power_off()
            with pytest.raises(LinkDown):
                for _ in range(10):
                    with contextlib.suppress(DeviceTimeout):
                        await d.status()
            await s.power_on()  # off-line at power-up (5.2.1 default), buffer empty
            for _ in range(200):
                with contextlib.suppress(LinkDown, DeviceTimeout):
                    st = await d.status()
                    break
                await asyncio.sleep(0.02)
            assert (st.state, st.fifo_lost) == (PrinterState.FAULT, True)
            kinds = {e.kind for e in await drain(d)}
            assert {PrintEventKind.LINK_DOWN, PrintEventKind.LINK_UP, PrintEventKind.FIFO_LOST} <= kinds
            with pytest.raises(Nak, match="off-line"):
                await d.clear_fault()

    run(go())


@pytest.mark.parametrize("after", [False, True], ids=["before-the-ack", "after-the-ack"])
def test_an_unsolicited_offline_status_latches_the_fault(after: bool) -> None:
    """SOP-04 printers also send their status unprompted (C# ProcessUnsolicited); the driver ACKs it."""
    off = b"\x0210110\x03"  # '1', off-line, reception, standby, no alarm

    async def go() -> None:
        seen = bytearray()

        async def coder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            rx = bytearray()
            while data := await reader.read(4096):
                seen.extend(data)
                rx += data
                while rx:
                    if rx.startswith(STATUS_QUERY):
                        writer.write(b"\x0211110\x03")
                        del rx[:2]
                    elif rx.startswith(b"\x02") and b"\x03" in rx:
                        writer.write(ACK + off if after else ACK)
                        del rx[: rx.index(b"\x03") + 1]
                    elif rx.startswith(b"\x02"):
                        break
                    else:
                        if rx[:1] == ENQ:
                            writer.write(ACK if after else off + ACK)
                        del rx[:1]  # the host's ACKs to our status

        server = await asyncio.start_server(coder, "127.0.0.1", 0)
        d = HitachiBuffer(HitachiSettings(url=f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}", **FAST))
        try:
            await d.connect()
            with pytest.raises(Nak, match="off-line"):
                await d.push(recs(1, 2))
            for _ in range(100):  # the driver's ACK is on its way to our fake coder
                if seen.endswith(ACK):
                    break
                await asyncio.sleep(0.01)
            one = frame(print_contents([(1, "LOT7-000001")]))
            # the status acknowledged; no data set sent once the coder is known off-line
            assert seen == STATUS_QUERY + (ENQ + one + ACK if after else ENQ + ACK)
            assert (await d.status()).state is PrinterState.FAULT
        finally:
            await d.close()
            server.close()

    run(go())


@pytest.mark.parametrize("answer", [b"\x41", b"\x06\x06", b"\x02garbage", b"\x021\x03", b"\xff" * 9, b"\x15",
                                    b"\x05", b"\x0211120", b"\x06\x0211120\x03", b"\x06\x02\x03"])
def test_random_answers_raise_only_printer_errors(answer: bytes) -> None:
    only_printer_errors(lambda url: HitachiBuffer(HitachiSettings(url=url, timeout_s=0.1, retries=0)), answer)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wire_faults_never_print_a_code_twice(seed: int) -> None:
    """Seeded wire faults on every request; a record whose push failed is never sent again (it is in
    doubt, as the feeder does). Everything the coder acknowledged prints once, in order; nothing else."""

    async def go() -> None:
        spec = f"nak:0.05,garbage:0.05,silence:0.03,buffer_full:0.05,seed={seed}"
        async with linked("tcp", {"faults": spec}, timeout_s=0.1, link_down_after=50) as (d, s):
            acked: list[str] = []
            for _ in range(20):  # start() itself may meet a fault
                with contextlib.suppress(PrinterError):
                    await d.start()
                    break
            for r in recs(1, 120):
                try:
                    await d.push([r])
                    acked.append(r.text)
                except PrinterError:
                    pass  # in doubt: never sent again
                if r.seq % 4 == 0:  # products pass, never more than are queued (an empty buffer faults)
                    s.trigger(min(2, len(acked) - len(s.printed)))
            s.plan.rates.clear()
            s.trigger(len(acked) - len(s.printed))
            assert s.printed[: len(acked)] == acked and len(set(s.printed)) == len(s.printed)
            assert len(s.printed) == len(acked)

    run(go())
