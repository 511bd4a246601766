"""A Modbus TCP marker simulator: a real pymodbus server holding the map of drivers/printers/modbus_marker.py.

Why a real server: the driver must be tested against the same Modbus/TCP frames a gateway PLC or
marker answers, including exception responses and dropped connections, not against a fake client.
The pymodbus datastore (SimDevice, pymodbus >= 3.13) only stores registers; the marker's behaviour
lives in `MarkerModel` (pure, no I/O) and is wired in through the datastore's `action` hook, which sees
every read and write before pymodbus answers it.

Faults it can inject, by hand or from a seeded FaultPlan (drivers/sim/faults.py): NAK (Modbus exception
"device busy"), silence (requests are never answered), buffer full (natural: the ring holds `slots`
records), FIFO cleared by a stop, power loss (the server goes away, the queue is lost, the product
counter is kept), ink low/empty, head fault. Garbage bytes and an injected buffer-full are not
offered: pymodbus frames every answer itself, and the ring's fill level is the host's own count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.plc.bus import pack_text, unpack_text
from drivers.printers.base import Fault
from drivers.printers.modbus_marker import (
    FAULT_BITS,
    STATUS_FAULT,
    STATUS_RUNNING,
    U32,
    ModbusMarkerSettings,
    join_u32,
    split_u32,
)
from drivers.sim.faults import FaultPlan, SimFault

STOPPING_FAULTS = frozenset({Fault.INK_EMPTY, Fault.HEAD_FAULT, Fault.COVER_OPEN, Fault.OTHER})
FC_READ_COILS, FC_READ_HOLDING, FC_READ_INPUT = 1, 3, 4
FC_WRITE_COIL, FC_WRITE_REGISTER, FC_WRITE_COILS, FC_WRITE_REGISTERS = 5, 6, 15, 16


class UnsupportedLink(ValueError):
    """The simulator cannot serve this kind of link (its protocol does not run over it)."""


@dataclass
class MarkerModel:
    """The marker's state; every method is synchronous and free of I/O so tests can drive it directly."""

    settings: ModbusMarkerSettings
    model_name: str = "LINEAGENT-SIM-MARKER"
    holding: dict[int, int] = field(default_factory=dict)
    queued: int = 0
    printed: int = 0
    running: bool = False
    faults: set[Fault] = field(default_factory=set)
    printed_texts: list[str] = field(default_factory=list)  # the simulator's own record of its prints
    missed: int = 0  # products that passed unmarked (stopped, fault, or empty queue)

    def write_holding(self, address: int, values: list[int]) -> bool:
        """Store a register write; False (nothing stored) if it touches the queue count improperly.

        The count is a compare-and-set (see drivers/printers/modbus_marker.py): only a whole 4-register
        write [new, expected] whose expected count is the marker's own is taken, so a host that read the
        count before a panel stop cannot undo the stop.
        """
        s = self.settings
        if address < s.queued_address + 4 and address + len(values) > s.queued_address:
            if address != s.queued_address or len(values) != 4:
                return False
            new, expected = join_u32(values[:2]), join_u32(values[2:])
            if expected != self.queued:
                return False
            self.queued = new
            return True
        for i, v in enumerate(values):
            self.holding[address + i] = v
        return True

    def read_holding(self, address: int) -> int:
        s = self.settings
        if address == s.queued_address:
            return split_u32(self.queued)[0]
        if address == s.queued_address + 1:
            return split_u32(self.queued)[1]
        return self.holding.get(address, 0)

    def read_input(self, address: int) -> int:
        s = self.settings
        if address in (s.printed_address, s.printed_address + 1):
            return split_u32(self.printed)[address - s.printed_address]
        if address == s.status_address:
            return (STATUS_RUNNING if self.running else 0) | (STATUS_FAULT if self.stopped_by_fault else 0)
        if address == s.fault_address:
            return sum(1 << bit for bit, f in FAULT_BITS.items() if f in self.faults)
        ident = pack_text(self.model_name[: 2 * s.identity_registers], s.identity_registers)
        if s.identity_address <= address < s.identity_address + s.identity_registers:
            return ident[address - s.identity_address]
        return 0

    def write_coil(self, address: int, value: bool) -> None:
        s = self.settings
        if address == s.run_coil:
            if value:
                self.running = True
            else:
                self.stop()
        elif address == s.reset_coil and value:
            self.faults.clear()
        elif address == s.flush_coil and value:
            self.flush()
        elif address == s.trigger_coil and value:
            self.fire()

    @property
    def depth(self) -> int:
        return (self.queued - self.printed) % U32

    @property
    def stopped_by_fault(self) -> bool:
        return bool(self.faults & STOPPING_FAULTS)

    def stop(self) -> None:
        """A stop discards the queue, as the map says: queued := printed."""
        self.running = False
        self.queued = self.printed

    def flush(self) -> None:
        """The map's flush coil: the queue is discarded and the marker goes on running (or not)."""
        self.queued = self.printed

    def power_loss(self) -> None:
        self.running = False
        self.queued = self.printed
        self.holding.clear()

    def fire(self) -> str | None:
        """One product passes the head: print the next queued record if the marker can."""
        if not self.running or self.stopped_by_fault:
            self.missed += 1
            return None
        if self.depth == 0:
            self.missed += 1
            self.faults.add(Fault.BUFFER_EMPTY)
            return None
        self.faults.discard(Fault.BUFFER_EMPTY)
        s = self.settings
        base = s.text_address + (self.printed % s.slots) * s.text_registers
        text = unpack_text([self.holding.get(base + i, 0) for i in range(s.text_registers)])
        self.printed = (self.printed + 1) % U32
        self.printed_texts.append(text)
        return text


class ModbusMarkerSim:
    """The model behind a pymodbus TCP server on 127.0.0.1, with an optional conveyor firing prints."""

    def __init__(
        self,
        settings: ModbusMarkerSettings | None = None,
        *,
        rate_per_s: float | None = None,
        host: str = "127.0.0.1",
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
    ) -> None:
        """`rate_per_min`, `baud` (unused: Modbus TCP has no serial line) and `faults` are the
        simulator-registry interface (drivers/sim/__init__.py), so `lineagent sim printer` can run it."""
        del baud
        self.settings = settings or ModbusMarkerSettings()
        self.model = MarkerModel(self.settings)
        self.rate_per_s = rate_per_s if rate_per_s is not None else (rate_per_min / 60.0 if rate_per_min else None)
        self.host = host
        self.plan = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults)
        self.nak = False  # answer every request with exception "device busy"
        self.silent = asyncio.Event()  # set: requests are never answered
        # Called with (address, values) on every register write before the marker applies it: lets a
        # test land a panel stop at an exact point of the host's write sequence.
        self.on_write: Callable[[int, list[int]], None] | None = None
        self._server: ModbusTcpServer | None = None
        self._conveyor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._armed: deque[SimFault] = deque()

    @property
    def printed(self) -> list[str]:
        return self.model.printed_texts

    @property
    def counter(self) -> int:
        return self.model.printed

    @property
    def missed(self) -> int:
        return self.model.missed

    async def serve_tcp(self, port: int = 0) -> int:
        """Registry interface: power on and listen on `port` (0: a free one); returns the port."""
        self.settings = self.settings.model_copy(update={"port": port})  # 0: bind a free port
        self.model.settings = self.settings
        await self.start()
        return self.settings.port

    async def serve_pty(self) -> str:
        raise UnsupportedLink("the Modbus marker speaks Modbus TCP only; use --tcp PORT")

    def trigger(self, products: int = 1) -> int:
        """`products` pass the marker; print faults follow the seeded plan."""
        done = 0
        for _ in range(products):
            if self.model.fire() is None:
                continue
            done += 1
            for fault in self.plan.after_print(len(self.model.printed_texts)):
                self._print_fault(fault)
        return done

    def _print_fault(self, fault: SimFault) -> None:
        if fault is SimFault.STOP:
            self.model.stop()
        elif fault is SimFault.INK_LOW:
            self.model.faults.add(Fault.INK_LOW)
        elif fault is SimFault.POWER_LOSS:
            task = asyncio.get_running_loop().create_task(self._power_cycle(self.plan.down_s))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _power_cycle(self, down_s: float) -> None:
        await self.power_loss()
        await asyncio.sleep(down_s)
        await self.start()

    async def start(self) -> None:
        """Power on: serve on settings.port; the conveyor (if any) starts moving."""
        s = self.settings
        coils = -(-(max(s.trigger_coil, s.run_coil, s.reset_coil, s.flush_coil) + 1) // 16) * 16
        holding = max(s.text_address + s.slots * s.text_registers, s.queued_address + 4)
        inputs = max(s.printed_address + 2, s.status_address + 1, s.fault_address + 1,
                     s.identity_address + s.identity_registers)
        device = SimDevice(
            id=0,
            simdata=(
                [SimData(0, values=[False] * coils, datatype=DataType.BITS)],
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(0, values=[0] * holding, datatype=DataType.REGISTERS)],
                [SimData(0, values=[0] * inputs, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )
        self._server = ModbusTcpServer(device, address=(self.host, self.settings.port))
        await self._server.serve_forever(background=True)
        if self.settings.port == 0:  # bound to a free port: remember it so a power cycle comes back there
            sockets = getattr(self._server.transport, "sockets", None) or ()
            port = int(sockets[0].getsockname()[1]) if sockets else 0
            self.settings = self.settings.model_copy(update={"port": port})
            self.model.settings = self.settings
        if self.rate_per_s:
            self._conveyor = asyncio.create_task(self._run_conveyor(self.rate_per_s), name="sim-conveyor")

    async def close(self) -> None:
        if self._conveyor is not None:
            self._conveyor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._conveyor
            self._conveyor = None
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def power_loss(self) -> None:
        """Link gone, queue lost, product counter kept; call start() to power on again."""
        await self.close()
        self.model.power_loss()

    def inject(self, fault: Fault | SimFault, count: int = 1) -> None:
        """A coder fault (ink low, head fault...) now, or a simulator fault as drivers/sim/faults.py
        defines it: NAK and silence hit the next `count` requests; stop, ink low, power loss happen now.
        Garbage and an injected buffer-full have no Modbus form (see the module docstring)."""
        if isinstance(fault, Fault):
            self.model.faults.add(fault)
        elif fault in (SimFault.NAK, SimFault.SILENCE):
            self._armed.extend([fault] * count)
        elif fault is SimFault.GARBAGE or fault is SimFault.BUFFER_FULL:
            raise ValueError(f"the Modbus marker simulator cannot inject {fault}")
        else:
            self._print_fault(fault)

    # The contract suite's names for the same operations (tests/drivers/printers/pairs.py ContractSim).
    job = ""  # the register map has no job

    async def power_off(self) -> None:
        await self.power_loss()

    async def power_on(self) -> None:
        await self.start()

    def stop_printing(self) -> None:
        self.model.stop()

    async def _run_conveyor(self, rate: float) -> None:
        period = 1.0 / rate
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.trigger()

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Route every request through the model; reads are refreshed from it before pymodbus answers."""
        if self.silent.is_set():
            await asyncio.Event().wait()  # never answers: the driver must time out
        if self.nak:
            return ExcCodes.DEVICE_BUSY
        drawn = self._armed.popleft() if self._armed else self.plan.draw_request()
        if drawn is SimFault.NAK:
            return ExcCodes.DEVICE_BUSY
        if drawn is SimFault.SILENCE:
            await asyncio.Event().wait()
        m = self.model
        if function_code in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS) and set_values is not None:
            values = [int(v) for v in set_values]
            if self.on_write is not None:
                self.on_write(address, values)
            if not m.write_holding(address, values):
                return ExcCodes.ILLEGAL_VALUE
        elif function_code in (FC_WRITE_COIL, FC_WRITE_COILS) and set_values is not None:
            for i, v in enumerate(set_values):
                m.write_coil(address + i, bool(v))
        elif function_code == FC_READ_HOLDING:
            for i in range(count):
                current_registers[address - start_address + i] = m.read_holding(address + i)
        elif function_code == FC_READ_INPUT:
            for i in range(count):
                current_registers[address - start_address + i] = m.read_input(address + i)
        return None
