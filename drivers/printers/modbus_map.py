"""The Modbus marker's register map as values: settings, bit layouts and the uint32 register pairs.

Why apart from the driver: the simulator (drivers/sim/modbus_marker.py) implements the same map and
must not need the driver to read it; the map itself is described in drivers/printers/modbus_marker.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from drivers.printers.base import CoderSettings, Fault, ProtocolError

# Bit number in the fault register -> typed fault. Shared with drivers/sim/modbus_marker.py.
FAULT_BITS: dict[int, Fault] = {
    0: Fault.INK_LOW,
    1: Fault.INK_EMPTY,
    2: Fault.HEAD_FAULT,
    3: Fault.BUFFER_EMPTY,
    4: Fault.COVER_OPEN,
    5: Fault.OTHER,
}
STATUS_RUNNING = 0x0001
STATUS_FAULT = 0x0002
ILLEGAL_VALUE = 3  # Modbus exception code: the marker refuses a queue count write whose expectation failed
U32 = 1 << 32


def split_u32(value: int) -> list[int]:
    return [(value >> 16) & 0xFFFF, value & 0xFFFF]


def join_u32(words: Sequence[int]) -> int:
    if len(words) != 2:
        raise ProtocolError(f"expected 2 registers for a uint32, got {len(words)}")
    return ((words[0] & 0xFFFF) << 16) | (words[1] & 0xFFFF)


def faults_from_bits(bits: int) -> frozenset[Fault]:
    return frozenset(f for bit, f in FAULT_BITS.items() if bits & (1 << bit))


class ModbusMarkerSettings(CoderSettings):
    # Our map, our convention (drivers/printers/modbus_marker.py): FNC1 separators are GS (1Dh) in the
    # slot text, as a scanner transmits them; the marker's GS1 barcode object adds FNC1 in first position.
    gs1_fnc1: str | None = Field("\x1d", min_length=1, max_length=16,
                                 description="how the marker takes FNC1 in a GS1 code's data (our map: GS)")
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=255)
    timeout_s: float = Field(1.0, gt=0)
    retries: int = Field(1, ge=0, description="re-reads of status after a timeout (writes are never repeated)")
    slots: int = Field(8, ge=1, le=256, description="text slots in the ring = FIFO capacity")
    text_address: int = Field(100, ge=0, le=65535)
    text_registers: int = Field(16, ge=1, le=123, description="registers per slot, 2 chars each")
    queued_address: int = Field(
        10, ge=0, le=65532, description="4 holding registers: queued count, then the count the host expects"
    )
    printed_address: int = Field(0, ge=0, le=65534)
    status_address: int = Field(2, ge=0, le=65535)
    fault_address: int = Field(3, ge=0, le=65535)
    identity_address: int = Field(20, ge=0, le=65535)
    identity_registers: int = Field(8, ge=0, le=64)
    trigger_coil: int = Field(0, ge=0, le=65535)
    run_coil: int = Field(1, ge=0, le=65535)
    reset_coil: int = Field(2, ge=0, le=65535)
    flush_coil: int = Field(3, ge=0, le=65535, description="1 = discard the queue, run state unchanged")
