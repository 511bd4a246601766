"""A tiny async Modbus TCP client: the only module that imports pymodbus' client API.

Why a wrapper: pymodbus changes its API at almost every 3.x minor release (`slave=` became `device_id=`
in 3.10, the datastore moved in 3.13). Keeping every call in one place pins the blast radius of the next
upgrade to this file. It also turns pymodbus' mix of exceptions and error PDUs into three typed errors
that say which device, register and function failed, so callers (the Modbus marker, the line PLC) map
them to their own error families without knowing pymodbus.

Strings follow the common PLC convention: two characters per 16-bit register, first character in the
high byte, padded with NUL. Written against pymodbus ~=3.16.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU


class ModbusError(Exception):
    """Base of the errors this adapter raises."""


class ModbusLinkError(ModbusError):
    """No TCP connection to the Modbus device (refused, dropped, or timed out while connecting)."""


class ModbusTimeout(ModbusError):
    """The device did not answer a request in time."""


class ModbusDeviceError(ModbusError):
    """The device answered with a Modbus exception (illegal address, device busy, ...)."""

    def __init__(self, message: str, exception_code: int) -> None:
        super().__init__(message)
        self.exception_code = exception_code


def pack_text(text: str, registers: int) -> list[int]:
    """Two ASCII characters per register, high byte first, NUL-padded to exactly `registers` registers.

    Why strict: a code that does not fit the marker's text area must fail before it is written, not
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
class Endpoint:
    host: str
    port: int
    device_id: int = 1
    timeout_s: float = 1.0


class ModbusTcp:
    """One TCP connection to one Modbus device; requests are serialized by pymodbus' transaction lock.

    Reconnection is left to the caller (pymodbus' own reconnect loop is switched off) so that a lost link
    is reported at once and the caller's retry policy decides what happens next.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._client: AsyncModbusTcpClient | None = None

    @property
    def where(self) -> str:
        return f"modbus tcp {self.endpoint.host}:{self.endpoint.port} device {self.endpoint.device_id}"

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def connect(self) -> None:
        self.close()
        client = AsyncModbusTcpClient(
            self.endpoint.host,
            port=self.endpoint.port,
            timeout=self.endpoint.timeout_s,
            retries=0,
            reconnect_delay=0,
        )
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            raise ModbusLinkError(f"{self.where}: cannot connect: {exc}") from exc
        if not ok:
            client.close()
            raise ModbusLinkError(f"{self.where}: connection refused or timed out")
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read_holding(self, address: int, count: int) -> list[int]:
        pdu = await self._call("read holding registers", address, self._c().read_holding_registers(
            address, count=count, device_id=self.endpoint.device_id))
        return list(pdu.registers)

    async def read_input(self, address: int, count: int) -> list[int]:
        pdu = await self._call("read input registers", address, self._c().read_input_registers(
            address, count=count, device_id=self.endpoint.device_id))
        return list(pdu.registers)

    async def read_coils(self, address: int, count: int) -> list[bool]:
        pdu = await self._call("read coils", address, self._c().read_coils(
            address, count=count, device_id=self.endpoint.device_id))
        return [bool(b) for b in pdu.bits[:count]]

    async def write_registers(self, address: int, values: Sequence[int]) -> None:
        await self._call("write registers", address, self._c().write_registers(
            address, list(values), device_id=self.endpoint.device_id))

    async def write_coil(self, address: int, value: bool) -> None:
        await self._call("write coil", address, self._c().write_coil(
            address, value, device_id=self.endpoint.device_id))

    def _c(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            raise ModbusLinkError(f"{self.where}: not connected")
        return self._client

    async def _call(self, what: str, address: int, request: Awaitable[ModbusPDU]) -> ModbusPDU:
        where = f"{self.where}: {what} at {address}"
        try:
            async with asyncio.timeout(self.endpoint.timeout_s * 2):
                pdu = await request
        except TimeoutError as exc:
            self.close()
            raise ModbusTimeout(f"{where}: no answer within {self.endpoint.timeout_s}s") from exc
        except ConnectionException as exc:
            self.close()
            raise ModbusLinkError(f"{where}: link lost: {exc}") from exc
        except ModbusIOException as exc:
            linked = self.connected
            self.close()
            if not linked:
                raise ModbusLinkError(f"{where}: link lost: {exc}") from exc
            raise ModbusTimeout(f"{where}: {exc}") from exc
        except ModbusException as exc:
            raise ModbusError(f"{where}: {exc}") from exc
        if pdu.isError():
            code = int(getattr(pdu, "exception_code", 0))
            raise ModbusDeviceError(f"{where}: device answered Modbus exception {code}", code)
        return pdu
