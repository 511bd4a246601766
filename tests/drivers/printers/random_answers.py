"""A driver against a TCP device that answers random bytes: only typed PrinterErrors may come out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from drivers.printers.base import Printer, PrinterError, Record


async def _answering(answer: bytes) -> tuple[asyncio.Server, int]:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


def only_printer_errors(make_driver: Callable[[str], Printer], answer: bytes) -> None:
    """Connect, ask the status and push one record; anything but a PrinterError fails the test."""

    async def go() -> None:
        server, port = await _answering(answer)
        driver = make_driver(f"tcp://127.0.0.1:{port}")
        try:
            with contextlib.suppress(PrinterError):
                await driver.connect()
                await driver.status()
                await driver.push([Record(1, "A")])
        finally:
            await driver.close()
            server.close()

    asyncio.run(asyncio.wait_for(go(), 20))
