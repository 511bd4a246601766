"""Run a driver's operations against a hostile device: each ends with a result or a typed error in time.

`Bounded` runs every operation under a generous hang detector (HANG_S: not a speed check; a driver
that answers at all answers in milliseconds here) and sorts what came out: a result, one of the
allowed error types, or a failure (another exception type, or the hang detector firing). Errors in
background tasks (a driver's reader task dying of an IndexError) reach the event loop's exception
handler, which is collected too: a parser that crashes off the caller's path is as much a bug.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

HANG_S = 10.0


class Hang(AssertionError):
    pass


@dataclass
class Bounded:
    allowed: tuple[type[BaseException], ...]
    what: str
    outcomes: Counter[str] = field(default_factory=Counter)
    loop_errors: list[str] = field(default_factory=list)
    # A library's own, documented reaction to garbage, seen by the loop and not by our code (pymodbus).
    tolerated: Callable[[dict[str, Any]], bool] = lambda _context: False
    last_error: BaseException | None = None  # the allowed error of the last op (None: it succeeded)

    def watch_loop(self) -> None:
        def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if exc is None or isinstance(exc, self.allowed):
                return  # a log message, or a typed error nobody collected: not a crash
            if self.tolerated(context):
                self.outcomes[f"tolerated: {type(exc).__name__}"] += 1
                return
            self.loop_errors.append(f"{context.get('message')}: {type(exc).__name__}: {exc}")

        asyncio.get_running_loop().set_exception_handler(handler)

    async def op(self, name: str, call: Callable[[], Awaitable[object]]) -> object:
        """The result of `call()`, or None after an allowed error; AssertionError for anything else."""
        self.last_error = None
        try:
            async with asyncio.timeout(HANG_S):
                result = await call()
        except TimeoutError as exc:
            raise Hang(f"{self.what}: {name} did not end within {HANG_S} s (a hang)") from exc
        except self.allowed as exc:
            self.outcomes[f"{name}: {type(exc).__name__}"] += 1
            self.last_error = exc
            return None
        except Exception as exc:
            raise AssertionError(f"{self.what}: {name} raised {type(exc).__name__}: {exc}") from exc
        self.outcomes[f"{name}: ok"] += 1
        return result

    async def quiet(self, name: str, call: Callable[[], Awaitable[object]]) -> None:
        """A clean-up call (close): it must end in time and raise nothing at all."""
        try:
            async with asyncio.timeout(HANG_S):
                await call()
        except TimeoutError as exc:
            raise Hang(f"{self.what}: {name} did not end within {HANG_S} s") from exc

    def check_loop(self) -> None:
        gc.collect()  # a task that died unobserved reports itself when it is collected
        assert not self.loop_errors, f"{self.what}: errors off the caller's path: {self.loop_errors}"


def run(scenario: Coroutine[Any, Any, None]) -> None:
    """One example in its own event loop, with an outer limit far above any sum of HANG_S."""
    asyncio.run(asyncio.wait_for(scenario, 120))
