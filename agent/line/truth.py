"""The plant's own record of what physically happened, as an append-only JSON-lines file.

Why the plant writes it, not the agent: a fault audit must compare the agent's ledger with the truth,
and the truth cannot come from the process under test. One JSON object a line, flushed and fsynced
per batch (every record waiting when the previous write returned), so a record that reached the file
stays there; a reader may find the last line cut short and must skip it. Records (`k` is the kind):

    {"k": "start", "at": T, "config": PATH, "rate_per_min": R, "seed": S, "camera_at": C, "gate_at": G,
     "coders": {NAME: {"capacity": N, "url": URL}}, "watchdog_s": W}
    {"k": "recv", "coder": NAME, "text": TEXT, "at": T, "copies": N}
                                                          the coder accepted a record into its FIFO (seen
                                                          by the plant's clock at T, within one pitch);
                                                          N copies of TEXT in the FIFO then (2: a resend
                                                          while the first was still there)
    {"k": "item", "seq": N, "coder": NAME, "text": TEXT | null, "defect": KIND | null}
                                                          item N passed the print head; TEXT is what the
                                                          coder printed on it (null: nothing), KIND the
                                                          rejecting defect the plant gave that print
    {"k": "frame", "seq": N, "clients": K}              the camera imaged item N (frame number N), sent
                                                          to K connected clients
    {"k": "gate", "seq": N, "out": "rejected" | "passed"}  item N reached the reject gate
    {"k": "belt", "running": BOOL, "watchdog_trips": N}  the conveyor started or stopped
    {"k": "stop", "at": T}                              the plant stopped cleanly
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any


class TruthLog:
    """Append-only; `write` never blocks the plant's loop (the file work runs in a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.records = 0

    def write(self, record: dict[str, Any]) -> None:
        self._pending.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        self.records += 1
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._flusher(), name="truth-log")

    async def _flusher(self) -> None:
        while not (self._closing and not self._pending):
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                await asyncio.to_thread(self._sync, self._take())

    def _take(self) -> bytes:
        batch, self._pending = b"".join(self._pending), []
        return batch

    def _sync(self, batch: bytes) -> None:
        view = memoryview(batch)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    async def close(self) -> None:
        """Everything written so far reaches the file (in order) before it is closed."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._pending:  # never started: write here
            self._sync(self._take())
        os.close(self._fd)


def read_truth(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a last line cut short by a crash is skipped."""
    out: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            out.append(json.loads(line))
    return out
