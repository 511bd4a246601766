"""Where a parent code comes from: scanned pre-printed, printed on demand, or an SSCC the line mints.

Why minted SSCCs go through the ledger like any other code: a minted code must be unique forever, so
the serial counter lives in the ledger (`sscc_series`) and the code gets a `codes` row under a
'minted' package in the same transaction; a restart resumes after the last serial, and the UNIQUE
index on codes refuses a repeat even if the counter were wrong.

A label that cannot be read back is voided and a FRESH code is printed: reprinting the same code
would put two physical labels with one identity into the world if the first one was in fact fine.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

from agent.aggregation.model import AggregationError, LevelPlan
from agent.codes import gs1
from agent.config.model import ParentSource, SsccConfig
from agent.ledger import CodeState, Ledger, LedgerError

# The label printer's side, injected: print these bytes-to-be for this code, and read the label back.
PrintLabel = Callable[[str, str], Awaitable[None]]  # (code, level) -> printed
ReadLabel = Callable[[], Awaitable[str | None]]  # the code read from the fresh label, or None
T = TypeVar("T")


def mint_sscc(ledger: Ledger, cfg: SsccConfig, job: int | None, level: str = "pallet") -> str:
    """The next SSCC of the configured series, durably recorded as an allocated code before return."""
    series = f"{cfg.extension_digit}:{cfg.company_prefix}"
    with ledger.atomic(durable=True) as conn:
        row = conn.execute("SELECT package, next_serial FROM sscc_series WHERE series = ?", (series,)).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO packages(package_id, issuer, level, count, code_format, body_sha256, source, signed,"
                " imported_at) VALUES (?, 'line', ?, 0, 'sscc', '-', 'minted', 0, ?)",
                (f"minted-sscc-{cfg.extension_digit}-{cfg.company_prefix}", level, time.time()),
            )
            package, serial = int(cur.lastrowid or 0), cfg.serial_from
            conn.execute("INSERT INTO sscc_series(series, package, next_serial) VALUES (?, ?, ?)",
                         (series, package, serial))
        else:
            package, serial = int(row[0]), int(row[1])
        if serial > cfg.serial_to:
            raise LedgerError(
                f"SSCC series {series} is exhausted (serial_to {cfg.serial_to}); extend code_sources.sscc"
            )
        code = gs1.make_sscc(cfg.extension_digit, cfg.company_prefix, serial)
        conn.execute("UPDATE sscc_series SET next_serial = ? WHERE series = ?", (serial + 1, series))
        conn.execute("UPDATE packages SET count = count + 1 WHERE id = ?", (package,))
        conn.execute(
            "INSERT INTO codes(code, level, package, state, job, updated_at) VALUES (?, ?, ?, 'allocated', ?, ?)",
            (code, level, package, job, time.time()),
        )
        ledger.append_event("code.minted", {"level": level, "serial": serial}, code=code, job=job)
    return code


@dataclass
class ParentCodes:
    """Obtains a verified parent code for one level, by its configured source."""

    ledger: Ledger
    plan: LevelPlan
    job: int
    sscc: SsccConfig | None = None
    print_label: PrintLabel | None = None
    read_label: ReadLabel | None = None
    max_attempts: int = 3
    executor: Executor | None = None  # where the ledger work runs (a commit may fsync): never the loop

    async def _off(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    async def obtain(self, scanned: str | None = None) -> str:
        """The parent code for the next pack; for `preprinted` it is the code the station scanned."""
        if self.plan.source is ParentSource.PREPRINTED:
            if not scanned:
                raise AggregationError(f"no {self.plan.level} label was scanned; the pre-printed code is missing")
            return scanned
        for _ in range(self.max_attempts):
            code = await self._off(self._fresh)
            if self.print_label is not None:
                await self.print_label(code, self.plan.level)
            read = await self.read_label() if self.read_label is not None else code
            if read == code:
                await self._off(functools.partial(self._settle, code, CodeState.PRINTED))
                return code
            await self._off(functools.partial(self._settle, code, CodeState.VOIDED, read))
        raise AggregationError(
            f"{self.max_attempts} {self.plan.level} labels in a row could not be verified; check the label printer"
        )

    def _settle(self, code: str, state: CodeState, read: str | None = None) -> None:
        if state is CodeState.PRINTED:
            self.ledger.transition(code, CodeState.PRINTED, expect=CodeState.ALLOCATED)
        else:
            self.ledger.transition(code, CodeState.VOIDED, kind="label.voided", expect=CodeState.ALLOCATED,
                                   payload={"read": read, "why": "label not verified after printing"})
        self.ledger.commit()

    def _fresh(self) -> str:
        if self.plan.source is ParentSource.MINT:
            if self.sscc is None:
                raise AggregationError(f"level {self.plan.level!r} mints SSCCs but code_sources.sscc is not set")
            return mint_sscc(self.ledger, self.sscc, self.job, self.plan.level)
        return self.ledger.allocate(self.job, self.plan.level, 1)[0]
