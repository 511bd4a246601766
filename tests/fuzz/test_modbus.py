"""The Modbus links (the line PLC, the Modbus marker) against hostile Modbus TCP answers.

Between the agent's adapter (drivers/plc/bus.py on pymodbus 3.16) and a real pymodbus server running
the PLC or marker simulator, the hostile device corrupts answers: random MBAP headers, wrong
transaction ids, lengths that lie, wrong function codes, exception codes, truncated or stretched PDUs
(re-framed with a correct MBAP length: a well-formed frame whose content lies), floods, cut links and
silence. Every PLC call must end with a value or a PlcError subclass; every marker call with a
result or a PrinterError; nothing may hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusException

from drivers.plc import LinePlc, PlcError, PlcSettings, Signal
from drivers.printers.base import PrinterError, Record
from drivers.printers.modbus_marker import ModbusMarker, ModbusMarkerSettings
from drivers.sim.modbus_marker import ModbusMarkerSim
from drivers.sim.plc import PlcSim, example_map
from tests.conftest import free_port
from tests.fuzz.harness import Bounded, run
from tests.fuzz.hostile import Action, Edit, HostileDevice, Insert, Overwrite, Script, Truncate
from tests.fuzz.strategies import budget, edits, scripts

MBAP = 7  # transaction id, protocol id, length, unit id (Modbus Messaging on TCP/IP Implementation Guide V1.0b 3.1.3)


def mbap_reframe(chunk: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """Edit each response's PDU and rewrite its MBAP length to match: the frame is well formed, the
    content hostile. A tail too short to be a frame passes as it is."""
    out, i = bytearray(), 0
    while i + MBAP <= len(chunk):
        length = int.from_bytes(chunk[i + 4 : i + 6], "big")
        pdu = chunk[i + MBAP : i + 6 + length]
        new = edit(pdu)[:253]  # a PDU is at most 253 bytes (Modbus Application Protocol V1.1b3 4.1)
        out += chunk[i : i + 4] + (len(new) + 1).to_bytes(2, "big") + chunk[i + 6 : i + MBAP] + new
        i += 6 + max(length, 1)
    return bytes(out + chunk[i:])


def _responses() -> list[bytes]:
    """Whole hostile responses (the transaction id of the request is unknown to them: they also test
    a reply to nobody): exceptions, wrong function codes, byte counts that lie, empty PDUs."""
    out = []
    for tid in (0, 1, 0xFFFF):
        for pdu in (b"\x81\x02", b"\x83\x04", b"\x84\xff", b"\x03\x02\x00", b"\x03\xff" + b"\x00" * 10, b"\x04\x00",
                    b"\x01\x01", b"\x01\x00", b"\x05", b"\x06\x00\x01", b"\x10\x00\x00\x00\x00", b"\x2b", b""):
            out.append(tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + b"\x01" + pdu)
    out.append(b"\x00\x01\x00\x00\xff\xff\x01\x03")  # a length of 65535 and a PDU that never comes
    out.append(b"\x00\x01\x00\x07\x00\x03\x01\x03\x00")  # protocol id 7, not Modbus
    return out


RESPONSES = _responses()
# PDU edits that know the fields: function code (another read or write, an exception), the byte count
# (a lie, 0), the values cut short or stretched.
FUNCTION = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x2B, 0x81, 0x83, 0x84, 0x90, 0xFF])
PDU_EDITS: st.SearchStrategy[tuple[Edit, ...]] = st.lists(st.one_of(
    FUNCTION.map(lambda fc: Overwrite(0, bytes([fc]))),
    st.sampled_from([0, 1, 0xFF]).map(lambda n: Overwrite(1, bytes([n]))),
    st.integers(0, 5).map(Truncate),
    st.builds(Insert, st.integers(1, 9), st.binary(min_size=1, max_size=4)),
), min_size=1, max_size=3).map(tuple) | edits()


def pymodbus_drops_the_link(context: dict[str, Any]) -> bool:
    """pymodbus 3.16 raises ModbusIOException out of its protocol's data_received for a frame it cannot
    decode (framer/base.py handleFrame); asyncio then closes the connection and logs the error itself
    (pymodbus issues #1545, #2151). Our adapter never sees the exception: it sees the link gone, which
    these tests check it reports as a PlcError and recovers from (a reconnect)."""
    return isinstance(context.get("exception"), ModbusException) and "data_received" in str(context.get("message"))
PLC_OPS = ["counter", "confirmed", "read_many", "run", "reject", "lights", "heartbeat", "probe"]


async def plc_scenario(actions: list[Action], ops: list[str]) -> None:
    sim = PlcSim(example_map(), port=free_port())
    await sim.start()
    device = HostileDevice(sim.port, Script(actions, mbap_reframe))
    url = await device.serve_tcp()
    plc = LinePlc(PlcSettings.model_validate({"url": url, "timeout_s": 0.1, "registers": example_map()}))
    b = Bounded((PlcError,), "PLC", tolerated=pymodbus_drops_the_link)
    b.watch_loop()
    calls: dict[str, Callable[[], object]] = {
        "counter": plc.counter, "confirmed": plc.confirmed, "probe": plc.probe, "heartbeat": plc.heartbeat,
        "read_many": lambda: plc.read_many([Signal.COUNTER, Signal.REJECT_CONFIRM, Signal.LINE_RUN]),
        "run": lambda: plc.run_line(True), "reject": lambda: plc.fire_reject(70000),
        "lights": lambda: plc.lights(green=True, amber=False, red=True),
    }
    try:
        for name in ops:
            await b.op("open", plc.open)  # the agent re-opens a bus that dropped, as the station does
            value = await b.op(name, calls[name])  # type: ignore[arg-type]
            if name in ("counter", "confirmed"):
                assert value is None or (isinstance(value, int) and 0 <= value <= 0xFFFF), value
        # The device turns honest: a re-opened bus answers again (nothing stuck in the adapter).
        device.script.used = len(actions)
        await b.quiet("close", plc.close)
        await plc.open()
        assert await plc.counter() == sim.model.read(Signal.COUNTER)
    finally:
        await b.quiet("close", plc.close)
        await device.close()
        await sim.close()
    b.check_loop()


@budget(8)
@given(actions=scripts(extra=RESPONSES, max_size=8, fields=PDU_EDITS),
       ops=st.lists(st.sampled_from(PLC_OPS), min_size=1, max_size=6))
def test_hostile_modbus_answers_reach_the_plc_only_as_plc_errors(actions: list[Action], ops: list[str]) -> None:
    run(plc_scenario(actions, ops))


MARKER_OPS = ["status", "push", "start", "stop", "settle", "clear_fifo", "clear_fault", "identity", "trigger"]


async def marker_scenario(actions: list[Action], ops: list[str]) -> None:
    settings = ModbusMarkerSettings(port=free_port(), slots=4, text_registers=8, timeout_s=0.1)
    sim = ModbusMarkerSim(settings)
    await sim.start()
    device = HostileDevice(settings.port, Script(actions, mbap_reframe))
    url = await device.serve_tcp()
    port = int(url.rsplit(":", 1)[1])
    marker = ModbusMarker(settings.model_copy(update={"port": port}))
    b = Bounded((PrinterError,), "modbus marker", tolerated=pymodbus_drops_the_link)
    b.watch_loop()
    seq = 0
    try:
        await b.op("connect", marker.connect)
        for name in ops:
            if name == "push":
                seq += 1
                record = Record(seq, f"CODE{seq:04d}")
                await b.op(name, lambda record=record: marker.push([record]))  # type: ignore[misc]
            else:
                await b.op(name, getattr(marker, name))
        device.script.used = len(actions)  # honest from now on, on a fresh connection
        device.cut()
        for _ in range(20):
            if await b.op("recover", marker.status) is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"modbus marker: no status after the device turned honest: {b.last_error!r}")
    finally:
        await b.quiet("close", marker.close)
        await device.close()
        await sim.close()
    b.check_loop()


@budget(6)
@given(actions=scripts(extra=RESPONSES, max_size=8, fields=PDU_EDITS),
       ops=st.lists(st.sampled_from(MARKER_OPS), min_size=1, max_size=6))
def test_hostile_modbus_answers_reach_the_marker_only_as_printer_errors(actions: list[Action], ops: list[str]
                                                                       ) -> None:
    run(marker_scenario(actions, ops))
