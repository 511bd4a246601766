"""The bugs the fuzz found, each replayed with its exact bytes and the outcome written out by hand.

Each row: the link, what the hostile device sends in place of the real device's answers (in order;
`Pass()` lets the simulator's own answer through), the calls made, and what must come out.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
import tty
from collections.abc import Callable

import pytest

from drivers.cameras.banner_export import BannerExportSettings, BannerImageExport
from drivers.cameras.base import CameraError, CameraState
from drivers.labels.link import LinkError
from drivers.labels.zpl import LabelPrinterError, ZplLabelPrinter
from drivers.plc import LinePlc, PlcError, PlcProtocolError, PlcSettings, Signal
from drivers.sim.banner_export import ImageExportServer
from drivers.sim.plc import PlcSim, example_map
from drivers.sim.zpl import ZplSimulator
from drivers.transport import MAX_BUFFERED, SerialTransport, TcpTransport, Transport
from tests.conftest import free_port
from tests.fuzz.coders import TARGETS
from tests.fuzz.harness import Bounded, run
from tests.fuzz.hostile import (
    Action,
    Flood,
    Hangup,
    HostileDevice,
    Insert,
    Overwrite,
    Pass,
    Reframe,
    Replace,
    Script,
    Truncate,
)
from tests.fuzz.test_camera import IMAGE, export_reframe
from tests.fuzz.test_coders import exercise
from tests.fuzz.test_labels import FIELDS, LABELS, hs_reframe
from tests.fuzz.test_modbus import mbap_reframe

CODERS = {t.name: t for t in TARGETS}

# ---- coders: a device that never stops sending ----------------------------------------------------
# Found: FramedPrinter.close() waited for ever on its reader task (Python 3.11's wait_for lost the
# cancellation while a read completed, and the reader looped while the transport was still attached),
# and the de-framer spent time quadratic in the chunk on garbage; the lock-step drivers' resync read
# "until quiet" and NGPCL's reply loop skipped filler bytes, both without end. Fixed: reads under
# asyncio.timeout, close() detaches first, a linear garbage scan, CoderLink.MAX_ANSWER.
FLOODS = [
    ("leibinger", "tcp", [Pass(), Flood(b"A")], ["status"]),
    ("generic+leibinger", "tcp", [Pass(), Flood(b"A")], ["status"]),
    ("generic+example_stx", "pty", [Pass(), Flood(b"\x02" + b"A" * 40)], ["status", "push"]),
    ("videojet_wsi", "tcp", [Pass(), Pass(), Pass(), Flood(b"A")], ["status", "status"]),
    ("videojet_wsi", "pty", [Pass(), Flood(b"\x02" + b"A" * 40)], ["status"]),  # a packet that never ends
    ("markem_ngpcl", "tcp", [Pass(), Pass(), Flood(b"A")], ["status"]),
    ("markem_ngpcl", "tcp", [Pass(), Pass(), Flood(b"\r\n")], ["status"]),  # filler NGPCL skips
    ("hitachi", "pty", [Pass(), Flood(b"\x05")], ["status", "push"]),  # ENQ: answered, for ever
]


@pytest.mark.parametrize(("target", "link", "script", "ops"), FLOODS,
                         ids=[f"{t}-{link}-{s[-1]!r}" for t, link, s, _ in FLOODS])
def test_an_endless_stream_ends_in_printer_errors_and_close_returns(target: str, link: str, script: list[Action],
                                                                    ops: list[str]) -> None:
    async def scenario() -> None:
        b = await exercise(CODERS[target], link, script, ops)  # raises on a hang or a foreign error
        for name in ("connect", *ops):  # each ended with a result or a PrinterError
            assert any(key.startswith(f"{name}: ") for key in b.outcomes), (name, b.outcomes)

    run(scenario())


# ---- the serial transport: memory stays bounded while nobody reads ------------------------------

def test_a_serial_flood_nobody_reads_is_held_back_not_buffered_without_end() -> None:
    """Found: the reader thread queued everything the port delivered; a device flooding a driver that
    only reads during its exchanges filled the memory at the link's speed. Now the thread stops reading
    at MAX_BUFFERED and the tty buffer fills, so the device cannot write much more than that."""

    async def scenario() -> int:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        transport = SerialTransport(os.ttyname(slave))
        await transport.open(2.0)
        written, block = 0, b"A" * 65536
        moved = time.monotonic()  # when a write last went through
        try:
            while written < 16 * MAX_BUFFERED and time.monotonic() - moved < 0.5:
                try:
                    written += os.write(master, block)
                    moved = time.monotonic()
                except BlockingIOError:
                    await asyncio.sleep(0.01)  # the port is full: only the driver reading would empty it
        finally:
            await transport.close()
            os.close(master)
            os.close(slave)
        return written

    written = asyncio.run(scenario())
    assert written < MAX_BUFFERED + 1024 * 1024, f"{written} bytes taken from the port and not read"


# ---- transports: a reader task under a steady stream can be cancelled --------------------------

@pytest.mark.parametrize("link", ["tcp", "pty"])
def test_a_read_loop_under_a_steady_stream_stops_when_cancelled(link: str) -> None:
    """Found: Python 3.11's asyncio.wait_for returns the result instead of raising CancelledError when
    the read completes in the same loop turn as the cancel (CPython gh-86296); under a stream that is
    nearly every time, so a driver's reader task could not be stopped."""

    async def scenario() -> None:
        stop = asyncio.Event()
        transport: Transport
        if link == "tcp":
            async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                while not stop.is_set():
                    w.write(b"A" * 4096)
                    await w.drain()
                w.close()

            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            transport = TcpTransport("127.0.0.1", server.sockets[0].getsockname()[1])
        else:
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)

            def pump() -> None:
                while not stop.is_set():
                    try:
                        os.write(master, b"A" * 4096)
                    except BlockingIOError:
                        time.sleep(0.001)
                    except OSError:
                        return

            threading.Thread(target=pump, daemon=True).start()
            transport = SerialTransport(os.ttyname(slave))
        await transport.open(2.0)

        async def reader() -> None:
            while True:
                await transport.read(1.0)

        try:
            for _ in range(20):  # each cancel must land: twenty chances for the race
                task = asyncio.create_task(reader())
                await asyncio.sleep(0.01)
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=5)
                assert done and task.cancelled(), "a cancelled read loop went on reading"
        finally:
            stop.set()
            await transport.close()
            if link == "tcp":
                server.close()
            else:
                os.close(master)
                os.close(slave)

    run(scenario())


# ---- the PLC: answers that do not fit the request ------------------------------------------------
# Reframe keeps the transaction and unit ids and the MBAP length right; the PDU is replaced by `pdu`.

def _pdu(pdu: bytes) -> Reframe:
    return Reframe((Truncate(0), Insert(0, pdu)))


PLC_ROWS: list[tuple[str, list[Action], Callable[[LinePlc], object]]] = [
    # Found: IndexError. Read input registers answered with byte count 0 and no registers.
    ("counter, byte count 0", [_pdu(b"\x04\x00")], lambda plc: plc.counter()),
    # Found: ValueError from zip(strict=True). The same short answer to a read of two neighbours.
    ("read_many, byte count 0", [_pdu(b"\x04\x00")],
     lambda plc: plc.read_many([Signal.COUNTER, Signal.REJECT_CONFIRM])),
    # Found: read coils answered with no bits at all.
    ("coil, byte count 0", [_pdu(b"\x01\x00")], lambda plc: plc.read(Signal.LINE_RUN)),
    # Found: taken as the counter (5). A write-register echo in answer to a read of input registers.
    ("counter, function 6 answers 4", [_pdu(b"\x06\x00\x00\x00\x05")], lambda plc: plc.counter()),
    # Found: taken as the counter (7). An answer with transaction id 0 (pymodbus skips the id check).
    ("counter, transaction id 0", [Replace(b"\x00\x00\x00\x00\x00\x05\x01\x04\x02\x00\x07")],
     lambda plc: plc.counter()),
    # Found: taken as done. The coil write's echo names coil 9, not coil 0 (line_run).
    ("run, echo of another coil", [_pdu(b"\x05\x00\x09\xff\x00")], lambda plc: plc.run_line(True)),
    # Found: taken as done. The register write's echo carries another value.
    ("reject, echo of another value", [_pdu(b"\x06\x00\x00\x00\x01")], lambda plc: plc.fire_reject(7)),
]


@pytest.mark.parametrize(("name", "script", "call"), PLC_ROWS, ids=[r[0] for r in PLC_ROWS])
def test_plc_answers_that_do_not_fit_the_request_are_protocol_errors(
        name: str, script: list[Action], call: Callable[[LinePlc], object]) -> None:
    async def scenario() -> None:
        sim = PlcSim(example_map(), port=free_port())
        await sim.start()
        device = HostileDevice(sim.port, Script(script, mbap_reframe))
        plc = LinePlc(PlcSettings.model_validate({"url": await device.serve_tcp(), "timeout_s": 0.5,
                                                  "registers": example_map()}))
        try:
            await plc.open()
            with pytest.raises(PlcProtocolError):
                await call(plc)  # type: ignore[misc]
            await plc.open()  # the device is honest now: the next read is the simulator's value
            assert await plc.counter() == sim.model.read(Signal.COUNTER)
        finally:
            await plc.close()
            await device.close()
            await sim.close()

    run(scenario())


def test_a_plc_protocol_error_is_a_plc_error() -> None:
    assert issubclass(PlcProtocolError, PlcError)


# ---- the label printer -----------------------------------------------------------------------------

HS_TAIL = b"\x02000,0,0,0,0,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n"
ZPL_ROWS: list[tuple[str, str, list[Action], str]] = [
    # Found: ValueError (int() of more than 4300 digits, Python's limit). String 1 field 5, formats waiting.
    ("count of 4400 digits", "tcp",
     [Replace(b"\x02030,0,0,0812," + b"9" * 4400 + b",0,0,0,000,0,0,0\x03\r\n" + HS_TAIL)], "formats waiting"),
    # Found: the whole stream kept in memory until the timeout. No ETX, ever.
    ("endless reply", "tcp", [Flood(b"A")], "no complete status reply"),
    # Found: pyserial's SerialException, or termios.error from the write's tcdrain, out of status().
    # The pty closed mid-reply.
    ("cut mid-reply", "pty", [Hangup(5)], "read failed|write failed|no status reply"),
]


@pytest.mark.parametrize(("name", "link", "script", "message"), ZPL_ROWS, ids=[r[0] for r in ZPL_ROWS])
def test_label_printer_status_faults_are_link_errors(name: str, link: str, script: list[Action],
                                                     message: str) -> None:
    async def scenario() -> None:
        sim = ZplSimulator()
        device = HostileDevice(await sim.serve_tcp(), Script(script, hs_reframe))
        url = await device.serve_tcp() if link == "tcp" else "serial://" + await device.serve_pty()
        printer = ZplLabelPrinter(ZplLabelPrinter.Settings(url=url, template=LABELS / "case.zpl", timeout_s=2.0))
        try:
            with pytest.raises(LinkError, match=message):
                await asyncio.wait_for(printer.status(), 10)
            if link == "tcp":  # the device is honest now: a label goes out after a good status
                assert (await printer.print_label(FIELDS)).startswith("^XA")
        finally:
            await printer.close()
            await device.close()
            await sim.close()

    run(scenario())


def test_the_bounded_harness_accepts_only_the_named_errors() -> None:
    """The fuzz's own judge: a foreign exception or a hang is a failure, a named error an outcome."""

    async def scenario() -> None:
        b = Bounded((LabelPrinterError,), "judge")

        async def foreign() -> None:
            raise ValueError("x")

        async def named() -> None:
            raise LabelPrinterError("y")

        assert await b.op("named", named) is None
        with pytest.raises(AssertionError, match="raised ValueError"):
            await b.op("foreign", foreign)
        assert b.outcomes == {"named: LabelPrinterError": 1}

    run(scenario())



# ---- the smart camera's image export -----------------------------------------------------------
# Found: cv2.error out of grab(). The image's own BMP header (BITMAPINFOHEADER, width and height int32
# at offset 18) claims more than OpenCV decodes; the export header around it is well formed.
CAMERA_ROWS = [("width 2^31-1", 2**31 - 1, 1), ("70000 x 70000", 70000, 70000)]


@pytest.mark.parametrize(("name", "width", "height"), CAMERA_ROWS, ids=[r[0] for r in CAMERA_ROWS])
def test_an_image_claiming_absurd_dimensions_is_a_camera_error(name: str, width: int, height: int) -> None:
    async def scenario() -> None:
        server = ImageExportServer()
        device = HostileDevice(await server.start(),
                               Script([Reframe((Overwrite(18, struct.pack("<ii", width, height)),))], export_reframe))
        camera = BannerImageExport(BannerExportSettings(url=await device.serve_tcp(), frame_timeout_s=2.0))
        try:
            await camera.open()
            for n in (1, 2):
                while (server.connections, server.clients) != (n, 1):  # the n-th stream, and only it
                    await asyncio.sleep(0.01)
                server.publish(n, IMAGE)
                if n == 1:
                    with pytest.raises(CameraError, match="does not decode"):
                        await camera.grab()
                    assert camera.state is CameraState.FAILED
                    await camera.close()
                    await camera.open()  # the station reopens a failed stream; the device is honest now
                else:
                    assert (await camera.grab()).index == 2
        finally:
            await camera.close()
            await device.close()
            await server.close()

    run(scenario())
