"""Resource faults stop the line: the ledger's disk full or failing, free space under the floor, the
cloud backlog at its bound.

Why a guard of its own and not an error in each part: once the ledger cannot write, every part of the
agent fails the same way (the feeder cannot make a code `sent`, the camera station cannot commit a
verdict, packing cannot close a pack). Left to themselves they crashed the runtime with an exception
group, or hung, while the conveyor ran on and products left unjudged. So the ledger tells the guard of
every SQLite error it meets (Ledger.on_error, from any thread; agent.ledger.faults says which ones are
a full or failing disk), the guard also watches the free space itself (`storage.min_free_disk_mb`), and
the sync reports a backlog at its bound. On the first of these the guard, on the runtime's loop:
- stops the conveyor (the runtime's line-stop callback; before anything else, so no product passes a
  coder or camera that can no longer record it) and raises a STOP alarm: red light and buzzer, the
  reason in the log, the status record and, when it can still be written, the journal;
- gives back `storage.disk_reserve_mb`, a file kept beside the ledger, so that the stop itself, the
  job's pause and the coders' reconcile can still be written on a disk that filled up;
- holds: no job runs and `job start` is refused until the cause is gone.
The cause is gone when the reserve is back in place, the free space is above the floor again and a
durable ledger write succeeds: that write pauses the interrupted job, and the alarm clears. The job
does not resume by itself: the conveyor starts again only on the operator's `job start`, as IEC
60204-1:2016 §7.5 asks of a machine after a supply interruption (no automatic restart that can surprise
someone at the line); the operator also sees what stood still on the belt.

What is kept: everything committed before the fault. Nothing is sent to a coder whose `sent` record did
not commit (agent/feeder_store.record_sent raises before a byte leaves); a commit that fails loses only
its own group, whose writers are told (agent.ledger.writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path

from agent.config.model import LineConfig
from agent.i18n import _
from agent.jobs import JobError, JobState, get_job, list_jobs, pause_job
from agent.ledger import Ledger, LedgerError
from agent.ledger.faults import ResourceKind, resource_fault
from agent.line.alarms import AlarmBoard, Severity

log = logging.getLogger(__name__)

SOURCE = "ledger"  # the alarm board's source for the guard's own alarms
DEFAULT_MIN_FREE_MB = 200
CHECK_EVERY_S = 1.0  # statvfs is microseconds; a disk fills in minutes, a write fault is reported at once
MB = 1_000_000  # as shutil.disk_usage's caller shows it (agent.sync.backlog.free_disk_mb)
PROBE_BYTES = 1 << 20  # the ledger must be able to grow this much before the hold ends


class Cause(StrEnum):
    DISK_LOW = "disk_low"  # free space under storage.min_free_disk_mb
    LEDGER_WRITE = "ledger_write"  # a ledger write failed: disk full, I/O error, read-only file system
    SYNC = "sync_backlog"  # the cloud backlog reached its bound (the sync raises its own alarm)


def min_free_mb(cfg: LineConfig) -> int:
    """The free-space floor: storage.min_free_disk_mb, else the mqtt section's older key, else 200."""
    if cfg.storage.min_free_disk_mb is not None:
        return cfg.storage.min_free_disk_mb
    return cfg.mqtt.min_free_disk_mb if cfg.mqtt is not None else DEFAULT_MIN_FREE_MB


def free_mb(path: Path) -> float:
    return shutil.disk_usage(path).free / MB


class Reserve:
    """Space held in a file beside the ledger, given back when the disk fills.

    Allocated with posix_fallocate (POSIX.1-2017), so the blocks are really taken, not a sparse file
    that would give nothing back; a file system without it gets the zeros written."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def missing(self) -> int:
        """Bytes still to allocate for the reserve to be whole."""
        try:
            have = self.path.stat().st_blocks * 512
        except FileNotFoundError:
            have = 0
        return max(0, self.size - have)

    def ensure(self) -> bool:
        """Make the reserve whole; False when the disk has no room for it."""
        if self.size <= 0 or self.missing() == 0:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, self.size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    os.pwrite(fd, bytes(self.size), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("disk reserve %s not in place: %s", self.path, exc)
            with contextlib.suppress(OSError):  # a part-allocated reserve would only hide free space
                self.path.unlink()
            return False
        return True

    def release(self) -> bool:
        """Give the space back; True when there was some."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("disk reserve %s not released: %s", self.path, exc)
            return False
        return True


class ResourceGuard:
    """See the module docstring. Loop-owned except `note` and `sync_alarm`, which any thread may call."""

    def __init__(self, ledger: Ledger, board: AlarmBoard, *, min_free_mb: float = DEFAULT_MIN_FREE_MB,
                 reserve_mb: float = 0, check_every_s: float = CHECK_EVERY_S) -> None:
        self.ledger = ledger
        self.board = board
        self.min_free_mb = min_free_mb
        self.check_every_s = check_every_s
        memory = str(ledger.path) == ":memory:"
        self.disk: Path | None = None if memory else ledger.path.parent
        self.reserve: Reserve | None = None if memory else Reserve(
            ledger.path.with_name(ledger.path.name + ".reserve"), int(reserve_mb * MB))
        self.faults: dict[Cause, str] = {}  # active causes -> the operator's words for each
        self.holding = False  # the line was stopped and may not run until the recovery is recorded
        self.checked = False  # the first check has run (until then no job may start: the disk may be full)
        self.cleared = asyncio.Event()  # set when the last cause is gone (the hold ends)
        self.stops = 0  # line stops the guard made (for status and tests)
        self._noted: deque[tuple[Cause, str | None]] = deque()  # from any thread; None: the cause cleared
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._write_noted = False
        self._settled: Callable[[], bool] = lambda: True
        ledger.on_error(self.note)

    @classmethod
    def from_config(cls, cfg: LineConfig, ledger: Ledger, board: AlarmBoard) -> ResourceGuard:
        return cls(ledger, board, min_free_mb=min_free_mb(cfg), reserve_mb=cfg.storage.disk_reserve_mb)

    # ---- what the runtime asks ------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """A cause is active or was just reported: no job may run, the conveyor must not start."""
        return not self.checked or self.holding or bool(self.faults) or bool(self._noted)

    def reason(self) -> str | None:
        return next(iter(self.faults.values()), None)

    def refusal(self) -> str | None:
        """Why `job start` is refused now, or None."""
        if not (self.holding or self.faults or self._noted):
            return None
        why = self.reason() or _("a ledger write failed")
        return _("the line is stopped by a resource fault: {reason}").format(reason=why)

    def note(self, exc: BaseException) -> bool:
        """An error met anywhere (a ledger listener, a failed task): True when it is a resource fault,
        which then stops the line. Safe from any thread; cheap, takes no lock."""
        kind = resource_fault(exc)
        if kind is None:
            return False
        if not self._write_noted:  # a full disk fails every commit: one report until the cause clears
            self._write_noted = True
            self._noted.append((Cause.LEDGER_WRITE, self._write_detail(kind, exc)))
            self._poke()
        return True

    def sync_alarm(self, stop: bool, message: str) -> None:
        """The sync's backlog alarm (from the uplink's thread): at STOP the line stops too."""
        if stop != (Cause.SYNC in self.faults):
            self._noted.append((Cause.SYNC, message if stop else None))
            self._poke()

    def commit(self) -> None:
        """ledger.commit() on the way out: a resource fault is logged (everything committed before it
        is kept), any other failure raises."""
        try:
            self.ledger.commit()
        except LedgerError as exc:
            if not self.note(exc):
                raise
            log.error("ledger: the last group was not committed (%s); everything committed before is kept", exc)

    def pause(self, job: int) -> str:
        """The interrupted job's new state: paused when the ledger takes the write now, else still
        running in the ledger (the guard pauses it when the fault clears). Never raises for that."""
        try:
            if get_job(self.ledger, job).state is JobState.RUNNING:
                pause_job(self.ledger, job)
            return str(get_job(self.ledger, job).state)
        except JobError:  # paused meanwhile by the guard's recovery
            return str(get_job(self.ledger, job).state)
        except (LedgerError, OSError, sqlite3.Error) as exc:  # an atomic block re-raises SQLite's own error
            if not self.note(exc):
                raise
            return str(JobState.RUNNING)

    def close(self) -> None:
        """The daemon ends: the reserve goes (made again at the next start)."""
        if self.reserve is not None:
            self.reserve.release()

    # ---- the guard's task -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, stop_line: Callable[[], Awaitable[object]],
                  settled: Callable[[], bool] = lambda: True) -> None:
        """Until `stop`: take reports, check the free space, stop the line on a new cause, end the
        hold when every cause is gone and `settled()` says the interrupted run has ended (so that an
        operator who sees the alarm clear can start the job at once)."""
        self._settled = settled
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.reserve is not None and not await asyncio.to_thread(self.reserve.ensure):
            log.warning("no disk reserve beside the ledger: a disk that fills may leave the stop unrecorded")
        while not stop.is_set():
            self._wake.clear()
            await self.check(stop_line)
            if not self.checked:
                self.checked = True
                if not self.holding:
                    self.cleared.set()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=self.check_every_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def check(self, stop_line: Callable[[], Awaitable[object]]) -> None:
        before = set(self.faults)
        released = False
        while self._noted:
            cause, detail = self._noted.popleft()
            if detail is None:
                self.faults.pop(cause, None)
            else:
                if cause is Cause.LEDGER_WRITE and cause not in self.faults and self.reserve is not None:
                    released = released or await asyncio.to_thread(self.reserve.release)
                self.faults[cause] = detail
        free = await self._disk_free()
        if free is not None and free < self.min_free_mb:
            self.faults[Cause.DISK_LOW] = self._low_detail(free)
        new = [c for c in self.faults if c not in before]
        for cause in new:
            log.error("LINE STOP (%s): %s", cause, self.faults[cause])
            if cause is not Cause.SYNC:  # the sync's own alarm is on the board already
                self.board.set(SOURCE, cause, True, Severity.STOP, self.faults[cause])
        if released:
            log.warning("disk reserve released so the stop can be recorded")
        if new:
            self.holding = True
            self.cleared.clear()
            self.stops += 1
            await stop_line()
        elif self.holding:
            await self._recover(free)

    async def _recover(self, free: float | None) -> None:
        """End the hold when every cause is gone: the reserve whole again, the free space above the
        floor with room to spare, and a durable write (pausing the interrupted job) accepted."""
        if Cause.SYNC in self.faults or not self._settled():
            return  # the sync clears it when it says so; the run that the fault ended is still ending
        if self.reserve is not None and self.disk is not None and free is not None:
            # Room for the reserve and the floor, beyond what we gave back ourselves.
            need = (self.reserve.missing() + self.reserve.size) / MB + self.min_free_mb
            if free < need or not await asyncio.to_thread(self.reserve.ensure):
                return
            free = await self._disk_free()
            if free is not None and free < self.min_free_mb:
                self.faults[Cause.DISK_LOW] = self._low_detail(free)
                return
        try:
            paused = await asyncio.to_thread(self._record_recovery)
        except (LedgerError, OSError, sqlite3.Error) as exc:
            if resource_fault(exc) is None:
                raise
            return  # the listener reported it; still held
        for cause in list(self.faults):
            self.board.set(SOURCE, cause, False)
        self.faults.clear()
        self._write_noted = False
        self.holding = False
        self.cleared.set()
        for name in paused:
            log.warning("resource fault cleared; job %s is paused: start it again with `lineagent job start %s`",
                        name, name)
        if not paused:
            log.warning("resource fault cleared; the line may run again")

    def _record_recovery(self) -> list[str]:
        """Prove the ledger can grow and commit again, pause every job the fault left running (no job
        runs while the guard holds), and journal it; durable, or it raises.

        The growth probe (PROBE_BYTES written and rolled back inside the transaction) is there because a
        small write fits in pages the file already has: it succeeds on a file that cannot grow, and the
        line would restart only to stop again at the next new page."""
        self.ledger.forgive_failures()  # the run that lost them has ended; see Ledger.forgive_failures
        with self.ledger.atomic() as conn:
            conn.execute("SAVEPOINT probe")
            try:
                conn.execute("INSERT INTO events(at, kind, payload) VALUES (0, 'probe', ?)", (bytes(PROBE_BYTES),))
            finally:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled it all back itself
                    conn.execute("ROLLBACK TO probe")
                    conn.execute("RELEASE probe")
        paused = []
        for job in list_jobs(self.ledger):
            if job.state is JobState.RUNNING:
                pause_job(self.ledger, job.id)
                paused.append(job.name)
        with self.ledger.atomic(durable=True):
            self.ledger.append_event("line.resources_ok", {"causes": sorted(self.faults), "paused": paused})
        return paused

    async def _disk_free(self) -> float | None:
        if self.disk is None:
            return None
        try:
            return await asyncio.to_thread(free_mb, self.disk)
        except OSError as exc:
            self.note(exc)
            return None

    # ---- the operator's words -------------------------------------------------------------------

    def _low_detail(self, free: float) -> str:
        return _("Line stopped: only {free:.0f} MB free on the ledger's disk ({path}), below the {minimum} MB "
                 "minimum. Free disk space; the alarm clears by itself, then start the job again "
                 "(lineagent job start). Everything recorded so far is kept.").format(
            free=free, path=self.disk, minimum=self.min_free_mb)

    def _write_detail(self, kind: ResourceKind, exc: BaseException) -> str:
        what = {ResourceKind.DISK_FULL: _("the disk is full"), ResourceKind.IO_ERROR: _("disk I/O error"),
                ResourceKind.READ_ONLY: _("the file system is read-only")}[kind]
        return _("Line stopped: the ledger cannot write ({what}: {error}). Free disk space on {path} or "
                 "replace the failing disk; the alarm clears by itself once the ledger writes again, then "
                 "start the job again (lineagent job start). Everything committed before is kept; no code "
                 "went to a coder without its record.").format(what=what, error=_first_line(exc), path=self.disk)

    def _poke(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the daemon is ending anyway
            loop.call_soon_threadsafe(self._wake.set)


def _first_line(exc: BaseException) -> str:
    """SQLite's or the OS's own words for the fault: the innermost cause of the first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
