"""A transport (drivers/transport.py) seen through the printer error types, for lock-step protocols.

Why not drivers/printers/framed.py: its reader task routes *frames* of one FrameSpec to waiting
requests. Videojet WSI answers with either a bare 3-character check sequence or an STX/ETX packet, and
Hitachi with single ACK/NAK bytes around an ENQ handshake; neither is one frame kind. These drivers
therefore read the stream themselves, one exchange at a time, and this adapter only turns transport
failures into LinkDown / DeviceTimeout that say what was awaited.

It also bounds what one request may cost: a device that keeps sending after a request (noise, filler
bytes a parser skips, a stream with no terminator) would keep a read-until-complete loop alive for ever,
so more than MAX_ANSWER bytes since the last write is a ProtocolError (tests/fuzz found the hang).
"""

from __future__ import annotations

from drivers.printers.base import DeviceTimeout, LinkDown, ProtocolError
from drivers.transport import LinkClosed, ReadTimeout, Transport, open_transport

# Bytes after one request without the answer being complete: several times the longest answer of any
# of these protocols (a 4 KiB NGPCL message), so only a babbling or flooding device reaches it.
MAX_ANSWER = 16 * 1024


class CoderLink:
    def __init__(self, url: str, *, name: str, baud: int = 115200, trace: bool = False,
                 connect_timeout_s: float = 3.0) -> None:
        self.url = url
        self.name = name
        self.baud = baud
        self.trace = trace
        self.connect_timeout_s = connect_timeout_s
        self._transport: Transport | None = None
        self._since_write = 0  # bytes read since the last write

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._transport.is_open

    async def open(self) -> None:
        await self.close()
        try:
            transport = open_transport(self.url, baud=self.baud, name=self.name, trace=self.trace)
        except ValueError as exc:
            raise LinkDown(f"{self.name}: {exc}") from exc
        try:
            await transport.open(self.connect_timeout_s)
        except LinkClosed as exc:
            raise LinkDown(f"{self.name}: {exc}") from exc
        self._transport = transport

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    async def write(self, data: bytes) -> None:
        if self._transport is None:
            raise LinkDown(f"{self.name}: link to {self.url} is not open")
        try:
            await self._transport.write(data)
        except LinkClosed as exc:
            await self.close()
            raise LinkDown(f"{self.name}: {exc}") from exc
        self._since_write = 0

    async def read(self, timeout_s: float, what: str) -> bytes:
        """At least one byte within the timeout; DeviceTimeout names what we were waiting for, and
        ProtocolError says the device has sent more than MAX_ANSWER bytes since the last request."""
        if self._transport is None:
            raise LinkDown(f"{self.name}: link to {self.url} is not open")
        try:
            data = await self._transport.read(timeout_s)
        except ReadTimeout as exc:
            raise DeviceTimeout(f"{self.name}: no {what} from {self.url} within {timeout_s} s") from exc
        except LinkClosed as exc:
            await self.close()
            raise LinkDown(f"{self.name}: {exc}") from exc
        self._since_write += len(data)
        if self._since_write > MAX_ANSWER:
            n, self._since_write = self._since_write, 0
            raise ProtocolError(f"{self.name}: {n} bytes from {self.url} since the last request and still no "
                                f"complete {what}: the device does not stop sending")
        return data
