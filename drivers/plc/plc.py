"""The line PLC: a register map from the config and the few acts the agent asks of the line.

Why a map and not a protocol: no two lines wire their PLC alike, so each signal (line run/stop, the
item counter, reject fire and confirm, stack lights, buzzer, heartbeat) is a (table, address) pair in
the config, optionally on its own slave (remote I/O on the same RS-485 bus). The meanings are fixed:

- `line_run` (coil): 1 runs the conveyor, 0 stops it.
- `counter` (input or holding): items past the print head, 16 bits, wrapping. Item seq N is the N-th.
- `reject_fire` (holding): the agent writes the low 16 bits of the seq of an item the gate must
  remove; the PLC queues it and fires the gate when that item arrives.
- `release_fire` (holding): the agent writes the low 16 bits of the seq of an item it judged good,
  in increasing seq order, before the item reaches the gate. With `gate: release` the PLC removes every
  item that reaches the gate without its release (the agent dead, hung, restarting, a verdict late, the
  camera gone): positive release. The register keeps its last value, so after a restart the agent reads
  back the last item it released. With `gate: reject` (the older reject-only logic) the PLC removes only
  the items named in `reject_fire`, and everything the agent did not judge passes.
- `reject_confirm` (input or holding): how many items the confirm sensor saw leave through the gate,
  16 bits, wrapping. A counter, not a flag, so a poll never misses a confirm that came and went.
- `light_green`/`light_amber`/`light_red`/`buzzer` (coils), `heartbeat` (holding, the agent counts up).
"""

from __future__ import annotations

from enum import StrEnum
from types import TracebackType

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.plc.bus import WRITABLE, BusSpec, ModbusBus, PlcError, Table

U16 = 0x10000


class Strict(BaseModel):
    """Unknown keys refused, as in confkit.base."""

    model_config = ConfigDict(extra="forbid")


class Signal(StrEnum):
    LINE_RUN = "line_run"
    COUNTER = "counter"
    REJECT_FIRE = "reject_fire"
    REJECT_CONFIRM = "reject_confirm"
    RELEASE_FIRE = "release_fire"
    LIGHT_GREEN = "light_green"
    LIGHT_AMBER = "light_amber"
    LIGHT_RED = "light_red"
    BUZZER = "buzzer"
    HEARTBEAT = "heartbeat"


# Signals the agent writes must live in a writable table.
WRITTEN = frozenset({Signal.LINE_RUN, Signal.REJECT_FIRE, Signal.RELEASE_FIRE, Signal.LIGHT_GREEN, Signal.LIGHT_AMBER,
                     Signal.LIGHT_RED, Signal.BUZZER, Signal.HEARTBEAT})


class GateMode(StrEnum):
    """What the PLC does with an item at the gate that the agent said nothing about."""

    RELEASE = "release"  # removed: only items the agent released (release_fire) pass (fail-safe)
    REJECT = "reject"  # passes: only items the agent named in reject_fire are removed


class Point(Strict):
    table: Table
    address: int = Field(ge=0, le=0xFFFF)
    device_id: int | None = Field(None, ge=0, le=247)  # None: the PLC's own device_id


class RegisterMap(Strict):
    line_run: Point
    counter: Point
    reject_fire: Point
    reject_confirm: Point
    release_fire: Point | None = None  # needed by gate: release
    light_green: Point | None = None
    light_amber: Point | None = None
    light_red: Point | None = None
    buzzer: Point | None = None
    heartbeat: Point | None = None

    @model_validator(mode="after")
    def _writable(self) -> RegisterMap:
        for signal, point in self.points().items():
            if signal in WRITTEN and point.table not in WRITABLE:
                raise ValueError(f"{signal} is written by the agent; {point.table} is read-only "
                                 "(use coil or holding)")
        # Two signals on one bit or register would, e.g., make a stack-light write run the belt.
        seen: dict[tuple[Table, int, int | None], Signal] = {}
        for signal, point in self.points().items():
            where = (point.table, point.address, point.device_id)
            if where in seen:
                raise ValueError(f"{seen[where]} and {signal} are both on {point.table} {point.address}"
                                 + (f" of device {point.device_id}" if point.device_id is not None else "")
                                 + ": every signal needs its own address")
            seen[where] = signal
        return self

    def points(self) -> dict[Signal, Point]:
        return {s: p for s in Signal if (p := getattr(self, s.value)) is not None}


class PlcSettings(Strict):
    url: str = Field(min_length=1)  # tcp://host:port, or a pyserial URL for RTU
    device_id: int = Field(1, ge=0, le=247)
    timeout_s: float = Field(0.5, gt=0, le=30)  # per request, for every slave without its own
    slave_timeouts: dict[int, float] = Field(default_factory=dict)  # device id -> seconds
    baudrate: int = 19200
    parity: str = Field("N", pattern="^[NEO]$")
    stopbits: int = Field(1, ge=1, le=2)
    poll_ms: float = Field(5.0, gt=0)  # how often the station reads the counter
    # release: the PLC removes every item not released by the agent (the safe default; needs the
    # release_fire register and the PLC logic of docs/technicians.md). reject: the older reject-only
    # logic, where items pass unjudged while the agent is down.
    gate: GateMode = GateMode.RELEASE
    registers: RegisterMap

    @model_validator(mode="after")
    def _release_mapped(self) -> PlcSettings:
        if self.gate is GateMode.RELEASE and self.registers.release_fire is None:
            raise ValueError("gate: release needs registers.release_fire (a holding register the PLC's "
                             "release logic reads, see docs/technicians.md); set gate: reject to keep the "
                             "reject-only logic, under which products leave unjudged while the agent is down")
        return self


class Buses:
    """Modbus buses by URL, so PLCs (or remote I/O slaves) configured on one wire share one lock."""

    def __init__(self) -> None:
        self._buses: dict[str, ModbusBus] = {}

    def get(self, spec: BusSpec) -> ModbusBus:
        bus = self._buses.get(spec.url)
        if bus is None:
            bus = self._buses[spec.url] = ModbusBus(spec)
        return bus


class LinePlc:
    """The agent's view of the line PLC; every method raises a PlcError subclass on failure."""

    Settings = PlcSettings

    def __init__(self, settings: PlcSettings, *, name: str = "plc", buses: Buses | None = None) -> None:
        self.settings = settings
        self.name = name
        spec = BusSpec(settings.url, settings.baudrate, settings.parity, settings.stopbits)
        self.bus = (buses or Buses()).get(spec)
        self._points = settings.registers.points()
        self._heartbeat = 0

    async def open(self) -> None:
        if not self.bus.connected:
            longest = max([self.settings.timeout_s, *self.settings.slave_timeouts.values()])
            await self.bus.connect(longest)

    async def close(self) -> None:
        self.bus.close()

    async def __aenter__(self) -> LinePlc:
        await self.open()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def _where(self, point: Point) -> tuple[int, float]:
        dev = self.settings.device_id if point.device_id is None else point.device_id
        return dev, self.settings.slave_timeouts.get(dev, self.settings.timeout_s)

    def point(self, signal: Signal) -> Point:
        p = self._points.get(signal)
        if p is None:
            raise PlcError(f"PLC {self.name}: signal {signal} is not in the register map")
        return p

    async def read(self, signal: Signal) -> int:
        p = self.point(signal)
        dev, timeout = self._where(p)
        label = f"{self.name}.{signal}: "
        return (await self.bus.read(p.table, p.address, 1, device_id=dev, timeout_s=timeout, label=label))[0]

    async def read_many(self, signals: list[Signal]) -> dict[Signal, int]:
        """Several signals with as few requests as the map allows: neighbours in one table and slave
        are read in one request, so a station's poll of counter and confirm costs one round trip."""
        wanted = sorted(((self.point(s), s) for s in signals),
                        key=lambda ps: (ps[0].table, self._where(ps[0])[0], ps[0].address))
        runs: list[list[tuple[Point, Signal]]] = []
        for p, s in wanted:
            last = runs[-1][-1][0] if runs else None
            if (last is not None and last.table is p.table and self._where(last) == self._where(p)
                    and p.address == last.address + 1):
                runs[-1].append((p, s))
            else:
                runs.append([(p, s)])
        out: dict[Signal, int] = {}
        for run in runs:
            first = run[0][0]
            dev, timeout = self._where(first)
            label = f"{self.name}.{'+'.join(s.value for _, s in run)}: "
            values = await self.bus.read(first.table, first.address, len(run), device_id=dev,
                                         timeout_s=timeout, label=label)
            out.update({s: v for (_, s), v in zip(run, values, strict=True)})
        return out

    async def write(self, signal: Signal, value: int) -> None:
        p = self.point(signal)
        dev, timeout = self._where(p)
        label = f"{self.name}.{signal}: "
        await self.bus.write(p.table, p.address, value, device_id=dev, timeout_s=timeout, label=label)

    async def counter(self) -> int:
        """The raw 16-bit item counter; `unwrap` turns it into a seq."""
        return await self.read(Signal.COUNTER)

    async def confirmed(self) -> int:
        """The raw 16-bit count of rejects the confirm sensor saw."""
        return await self.read(Signal.REJECT_CONFIRM)

    async def run_line(self, run: bool) -> None:
        await self.write(Signal.LINE_RUN, int(run))

    async def fire_reject(self, seq: int) -> None:
        await self.write(Signal.REJECT_FIRE, seq % U16)

    @property
    def gate(self) -> GateMode:
        return self.settings.gate

    async def release(self, seq: int) -> None:
        """Release item `seq` (judged good) through the gate: its low 16 bits to `release_fire`."""
        await self.write(Signal.RELEASE_FIRE, seq % U16)

    async def last_released(self) -> int:
        """The raw 16-bit value last written to `release_fire` (the PLC keeps it): after a restart, the
        last item the agent released before it stopped."""
        return await self.read(Signal.RELEASE_FIRE)

    async def lights(self, *, green: bool, amber: bool, red: bool, buzzer: bool = False) -> None:
        """Set the stack lights that are mapped; unmapped ones are skipped, not an error."""
        wanted = {Signal.LIGHT_GREEN: green, Signal.LIGHT_AMBER: amber,
                  Signal.LIGHT_RED: red, Signal.BUZZER: buzzer}
        mapped = self._points
        for signal, on in wanted.items():
            if signal in mapped:
                await self.write(signal, int(on))

    async def heartbeat(self) -> int:
        """Count the heartbeat register up, so the PLC can stop the line when the agent dies."""
        self._heartbeat = (self._heartbeat + 1) % U16
        if Signal.HEARTBEAT in self._points:
            await self.write(Signal.HEARTBEAT, self._heartbeat)
        return self._heartbeat

    async def probe(self) -> dict[Signal, int | PlcError]:
        """Every mapped signal's value, or the error reading it gave (for `lineagent plc probe`)."""
        out: dict[Signal, int | PlcError] = {}
        for signal in self._points:
            try:
                out[signal] = await self.read(signal)
            except PlcError as exc:
                out[signal] = exc
        return out


def unwrap(raw: int, near: int) -> int:
    """The full count whose low 16 bits are `raw`, closest to `near` (a 16-bit counter that wrapped)."""
    delta = (raw - near) % U16
    if delta >= U16 // 2:
        delta -= U16
    return near + delta
