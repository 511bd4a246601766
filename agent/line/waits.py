"""The waits the runtime's loops share."""

from __future__ import annotations

import asyncio


async def wait_any(stop: asyncio.Event, other: asyncio.Event | None, timeout_s: float) -> None:
    """Until `stop` or `other` is set, or `timeout_s` has passed (a loop that also polls)."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waiters.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
