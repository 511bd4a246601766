"""Leibinger mailing mode beyond the shared contract: the public clients' own frames as byte tables, and
the driver against the simulator over a pty and TCP (panel stop, power loss, refusals, settle).

Byte tables come from public clients run on real coders (see drivers/printers/leibinger_codec.py):
jarrydjames-dev/leibinger serialine.py and manuals/src/technician_manual.html, ViciousInstitute/
LeibingerPrinter LeibingerAPI/Leibinger.cs and LeibingerStatus.cs, rizalgrandonk/node-coder
src/actions/leibinger.ts and its tests' status lines.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress

import pytest
from pydantic import ValidationError

from drivers.framing import Frame, FrameError
from drivers.printers.base import (
    BufferFull,
    DeviceTimeout,
    Fault,
    LinkDown,
    Nak,
    PrinterError,
    PrinterState,
    PrintEventKind,
    ProtocolError,
    Record,
)
from drivers.printers.fifo import CoderKind
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.printers.leibinger_codec import (
    Kind,
    LeibingerDeframer,
    Machine,
    Nozzle,
    job_frame,
    parse_reply,
    parse_rs,
    parse_sm,
    record_frame,
    wire,
)
from drivers.sim.leibinger import ERR_BUFFER_EMPTY, ERR_INK_LOW, ERR_OUT_OF_SEQUENCE, LeibingerSim
from tests.drivers.printers.random_answers import only_printer_errors

LINKS = ("pty", "tcp")


def frame(wire_bytes: bytes) -> bytes:
    items = LeibingerDeframer().feed(wire_bytes)
    assert len(items) == 1 and isinstance(items[0], Frame), items
    return items[0].payload


# --- byte tables from the public clients -----------------------------------------------------------

@pytest.mark.parametrize(("sent", "expected"), [
    (wire(Kind.QUERY, "RS"), b"^0?RS\r"),  # LeibingerStatus.cs statusCMD
    (wire(Kind.QUERY, "JL"), b"^0?JL\r"),  # currentJobCMD
    (wire(Kind.QUERY, "CC"), b"^0?CC\r"),  # currentCountCMD
    (wire(Kind.QUERY, "SM"), b"^0?SM\r"),  # node-coder checkMailingStatus (it ends frames CR LF)
    (wire(Kind.ACTION, "GO"), b"^0!GO\r"),  # Leibinger.cs printReadyCMD
    (wire(Kind.ACTION, "ST"), b"^0!ST\r"),  # stopPrintReadyCMD
    (wire(Kind.ACTION, "FF"), b"^0!FF\r"),  # flushBufferCMD
    (wire(Kind.ACTION, "EQ"), b"^0!EQ\r"),  # LeibingerStatus.cs clearErrorCMD
    (wire(Kind.SET, "CM", b"12000"), b"^0=CM12000\r"),  # serialine.py f"=CM{len(serials)}"
    (wire(Kind.SET, "CC", b"0", b"0", b"0"), b"^0=CC0\t0\t0\r"),  # node-coder resetCounter
    (record_frame(1, b"TEST0001"), b"^0=MR1\tTEST0001\r"),  # serialine.py send_mail_record
    (record_frame(7, b"A^B\\C"), b"^0=MR7\tA\\^B\\\\C\r"),  # serialine.py escape_field
    (job_frame(b"NBBS.job"), b"^0=JL\\FFSDISK\\JOBS\\NBBS.job\r"),  # Leibinger.cs LoadJob
])
def test_request_bytes(sent: bytes, expected: bytes) -> None:
    assert sent == expected


def test_the_capture_while_printing() -> None:
    rs = parse_rs(parse_reply(frame(b"^0=RS2\t6\t0\t0\t80\t0\r")))
    assert (rs.nozzle, rs.machine, rs.error, rs.cover, rs.speed) == (Nozzle.OPEN, Machine.PRINTING, 0, 0, 80)
    assert rs.printing


@pytest.mark.parametrize(("line", "nozzle", "machine", "error", "flags"), [
    (b"^0=RS2\t6\t1476405210\t0\t80\t0\r", 2, 6, 10202, 0x2C),  # node-coder: "Battery Low" while printing
    (b"^0=RS2\t5\t0\t0\t80\t0\r", 2, 5, 0, 0),  # ready for print start
    (b"^0=RS1\t4\t0\t0\t80\t0\r", 1, 4, 0, 0),  # nozzle opening, ready for action
    (b"^0=RS4\t1\t0\t0\t303\r", 4, 1, 0, 0),  # LeibingerStatus.cs example (five fields)
])
def test_run_status_fields(line: bytes, nozzle: int, machine: int, error: int, flags: int) -> None:
    rs = parse_rs(parse_reply(frame(line)))
    assert (rs.nozzle, rs.machine, rs.error, rs.error_flags) == (nozzle, machine, error, flags)


@pytest.mark.parametrize(("line", "fields"), [
    (b"^0=SM256\t0\t3\t0\t1\t21\r", (256, 0, 3, 0, 1, 21)),  # node-coder leibinger.test.ts
    (b"^0=SM256\t56\t0\t0\t0\t0\r", (256, 56, 0, 0, 0, 0)),  # printerThread.test.ts
    (b"^0=SM256\t0\t0\r", (256, 0, 0, None, None, None)),  # the three fields serialine.py needs
])
def test_mail_status_fields(line: bytes, fields: tuple[int | None, ...]) -> None:
    sm = parse_sm(parse_reply(frame(line)))
    assert (sm.depth, sm.entries, sm.last_started, sm.stop_at, sm.finished, sm.printgos) == fields


def test_job_reply_keeps_bare_backslashes_and_line_feeds_are_skipped() -> None:
    items = LeibingerDeframer().feed(b"^0=JL\\FFSDISK\\JOBS\\CLIENT_JOB.job\r\n^0=RS2\t5\t0\t0\t80\t0\r\n")
    payloads = [i.payload for i in items if isinstance(i, Frame)]
    assert payloads == [b"=JL\\FFSDISK\\JOBS\\CLIENT_JOB.job", b"=RS2\t5\t0\t0\t80\t0"]
    assert frame(b"^0=ETA\\^B\\\\\r") == b"=ETA^B\\"


def test_random_bytes_give_typed_errors_only() -> None:
    rng = random.Random(9)
    for _ in range(500):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        for item in LeibingerDeframer().feed(b"^0" + data + b"\r"):
            assert isinstance(item, Frame | FrameError)
            if isinstance(item, Frame):
                with suppress(ProtocolError):
                    reply = parse_reply(item.payload)
                    with suppress(ProtocolError):
                        parse_rs(reply)
                    with suppress(ProtocolError):
                        parse_sm(reply)


@pytest.mark.parametrize("answer", [
    b"^0=RS\r", b"^0=RSx\ty\r", b"^0=SM256\r", b"^0=SM\t\t\r", b"\x00\xff^0\r", b"^0!ER\t1019\r",
    bytes(random.Random(3).randrange(256) for _ in range(64)),
])
def test_a_device_answering_nonsense_gives_printer_errors(answer: bytes) -> None:
    only_printer_errors(lambda url: Leibinger(LeibingerSettings(url=url, timeout_s=0.1, retries=0,
                                                                confirm_s=0.2)), answer)


def test_settings_refuse_a_wrap_inside_the_ring() -> None:
    with pytest.raises(ValidationError):
        LeibingerSettings(url="loop://", capacity=16, wrap_index=10)


# --- driver against the simulator ------------------------------------------------------------------

def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


@asynccontextmanager
async def pair(sim: LeibingerSim, link: str, **settings: object) -> AsyncIterator[Leibinger]:
    url = await sim.serve_pty() if link == "pty" else f"tcp://127.0.0.1:{await sim.serve_tcp(0)}"
    driver = Leibinger(LeibingerSettings(url=url, capacity=sim.capacity, timeout_s=0.2, retries=1,
                                         confirm_s=0.5, reconnect_max_s=0.3, **settings))  # type: ignore[arg-type]
    try:
        await driver.connect()
        yield driver
    finally:
        await driver.close()
        await sim.close()


def recs(first: int, n: int) -> list[Record]:
    return [Record(s, f"C{s}") for s in range(first, first + n)]


def test_capabilities_say_indexed_fifo_filled_to_capacity_minus_one() -> None:
    d = Leibinger(LeibingerSettings(url="loop://", capacity=256, check_double_prints=True))
    caps = d.capabilities
    assert (caps.kind, caps.fifo_capacity, caps.indexed, caps.proves_flush) == (CoderKind.INDEXED_FIFO, 255, True, True)
    assert caps.double_print_guard
    assert not Leibinger(LeibingerSettings(url="loop://")).capabilities.double_print_guard


@pytest.mark.parametrize("link", LINKS)
def test_printing_is_state_6_and_no_echo_is_enabled_or_needed(link: str) -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim, link) as d:
            await d.push(recs(1, 4))
            await d.start()
            st = await d.status()
            assert st.state is PrinterState.PRINTING and not st.faults
            sim.trigger(3)
            st = await d.status()
            assert (st.last_printed, st.fifo_depth, st.print_count, st.fifo_lost) == (3, 1, 3, False)
            assert not sim.echo  # the driver never sent !EM
            sim.echo = True  # echoes switched on by somebody else are dropped, not taken for answers
            await d.push(recs(5, 3))
            sim.trigger(2)
            assert (await d.status()).last_printed == 5
            assert sim.printed == ["C1", "C2", "C3", "C4", "C5"]

    run(main())


@pytest.mark.parametrize("link", LINKS)
def test_a_stop_at_the_panel_puts_what_was_waiting_in_doubt(link: str) -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim, link) as d:
            await d.push(recs(1, 6))
            await d.start()
            sim.trigger(2)
            sim.stop_printing()  # at the coder's panel: the mailing data is cleared
            st = await d.status()
            assert (st.state, st.last_printed, st.fifo_lost, st.fifo_depth) == (PrinterState.IDLE, 2, True, 0)
            lost = [e for e in d.pending_events() if e.kind is PrintEventKind.FIFO_LOST]
            assert lost and "4 records in doubt" in lost[-1].detail
            settled = await d.settle()  # nothing left to prove: the stop was not ours
            assert not settled.fates and settled.status.last_printed == 2
            await d.push(recs(7, 2))  # flushed first, then numbering goes on
            await d.start()
            sim.trigger(2)
            assert (await d.status()).last_printed == 8
            assert sim.printed == ["C1", "C2", "C7", "C8"]

    run(main())


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("n", [1, 4])
def test_records_pushed_after_a_dry_stop_are_held_and_print_at_the_next_start(link: str, n: int) -> None:
    """A 5043 stop (a PrintGo found the FIFO empty) clears nothing; records pushed after it wait for
    the next start (serialine.py primes a stopped coder). They were put in doubt, printed anyway, and
    replaced: a 120-item job printed up to 138 items under load."""
    async def main() -> None:
        sim = LeibingerSim(capacity=16)  # <Check Double Prints> on: a dry PrintGo prints nothing
        async with pair(sim, link) as d:
            await d.push(recs(1, 2))
            await d.start()
            assert (await d.status()).state is PrinterState.PRINTING  # the driver's last look: printing
            assert sim.trigger(3) == 2 and not sim.running  # the third product: error 5043, stopped
            await d.push(recs(3, n))  # to the stopped coder, before the driver has looked again
            st = await d.status()
            assert (st.state, st.faults) == (PrinterState.FAULT, {Fault.BUFFER_EMPTY})
            assert (st.last_printed, st.fifo_lost, st.fifo_depth) == (2, False, n)
            assert not [e for e in d.pending_events() if e.kind is PrintEventKind.FIFO_LOST]
            sim.start_printing()  # the operator restarts it at the panel
            assert sim.trigger(n) == n
            assert (await d.status()).last_printed == 2 + n
            assert sim.printed == [f"C{s}" for s in range(1, 3 + n)]

    run(main())


@pytest.mark.parametrize("link", LINKS)
def test_settle_flushes_and_proves_all_but_the_record_loaded_for_the_next_print(link: str) -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16, flush_keeps_next=True)  # the pessimistic reading
        async with pair(sim, link) as d:
            await d.push(recs(1, 6))
            await d.start()
            sim.trigger(2)
            settled = await d.settle()
            assert settled.status.state is PrinterState.PRINTING  # a flush does not stop printing
            assert settled.status.last_printed == 2
            assert settled.fates.flushed == (5, 6)  # seq 3 (or 4, had 3 been lost) may still print
            sim.trigger(1)
            assert sim.printed[-1] == "C3"  # and it did
            await d.push(recs(7, 2))
            sim.trigger(2)
            st = await d.status()
            assert (st.last_printed, st.fifo_lost) == (8, False)  # C3 printing was no false alarm

    run(main())


def test_settle_proves_every_record_when_the_flush_clears_the_loaded_one_too() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16, flush_keeps_next=False, check_double_prints=False)
        async with pair(sim, "tcp", flush_clears_next=True) as d:
            await d.push(recs(1, 5))
            await d.start()
            sim.trigger(1)
            settled = await d.settle()
            assert (settled.status.last_printed, settled.fates.flushed) == (1, (2, 3, 4, 5))  # all proven
            sim.trigger(1)  # nothing left: error 5043, printing stops
            st = await d.status()
            assert st.state is PrinterState.FAULT and Fault.BUFFER_EMPTY in st.faults
            assert sim.printed == ["C1", "C1"]  # check double prints off: the display buffer again
            assert sim.repeats == 1

    run(main())


@pytest.mark.parametrize("link", LINKS)
def test_power_loss_puts_the_fifo_in_doubt_and_the_line_resumes(link: str) -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim, link) as d:
            await d.push(recs(1, 6))
            await d.start()
            sim.trigger(2)
            assert (await d.status()).last_printed == 2
            await sim.power_off()
            with pytest.raises(LinkDown):
                for _ in range(20):
                    with suppress(DeviceTimeout):
                        await d.status()
            await sim.power_on()
            for _ in range(200):
                with suppress(LinkDown, DeviceTimeout):
                    st = await d.status()
                    break
                await asyncio.sleep(0.02)
            assert (st.fifo_lost, st.last_printed, st.fifo_depth) == (True, 2, 0)
            await d.push(recs(7, 2))
            await d.start()
            sim.trigger(2)
            assert (await d.status()).last_printed == 8
            assert sim.printed == ["C1", "C2", "C7", "C8"]

    run(main())


def test_a_refused_record_raises_and_is_settled_by_the_next_flush() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16, flush_keeps_next=True)
        async with pair(sim, "tcp") as d:
            await d.push(recs(1, 2))
            sim.expected = 99  # the coder wants another index: =MR for seq 3 is out of sequence
            with pytest.raises(Nak, match=str(ERR_OUT_OF_SEQUENCE)):
                await d.push(recs(3, 1))
            st = await d.status()
            assert not st.faults and st.fifo_lost  # acknowledged; what the coder kept is in doubt
            assert not (await d.settle()).fates  # nothing left to prove
            await d.push(recs(4, 2))  # the coder takes any index after a flush
            await d.start()
            sim.trigger(3)
            st = await d.status()
            assert st.last_printed == 5 and sim.printed == ["C1", "C4", "C5"]

    run(main())


def test_a_full_fifo_is_refused_before_anything_is_sent() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=8)
        async with pair(sim, "pty") as d:
            await d.push(recs(1, 7))
            with pytest.raises(BufferFull):
                await d.push(recs(8, 1))
            assert len(sim.fifo) == 7

    run(main())


def test_errors_are_masked_and_mapped() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        faults = {ERR_INK_LOW: Fault.INK_LOW, ERR_BUFFER_EMPTY: Fault.BUFFER_EMPTY}
        async with pair(sim, "tcp", error_faults=faults) as d:
            await d.start()
            sim.faults.add(Fault.INK_LOW)
            st = await d.status()
            assert st.state is PrinterState.PRINTING and st.faults == {Fault.INK_LOW}
            assert "error 2001 (flags 0x4)" in st.detail  # bit 27 set by the simulator, masked off
            sim.faults.clear()
            sim.trigger(1)  # nothing to print: 5043 stops printing
            st = await d.status()
            assert (st.state, st.faults) == (PrinterState.FAULT, {Fault.BUFFER_EMPTY})
            await d.clear_fault()
            await d.start()

    run(main())


def test_job_load_sends_the_path_as_public_clients_do() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)
        async with pair(sim, "pty", job="NBBS.job") as d:
            assert sim.job == "NBBS.job"
            await d.select_job("DEFEND.job")
            assert sim.job == "DEFEND.job"
            with pytest.raises(PrinterError):
                await d.select_job("BAD\\NAME")

    run(main())


def test_records_left_by_an_earlier_session_never_count_as_ours() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16, flush_keeps_next=True)
        sim.store("OLD1", 41)
        sim.store("OLD2", 42)
        sim.last_tag = 40
        async with pair(sim, "tcp") as d:
            st = await d.status()
            assert st.fifo_lost and st.fifo_depth == 0
            await d.push(recs(1, 2))
            await d.start()
            sim.trigger(3)  # OLD1 was loaded for the next print and survives the flush
            st = await d.status()
            assert sim.printed == ["OLD1", "C1", "C2"] and st.last_printed == 2

    run(main())


def test_with_check_double_prints_on_an_empty_fifo_prints_nothing_and_stops() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=16)  # the option on (the simulator's default)
        async with pair(sim, "pty", check_double_prints=True) as d:
            assert d.capabilities.double_print_guard
            await d.push(recs(1, 1))
            await d.start()
            assert sim.trigger(2) == 1
            st = await d.status()
            assert (st.state, st.faults, st.last_printed) == (PrinterState.FAULT, {Fault.BUFFER_EMPTY}, 1)
            assert sim.printed == ["C1"] and sim.repeats == 0

    run(main())
