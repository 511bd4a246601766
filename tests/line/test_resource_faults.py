"""A full disk and a failing commit stop the line cleanly, as the plant and the files show it.

The daemon runs in a process of its own on a simulated line (tests/line/fault_host.py: coder on a pty,
a real pymodbus PLC, the plant-fed camera) and meets real faults: SQLITE_FULL from a ledger capped at its
size (`PRAGMA max_page_count`, portable) and ENOSPC from a 16 MB tmpfs filled up (root only). What counts
is what leaves the process: the PLC's coils and counter read over Modbus, the status record, stderr,
the exit code, the ledger file afterwards, and the coder simulator's own record of what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from rich.console import Console

from agent.config import load_config
from agent.demo import prepare
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import Ledger
from agent.line.status import read_status, status_path
from drivers.plc import LinePlc, Signal

ROOT = Path(__file__).resolve().parents[2]
LINEAGENT = str(Path(sys.executable).parent / "lineagent")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "LANGUAGE": "en"}


def make_line(work: Path, ledger_dir: Path | None = None, **storage: object) -> Path:
    """Keys, config and codes for a 300-item job, started; no MQTT (the broker is not under test)."""
    with Path(os.devnull).open("w") as sink:
        prepare(work, 300, Console(file=sink))
    path = work / "line.yaml"
    raw = yaml.safe_load(path.read_text())
    raw.pop("mqtt", None)
    raw["storage"].update(storage)
    if ledger_dir is not None:
        for suffix in ("", "-wal", "-shm"):
            if (work / f"ledger.db{suffix}").exists():
                shutil.move(work / f"ledger.db{suffix}", ledger_dir / f"ledger.db{suffix}")
        raw["storage"]["ledger"] = str(ledger_dir / "ledger.db")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    ledger = Ledger(cfg.resolve(cfg.storage.ledger))
    try:
        job = create_job(ledger, JobSpec(name="WO-1", gtin="09506000134352", product_name="water", lot="L1",
                                         target_qty=300, template="dl", packing_spec="6x4x40"))
        start_job(ledger, job)
    finally:
        ledger.close()
    return path


class Daemon:
    """The host process, the PLC as the test reads it over Modbus, and the files it leaves."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.cfg = load_config(config)
        self.ledger = self.cfg.resolve(self.cfg.storage.ledger)
        self.plant_log = config.parent / "plant.json"
        self.stderr = config.parent / "host.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.plc: LinePlc | None = None

    async def start(self) -> None:
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.line.fault_host", str(self.config),
                                          str(self.plant_log)], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                         stderr=err)
        live = self.config.with_name(self.config.stem + ".live.yaml")
        await self.until(live.exists, "the plant wrote its live config", 60)
        await asyncio.sleep(0.2)  # written in one call; give the rename a moment on a loaded machine
        self.plc = LinePlc(load_config(live).device_settings("plcs", "plc1"), name="observer")
        await self.plc.open()

    async def read(self) -> dict[Signal, int]:
        assert self.plc is not None
        return await self.plc.read_many([Signal.LINE_RUN, Signal.LIGHT_RED, Signal.COUNTER])

    async def until(self, check: Callable[[], object], what: str, limit_s: float = 90) -> None:
        """A hang detector, not a timing assertion: generous for a busy 2-core machine."""
        for _ in range(int(limit_s / 0.1)):
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) before: {what}\n"
                                     + self.stderr.read_text()[-3000:])
            got = check()
            if asyncio.iscoroutine(got):
                got = await got
            if got:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"never: {what}; stderr:\n{self.stderr.read_text()[-3000:]}")

    async def running(self) -> bool:
        v = await self.read()
        return bool(v[Signal.LINE_RUN]) and v[Signal.COUNTER] > 15

    async def stopped_red(self) -> bool:
        v = await self.read()
        return not v[Signal.LINE_RUN] and bool(v[Signal.LIGHT_RED])

    def status_alarm(self, key: str) -> dict[str, object] | None:
        st = read_status(status_path(self.ledger))
        if st is None:
            return None
        return next((a for a in st.alarms if a["source"] == "ledger" and a["key"] == key), None)

    def runs_the_job(self) -> bool:
        st = read_status(status_path(self.ledger))
        return self.job_state() == "running" and st is not None and st.job == "WO-1" and st.state != "fault"

    def job_state(self) -> str:
        conn = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True)
        try:
            return str(conn.execute("SELECT state FROM jobs WHERE name = 'WO-1'").fetchone()[0])
        finally:
            conn.close()

    async def terminate(self) -> tuple[int, str]:
        """SIGTERM; the exit code and stderr once the process is gone (90 s: a hang detector)."""
        assert self.proc is not None
        if self.plc is not None:
            await self.plc.close()
        self.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = await asyncio.to_thread(self.proc.wait, 90)
        print(f"SIGTERM to exit: {time.monotonic() - t0:.2f} s")  # a figure for the report, not asserted
        return code, self.stderr.read_text()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def serial_of(text: str) -> str:
    """The serial (AI 21) of a printed GS1 Digital Link URI (GS1 Digital Link URI Syntax 1.2, §4)."""
    return unquote(text.split("/21/", 1)[1].split("/", 1)[0].split("?", 1)[0])


def check_files(ledger: Path, plant_log: Path) -> None:
    """The ledger intact; the coder received only codes whose `sent` record had committed, each once
    (again only after the coder proved it flushed: `returned`); no code `sent` that it never received."""
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(conn.execute("SELECT code, state FROM codes WHERE level = 'item'").fetchall())
        journal: dict[str, Counter[str]] = {"codes.sent": Counter(), "codes.returned": Counter()}
        for kind, payload in conn.execute(
                "SELECT kind, payload FROM events WHERE kind IN ('codes.sent', 'codes.returned')"):
            journal[kind].update(json.loads(payload)["codes"])
    finally:
        conn.close()
    sent, returned = journal["codes.sent"], journal["codes.returned"]
    plant = json.loads(plant_log.read_text())
    received = Counter(serial_of(t) for t in plant["received"])
    assert received, "the coder never received a code"
    # Durable before its bytes leave: each time the coder received a code, a committed `sent` preceded it.
    unrecorded = [c for c, n in received.items() if sent[c] < n]
    assert not unrecorded, f"the coder received codes whose sent record never committed: {unrecorded[:5]}"
    twice = [c for c, n in received.items() if n > returned[c] + 1]
    assert not twice, f"codes the coder received twice without proof the first was flushed: {twice[:5]}"
    ghosts = [c for c, s in states.items() if s == "sent" and c not in received]
    assert not ghosts, f"codes `sent` in the ledger the coder never received: {ghosts[:5]}"
    printed = [serial_of(t) for t in plant["printed"]]
    assert len(printed) == len(set(printed)), "a code printed twice"


def test_a_commit_that_fails_sqlite_full_stops_the_line_and_the_operator_restarts_it(tmp_path: Path) -> None:
    config = make_line(tmp_path)
    d = Daemon(config)

    async def scenario() -> None:
        await d.start()
        await d.until(d.running, "the line runs")
        assert d.proc is not None
        d.proc.send_signal(signal.SIGUSR1)  # the ledger file can grow no more: SQLITE_FULL
        await d.until(d.stopped_red, "conveyor off and the red light on")
        await d.until(lambda: d.status_alarm("ledger_write"), "the status record says why")
        alarm = d.status_alarm("ledger_write")
        assert alarm is not None and alarm["severity"] == "stop"
        assert "database or disk is full" in str(alarm["detail"])
        await d.until(lambda: (st := read_status(status_path(d.ledger))) and st.state == "fault"
                      and st.light == "red", "the status record shows the hold")
        count = (await d.read())[Signal.COUNTER]
        await asyncio.sleep(0.5)
        assert (await d.read())[Signal.COUNTER] == count  # nothing moves

        code, out = await cli("job", "start", "WO-1", "--config", str(d.config))
        assert code != 0 and "resource fault" in out, out  # refused while the fault holds

        d.proc.send_signal(signal.SIGUSR2)  # room again: the alarm clears, the job is paused
        await d.until(lambda: d.status_alarm("ledger_write") is None, "the alarm clears")
        await d.until(lambda: d.job_state() == "paused", "the interrupted job is paused")
        assert not (await d.read())[Signal.LINE_RUN]  # no automatic restart
        code, out = await cli("job", "start", "WO-1", "--config", str(d.config))
        assert code == 0, out
        # The daemon runs the job again. (Whether the camera then judges the items that stood between
        # print head and camera is the restart-tracking part of the faults issue, not this test's.)
        await d.until(d.runs_the_job, "the daemon runs the job again after `job start`")

        code, err = await d.terminate()
        assert code == 0, err
        assert "Traceback" not in err, err
        assert "LINE STOP" in err  # the daemon's log said why

    try:
        asyncio.run(scenario())
    finally:
        d.kill()
    check_files(d.ledger, d.plant_log)


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(LINEAGENT, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=ENV)
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode()


@contextlib.contextmanager
def tmpfs(size_mb: int) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="lineagent-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)], check=True,
                   capture_output=True, timeout=30)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True, timeout=30)
        with contextlib.suppress(OSError):
            where.rmdir()


def can_mount() -> str | None:
    if os.geteuid() != 0:
        return "mounting a 16 MB tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount(8) here"
    return None


def fill(disk: Path) -> Path:
    """Write a file until the file system refuses (ENOSPC)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, bytes(64 * 1024))
        with contextlib.suppress(OSError):  # the last pages, below 64 KB
            while True:
                os.write(fd, bytes(4096))
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(can_mount() is not None, reason=str(can_mount()))
def test_a_full_filesystem_stops_the_line_records_why_and_sigterm_ends_the_daemon(tmp_path: Path) -> None:
    with tmpfs(16) as disk:
        # No free-space floor: the ledger meets the full disk itself (ENOSPC -> SQLITE_FULL).
        config = make_line(tmp_path, disk, min_free_disk_mb=0, disk_reserve_mb=1)
        d = Daemon(config)

        async def scenario() -> None:
            await d.start()
            await d.until(d.running, "the line runs")
            filler = await asyncio.to_thread(fill, disk)
            await d.until(d.stopped_red, "conveyor off and the red light on")
            await d.until(lambda: d.status_alarm("ledger_write"), "the status record says why")
            assert "the disk is full" in str(d.status_alarm("ledger_write"))  # SQLite's ENOSPC or the OS's
            filler.unlink()  # the operator frees space: the alarm clears, the job waits for `job start`
            await d.until(lambda: d.status_alarm("ledger_write") is None, "the alarm clears")
            await d.until(lambda: d.job_state() == "paused", "the interrupted job is paused")
            code, out = await cli("job", "start", "WO-1", "--config", str(d.config))
            assert code == 0, out
            await d.until(d.runs_the_job, "the daemon runs the job again")
            await asyncio.to_thread(fill, disk)  # full again, mid-job; SIGTERM while the fault holds
            await d.until(lambda: d.status_alarm("ledger_write"), "the second fault in the status record")
            await d.until(d.stopped_red, "conveyor off and the red light on, again")
            code, err = await d.terminate()
            assert code == 0, err
            assert "Traceback" not in err, err

        try:
            asyncio.run(scenario())
        finally:
            d.kill()
        check_files(d.ledger, d.plant_log)
        # The reserve given back made room to journal the stop and the pause.
        conn = sqlite3.connect(f"file:{d.ledger}?mode=ro", uri=True)
        try:
            events = [(str(k), json.loads(p)) for k, p in conn.execute(
                "SELECT kind, payload FROM events WHERE kind IN ('alarm.raised', 'job.paused') ORDER BY seq")]
        finally:
            conn.close()
        raised = [p for k, p in events if k == "alarm.raised" and p["key"] == "ledger_write"]
        assert raised and "disk is full" in raised[0]["detail"]
        assert any(k == "job.paused" for k, _ in events)


def test_lineagent_run_below_the_free_space_floor_holds_and_says_why(tmp_path: Path) -> None:
    """`lineagent run` itself (no devices): a floor above what this disk has free is a breach from the
    first check. The operator sees it in `status`, `job start` is refused, SIGTERM ends it cleanly."""
    from tests.helpers import make_line as keys_and_config

    path = keys_and_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["storage"]["min_free_disk_mb"] = 1_000_000  # a terabyte: more than this disk has free
    raw["storage"]["disk_reserve_mb"] = 1
    path.write_text(yaml.safe_dump(raw))
    with Ledger(tmp_path / "ledger.db") as ledger:
        start_job(ledger, create_job(ledger, JobSpec(name="WO-9", gtin="09506000134352", product_name="water",
                                                     lot="L1", target_qty=10)))
    out_path, err_path = tmp_path / "run.out", tmp_path / "run.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([LINEAGENT, "run", "--config", str(path)], stdout=out, stderr=err, env=ENV)
    try:
        status = status_path(tmp_path / "ledger.db")
        for _ in range(600):  # a hang detector
            st = read_status(status)
            if st is not None and any(a["key"] == "disk_low" for a in st.alarms):
                break
            assert proc.poll() is None, err_path.read_text()
            time.sleep(0.1)
        else:
            raise AssertionError("no disk_low alarm in the status record")
        assert st.state == "fault" and st.light == "red"
        code, shown = asyncio.run(cli("status", "--config", str(path)))
        # The table wraps a long detail over lines: read the cells' words in order, borders dropped.
        words = " ".join(shown.translate({ord(c): " " for c in "│┃"}).split())
        assert "ledger disk almost full" in words and "MB minimum" in words, shown
        code, refused = asyncio.run(cli("job", "start", "WO-9", "--config", str(path)))
        assert code == 1 and "resource fault" in refused, refused
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, err_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert "Traceback" not in err_path.read_text(), err_path.read_text()
    said = out_path.read_text()
    assert "stopped by a resource fault that is still active" in said and "MB free" in said, said
    assert not (tmp_path / "ledger.db.reserve").exists()  # given back at exit
