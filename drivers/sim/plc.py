"""A line PLC simulator: a real pymodbus TCP server over a conveyor model with a reject gate.

Why a real server: the PLC adapter and the verify station must be tested against the same Modbus/TCP
frames a line PLC answers, with real timeouts for a dead slave, not against a fake client. The pymodbus
datastore (SimDevice, pymodbus >= 3.13) only stores registers; the line's behaviour lives in
`ConveyorModel` (pure, no I/O) and is wired in through the datastore's `action` hook, which sees every
read and write before pymodbus answers it. Coils and discrete inputs use linear bit addressing.

The conveyor: items are one pitch apart; the print head is at position 0, the camera `camera_at`
pitches downstream, the reject gate `gate_at` pitches downstream. Each step one new item passes the
print head (the counter advances) and every item moves one pitch. At the gate the logic of `gate` decides
(docs/technicians.md, "PLC logic for positive release"): `reject` removes an item whose seq was written
to `reject_fire`; `release` removes every item whose seq was not written to `release_fire` before it
reached the gate (or was also written to `reject_fire`). A removed item is counted by the confirm sensor.
The model keeps its own record of removed and passed seqs so tests can compare them with the agent's
verdicts. Holding registers keep the value last written (read back like a real PLC's), so an agent that
restarts can read the last release it wrote.

Faults: `confirm_never` (the gate fires but the sensor never reports), `dead` slaves (requests are never
answered, so the client must time out), `jam_gate` (the gate does not fire: the item passes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.plc.bus import Table
from drivers.plc.plc import U16, GateMode, RegisterMap, Signal, unwrap

FC_TABLE: dict[int, Table] = {1: Table.COIL, 5: Table.COIL, 15: Table.COIL, 2: Table.DISCRETE,
                              3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING, 4: Table.INPUT}
WRITES = frozenset({5, 6, 15, 16})
BLOCK_ORDER = (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT)


@dataclass
class ConveyorModel:
    """The line's state; synchronous and free of I/O so tests can drive it step by step."""

    registers: RegisterMap
    camera_at: int = 3
    gate_at: int = 8
    running: bool = False
    counter: int = 0  # items past the print head; the item printed at step N has seq N
    confirms: int = 0
    heartbeat: int = 0
    outputs: dict[Signal, int] = field(default_factory=dict)  # lights, buzzer as last written
    gate: GateMode = GateMode.REJECT
    pending: set[int] = field(default_factory=set)  # seqs the gate must remove
    released: set[int] = field(default_factory=set)  # seqs the gate lets pass (gate: release)
    rejected: list[int] = field(default_factory=list)  # seqs the gate removed
    passed: list[int] = field(default_factory=list)  # seqs that left the line past the gate
    late: list[int] = field(default_factory=list)  # reject asked for an item already past the gate
    late_releases: list[int] = field(default_factory=list)  # release written after the item's gate decision
    holding: dict[Signal, int] = field(default_factory=dict)  # reject_fire/release_fire as last written
    confirm_never: bool = False
    jam_gate: bool = False
    # The PLC's heartbeat watchdog (what a real line's PLC program does, docs/technicians.md): armed by
    # the first heartbeat written; when the value has not changed for `watchdog_s`, the conveyor stops
    # and a run command is refused until heartbeats resume. None: no watchdog.
    watchdog_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    watchdog_trips: int = 0
    _beat_at: float | None = None
    _tripped: bool = False

    def __post_init__(self) -> None:
        self.points = self.registers.points()
        self._by_address = {(p.table, p.address): s for s, p in self.points.items()}

    def watchdog(self) -> bool:
        """Check the heartbeat's age (every PLC scan; here: every pitch and every run command).
        True while the watchdog holds the line stopped."""
        if self.watchdog_s is None or self._beat_at is None:
            return False
        if not self._tripped and self.clock() - self._beat_at > self.watchdog_s:
            self._tripped = True
            self.watchdog_trips += 1
            self.running = False
        return self._tripped

    def signal_at(self, table: Table, address: int) -> Signal | None:
        return self._by_address.get((table, address))

    def step(self) -> int | None:
        """One pitch: a new item passes the head; returns the seq that reached the gate, if any."""
        if self.watchdog() or not self.running:
            return None
        self.counter += 1
        at_gate = self.counter - self.gate_at
        if at_gate < 1:
            return None
        if self.gate is GateMode.RELEASE:
            remove = at_gate not in self.released or at_gate in self.pending
        else:
            remove = at_gate in self.pending
        self.pending.discard(at_gate)
        self.released.discard(at_gate)
        if remove and not self.jam_gate:
            self.rejected.append(at_gate)
            if not self.confirm_never:
                self.confirms += 1
        else:
            self.passed.append(at_gate)
        return at_gate

    def at_camera(self) -> int | None:
        seq = self.counter - self.camera_at
        return seq if seq >= 1 else None

    def write(self, signal: Signal, value: int) -> None:
        if signal is Signal.LINE_RUN:
            self.running = bool(value) and not self.watchdog()
        elif signal in (Signal.REJECT_FIRE, Signal.RELEASE_FIRE):
            self.holding[signal] = value
            seq = unwrap(value, self.counter)
            decided = seq <= self.counter - self.gate_at  # the item has reached the gate already
            if signal is Signal.REJECT_FIRE:
                if decided:
                    self.late.append(seq)
                else:
                    self.pending.add(seq)
            elif decided:
                self.late_releases.append(seq)
            else:
                self.released.add(seq)
        elif signal is Signal.HEARTBEAT:
            if value != self.heartbeat or self._beat_at is None:
                self._beat_at = self.clock()
                self._tripped = False
            self.heartbeat = value
        else:
            self.outputs[signal] = value

    def read(self, signal: Signal) -> int:
        if signal is Signal.LINE_RUN:
            return int(self.running)
        if signal is Signal.COUNTER:
            return self.counter % U16
        if signal is Signal.REJECT_CONFIRM:
            return self.confirms % U16
        if signal is Signal.HEARTBEAT:
            return self.heartbeat
        if signal in (Signal.REJECT_FIRE, Signal.RELEASE_FIRE):
            return self.holding.get(signal, 0)
        return self.outputs.get(signal, 0)


class PlcSim:
    """The model behind a pymodbus TCP server on 127.0.0.1; optionally a timer moves the conveyor."""

    def __init__(
        self,
        registers: RegisterMap,
        *,
        port: int,
        camera_at: int = 3,
        gate_at: int = 8,
        device_ids: tuple[int, ...] = (1,),
        rate_per_s: float | None = None,
        host: str = "127.0.0.1",
        rtu: bool = False,
        watchdog_s: float | None = None,
        gate: GateMode = GateMode.REJECT,
    ) -> None:
        """`rtu=True` serves Modbus RTU frames on socket://host:port (an RS-485 gateway's raw mode),
        which the adapter reaches through pyserial's serial_for_url like a real serial port."""
        self.model = ConveyorModel(registers, camera_at=camera_at, gate_at=gate_at, watchdog_s=watchdog_s,
                                   gate=gate)
        self.port = port
        self.host = host
        self.device_ids = device_ids
        self.rate_per_s = rate_per_s
        self.rtu = rtu
        self.dead: set[int] = set()  # slaves that never answer
        self.stepped = asyncio.Event()  # set after every timer step (tests wait on it, not on time)
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._conveyor: asyncio.Task[None] | None = None
        self._size = dict.fromkeys(Table, 16)
        for p in registers.points().values():
            self._size[p.table] = max(self._size[p.table], p.address + 1)

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}" if self.rtu else f"tcp://{self.host}:{self.port}"

    async def start(self) -> None:
        devices = [self._device(dev) for dev in self.device_ids]
        if self.rtu:
            self._server = ModbusSerialServer(devices, framer=FramerType.RTU, port=self.url)
        else:
            self._server = ModbusTcpServer(devices, address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        if self.rate_per_s:
            self._conveyor = asyncio.create_task(self._run(self.rate_per_s), name="plc-sim-conveyor")

    async def close(self) -> None:
        if self._conveyor is not None:
            self._conveyor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._conveyor
            self._conveyor = None
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def __aenter__(self) -> PlcSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _device(self, device_id: int) -> SimDevice:
        def bits(table: Table) -> list[SimData]:
            n = -(-self._size[table] // 16) * 16
            return [SimData(0, values=[False] * n, datatype=DataType.BITS)]

        def regs(table: Table) -> list[SimData]:
            return [SimData(0, values=[0] * self._size[table], datatype=DataType.REGISTERS)]

        async def action(
            function_code: int, start_address: int, address: int, count: int,
            current_registers: list[int], set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            if device_id in self.dead:
                await asyncio.Event().wait()  # never answers: the client must time out
            return self._action(function_code, start_address, address, current_registers, set_values)

        return SimDevice(
            id=device_id,
            simdata=(bits(Table.COIL), bits(Table.DISCRETE), regs(Table.HOLDING), regs(Table.INPUT)),
            action=action,
            use_bit_addressing=True,
        )

    def _action(
        self, function_code: int, start_address: int, address: int,
        registers: list[int], set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Writes go to the model; before a read, the whole table is refreshed from the model."""
        table = FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        m = self.model
        if function_code in WRITES:
            if set_values is not None:
                for i, v in enumerate(set_values):
                    signal = m.signal_at(table, address + i)
                    if signal is not None:
                        m.write(signal, int(v))
            return None
        for signal, point in m.points.items():
            if point.table is not table:
                continue
            value = m.read(signal)
            if table in (Table.COIL, Table.DISCRETE):
                reg, bit = point.address // 16 - start_address, point.address % 16
                registers[reg] = (registers[reg] & ~(1 << bit)) | ((1 if value else 0) << bit)
            else:
                registers[point.address - start_address] = value
        return None

    async def _run(self, rate: float) -> None:
        period = 1.0 / rate
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.model.step()
            self.stepped.set()
            self.stepped.clear()


def example_map() -> RegisterMap:
    """The map the examples, tests and `lineagent demo` use."""
    return RegisterMap.model_validate({
        "line_run": {"table": "coil", "address": 0},
        "light_green": {"table": "coil", "address": 1},
        "light_amber": {"table": "coil", "address": 2},
        "light_red": {"table": "coil", "address": 3},
        "buzzer": {"table": "coil", "address": 4},
        "counter": {"table": "input", "address": 0},
        "reject_confirm": {"table": "input", "address": 1},
        "reject_fire": {"table": "holding", "address": 0},
        "heartbeat": {"table": "holding", "address": 1},
        "release_fire": {"table": "holding", "address": 2},
    })
