"""One physical Modbus bus (a TCP connection or an RS-485 line) shared by the slaves on it: the one
Modbus adapter of the agent, for the line PLC (drivers/plc/plc.py) and the Modbus marker
(drivers/printers/modbus_marker.py).

Why its own module: pymodbus changes its API at almost every 3.x minor release (`slave=` became
`device_id=` in 3.10, the datastore moved in 3.13), so every pymodbus client call lives here and
nothing else in the agent imports pymodbus' client. Written against pymodbus ~=3.16.1.

Strings follow the common PLC convention: two characters per 16-bit register, first character in the
high byte, padded with NUL (`pack_text`, `unpack_text`).

Why one lock per bus and a timeout per slave: RS-485 is half duplex, so only one request may be on the
wire at a time; and a dead slave must cost its own timeout and nothing more; it must not close the
link the other slaves on the same bus still answer on. pymodbus' own retry and reconnect loops are off:
a failure is reported at once, typed, and the caller's policy decides what happens next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU


class Table(StrEnum):
    """The four Modbus data tables; a mapped signal names one of them and an address."""

    COIL = "coil"  # read/write bit
    DISCRETE = "discrete"  # read-only bit
    HOLDING = "holding"  # read/write 16-bit register
    INPUT = "input"  # read-only 16-bit register


WRITABLE = frozenset({Table.COIL, Table.HOLDING})
# Function codes of the reads (Modbus Application Protocol Specification V1.1b3, section 6.1-6.4).
READ_CODES = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}


class PlcError(Exception):
    """Base of every PLC error; the message names the bus, the slave and the register."""


class PlcLinkError(PlcError):
    """No link to the bus (TCP refused or dropped, serial port missing)."""


class PlcTimeout(PlcError):
    """A slave did not answer within its timeout; the bus stays up for the others."""


class PlcProtocolError(PlcError):
    """The answer does not fit the request: another function code, fewer values than asked for, or a
    write echo naming another address or value (pymodbus matches answers by transaction id only)."""


class PlcDeviceError(PlcError):
    """The slave answered with a Modbus exception (illegal address, device busy, ...)."""

    def __init__(self, message: str, exception_code: int) -> None:
        super().__init__(message)
        self.exception_code = exception_code


def pack_text(text: str, registers: int) -> list[int]:
    """Two ASCII characters per register, high byte first, NUL-padded to exactly `registers` registers.

    Why strict: a code that does not fit the device's text area must fail before it is written, not
    be truncated into a different (possibly duplicate) code on the product.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text {text!r} is not ASCII; the register text area holds ASCII only") from exc
    if b"\x00" in raw:
        raise ValueError(f"text {text!r} contains NUL, which marks the end of the register text")
    if len(raw) > 2 * registers:
        raise ValueError(f"text {text!r} is {len(raw)} chars; the text area holds {2 * registers}")
    raw = raw.ljust(2 * registers, b"\x00")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def unpack_text(registers: Sequence[int]) -> str:
    """Inverse of pack_text: stops at the first NUL; refuses non-ASCII bytes with ValueError."""
    raw = bytearray()
    for value in registers:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"register value {value} is outside 0..65535")
        raw += bytes(((value >> 8) & 0xFF, value & 0xFF))
    text = bytes(raw).split(b"\x00", 1)[0]
    try:
        return text.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError(f"register text {bytes(text)!r} is not ASCII") from exc


@dataclass(frozen=True, slots=True)
class BusSpec:
    """Where the bus is: `tcp://host:port`, or a pyserial URL (/dev/ttyUSB0, socket://h:p) for RTU."""

    url: str
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    connect_timeout_s: float = 2.0

    @property
    def is_tcp(self) -> bool:
        return self.url.startswith("tcp://")


Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class ModbusBus:
    """A shared link; `read`/`write` take the device id and that slave's timeout on every call."""

    def __init__(self, spec: BusSpec) -> None:
        self.spec = spec
        self.lock = asyncio.Lock()  # one request on the wire at a time
        self._client: Client | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    def _make_client(self, timeout_s: float) -> Client:
        if self.spec.is_tcp:
            host, _, port = self.spec.url.removeprefix("tcp://").rpartition(":")
            if not host or not port.isdigit():
                raise PlcLinkError(f"PLC bus url {self.spec.url!r}: expected tcp://host:port")
            return AsyncModbusTcpClient(
                host, port=int(port), timeout=timeout_s, retries=0, reconnect_delay=0
            )
        return AsyncModbusSerialClient(
            self.spec.url,
            framer=FramerType.RTU,
            baudrate=self.spec.baudrate,
            parity=self.spec.parity,
            stopbits=self.spec.stopbits,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
        )

    async def connect(self, max_slave_timeout_s: float = 1.0) -> None:
        """Open the link; pymodbus' own timeout is the longest slave's, ours cut each call shorter."""
        self.close()
        client = self._make_client(max(max_slave_timeout_s, 0.05))
        try:
            async with asyncio.timeout(self.spec.connect_timeout_s):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            raise PlcLinkError(f"PLC bus {self.spec.url}: cannot connect: {exc or 'timed out'}") from exc
        if not ok:
            client.close()
            raise PlcLinkError(f"PLC bus {self.spec.url}: connection refused or timed out")
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(
        self, table: Table, address: int, count: int, *, device_id: int, timeout_s: float, label: str = ""
    ) -> list[int]:
        """Read `count` values (bits as 0/1) from one slave."""
        c = self._c()
        calls: dict[Table, Callable[..., Awaitable[ModbusPDU]]] = {
            Table.COIL: c.read_coils,
            Table.DISCRETE: c.read_discrete_inputs,
            Table.HOLDING: c.read_holding_registers,
            Table.INPUT: c.read_input_registers,
        }
        what = f"{label}read {table} {address}+{count}"
        pdu = await self._call(what, device_id, timeout_s,
                               lambda: calls[table](address, count=count, device_id=device_id), READ_CODES[table])
        values = pdu.bits if table in (Table.COIL, Table.DISCRETE) else pdu.registers
        if len(values) < count:  # a byte count of 0 decodes as no values at all
            raise PlcProtocolError(f"PLC bus {self.spec.url} slave {device_id}: {what}: "
                                   f"the answer holds {len(values)} values")
        return [int(bool(v)) if table in (Table.COIL, Table.DISCRETE) else int(v) for v in values[:count]]

    async def write(
        self, table: Table, address: int, value: int, *, device_id: int, timeout_s: float, label: str = ""
    ) -> None:
        """Write one coil (value 0/1) or one holding register (0..65535) of one slave."""
        if table not in WRITABLE:
            raise PlcError(f"PLC bus {self.spec.url}: {table} {address} is read-only")
        c = self._c()
        if table is Table.COIL:
            what = f"{label}write coil {address}"
            pdu = await self._call(what, device_id, timeout_s,
                                   lambda: c.write_coil(address, bool(value), device_id=device_id), 5)
            echo = [int(bool(b)) for b in pdu.bits[:1]]
            wrote = [int(bool(value))]
        else:
            if not 0 <= value <= 0xFFFF:
                raise PlcError(f"PLC bus {self.spec.url}: value {value} for holding {address} is not 0..65535")
            what = f"{label}write holding {address}"
            pdu = await self._call(what, device_id, timeout_s,
                                   lambda: c.write_register(address, value, device_id=device_id), 6)
            echo, wrote = [int(r) for r in pdu.registers[:1]], [value]
        self._echoed(what, device_id, pdu, address, echo, wrote)

    async def write_many(
        self, address: int, values: Sequence[int], *, device_id: int, timeout_s: float, label: str = ""
    ) -> None:
        """Write holding registers in one request (function 16), which a device applies whole."""
        words = list(values)
        if not words or any(not 0 <= v <= 0xFFFF for v in words):
            raise PlcError(f"PLC bus {self.spec.url}: values for holding {address}+{len(words)} must be "
                           "1..123 registers of 0..65535")
        c = self._c()
        what = f"{label}write holding {address}+{len(words)}"
        pdu = await self._call(what, device_id, timeout_s,
                               lambda: c.write_registers(address, words, device_id=device_id), 16)
        self._echoed(what, device_id, pdu, address, [pdu.count], [len(words)])

    def _echoed(self, what: str, device_id: int, pdu: ModbusPDU, address: int, echo: list[int],
                wrote: list[int]) -> None:
        """A write's normal answer echoes its address and value (or count) (Modbus Application Protocol
        V1.1b3, 6.5, 6.6, 6.12): anything else answered some other request."""
        if pdu.address != address or echo != wrote:
            raise PlcProtocolError(f"PLC bus {self.spec.url} slave {device_id}: {what}: the answer echoes "
                                   f"address {pdu.address} value {echo}, not {address} {wrote}")

    def _c(self) -> Client:
        if self._client is None or not self._client.connected:
            raise PlcLinkError(f"PLC bus {self.spec.url}: not connected")
        return self._client

    async def _call(
        self, what: str, device_id: int, timeout_s: float, request: Callable[[], Awaitable[ModbusPDU]],
        function_code: int,
    ) -> ModbusPDU:
        where = f"PLC bus {self.spec.url} slave {device_id}: {what}"
        async with self.lock:
            try:
                async with asyncio.timeout(timeout_s):
                    pdu = await request()
            except TimeoutError as exc:
                raise PlcTimeout(f"{where}: no answer within {timeout_s}s") from exc
            except ModbusIOException as exc:
                raise PlcTimeout(f"{where}: {exc}") from exc
            except ConnectionException as exc:
                self.close()
                raise PlcLinkError(f"{where}: link lost: {exc}") from exc
            except ModbusException as exc:
                raise PlcError(f"{where}: {exc}") from exc
        if pdu.isError():
            code = int(getattr(pdu, "exception_code", 0))
            raise PlcDeviceError(f"{where}: slave answered Modbus exception {code}", code)
        if self.spec.is_tcp and pdu.transaction_id == 0:
            # pymodbus takes an answer with transaction id 0 for the answer to any request; its client
            # never sends 0 (ids run 1..65000), so over TCP such an answer belongs to no request of ours.
            raise PlcProtocolError(f"{where}: the answer has transaction id 0, which no request of ours had")
        if pdu.function_code != function_code:
            raise PlcProtocolError(f"{where}: the answer has function code {pdu.function_code}, "
                                   f"not {function_code}")
        return pdu
