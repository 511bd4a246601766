"""The pack being built survives a SIGKILL: `lineagent run --simulate` in its own process is killed while a
box is half full; the ledger file, reopened, holds the box's children; the restarted daemon says it
resumed that box, fills it with the next verified items and closes it. What counts is the ledger file
and the daemon's own output, read from outside the process."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

LINEAGENT = str(Path(sys.executable).parent / "lineagent")


def cli(*args: str) -> tuple[int, str]:
    done = subprocess.run([LINEAGENT, *args], capture_output=True, text=True, timeout=180, check=False,
                          env={**os.environ, "COLUMNS": "200", "LANG": "C.UTF-8"})
    return done.returncode, done.stdout + done.stderr


class Daemon:
    """`lineagent run --simulate` with its output collected by a reader thread (read, never waited on)."""

    def __init__(self, work: Path) -> None:
        self.proc = subprocess.Popen([LINEAGENT, "run", "--simulate", "--dir", str(work), "--rate", "600"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "COLUMNS": "200", "LANG": "C.UTF-8"})
        self.out = ""
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.out += line
                self.changed.notify_all()

    def wait_for(self, pattern: str, limit_s: float = 120) -> re.Match[str]:
        with self.changed:
            found = self.changed.wait_for(lambda: re.search(pattern, self.out) or self.proc.poll() is not None,
                                          limit_s)
        m = re.search(pattern, self.out)
        assert found and m, f"never {pattern!r}; output:\n{self.out}"
        return m


def q(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def until(cond: object, what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s  # a hang detector, not a timing assertion
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.05)  # watching another process's file from a plain test
    raise AssertionError(f"never: {what}")


OPEN_BOX = ("SELECT b.id, COUNT(k.child) FROM pack_builds b JOIN pack_build_children k ON k.build = b.id "
            "WHERE b.level = 'box' AND b.state = 'open' GROUP BY b.id")


def test_a_half_built_box_survives_sigkill_and_is_resumed(tmp_path: Path) -> None:
    work = tmp_path / "sim"
    db = work / "ledger.db"
    first = Daemon(work)
    try:
        first.wait_for("simulated line running")
        conf = ["--config", str(work / "line.live.yaml")]
        code, out = cli("job", "create", "WO-1", "--product", "water500", "--lot", "L1", "--qty", "400",
                        "--packing-spec", "6x4x40", *conf)
        assert code == 0, out
        code, out = cli("job", "start", "WO-1", *conf)
        assert code == 0, out
        until(lambda: q(db, "SELECT COUNT(*) FROM packs WHERE level = 'box'")[0][0] >= 2
              and 2 <= (q(db, OPEN_BOX) or [(0, 0)])[0][1] <= 4, "a box half full after two closed")
        first.proc.kill()  # SIGKILL: no shutdown, no last commit
        first.proc.wait(30)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    assert first.proc.returncode == -signal.SIGKILL

    # The file as the kill left it: intact, the half-built box with its children, each verified, unpacked.
    assert q(db, "PRAGMA integrity_check") == [("ok",)]
    (box, n), = q(db, OPEN_BOX)
    held = [str(r[0]) for r in q(db, "SELECT c.code FROM pack_build_children k JOIN codes c ON c.id = k.child "
                                     "WHERE k.build = ?", box)]
    assert 1 <= n == len(held) <= 5
    states = q(db, "SELECT c.state, COUNT(l.child) FROM pack_build_children k JOIN codes c ON c.id = k.child "
                   "LEFT JOIN pack_links l ON l.child = c.id WHERE k.build = ? GROUP BY c.state", box)
    assert states == [("verified", 0)]

    second = Daemon(work)
    try:
        second.wait_for("simulated line running")
        # The daemon says what it resumed (its log on stdout/journald) and the status record carries it.
        second.wait_for(rf"resumed box: box #{box} with {n} of 6")
        code, out = cli("status", "--json", *conf)
        assert code == 0, out
        resumed = json.loads(out)["stations"]["pack:box"]["resumed"]
        assert resumed.startswith(f"box #{box} with {n} of 6")
        until(lambda: q(db, "SELECT state FROM pack_builds WHERE id = ?", box)[0][0] == "closed",
              "the resumed box filled and closed")
        code, out = cli("job", "stop", "WO-1", *conf)
        assert code == 0, out
    finally:
        second.proc.send_signal(signal.SIGTERM)
        second.proc.wait(90)
    assert second.proc.returncode == 0, second.out

    parent = str(q(db, "SELECT c.code FROM pack_builds b JOIN codes c ON c.id = b.parent WHERE b.id = ?", box)[0][0])
    inside = {str(r[0]) for r in q(db, "SELECT k.code FROM pack_links l JOIN codes p ON p.id = l.parent "
                                       "JOIN codes k ON k.id = l.child WHERE p.code = ?", parent)}
    assert set(held) <= inside and len(inside) == 6
    # No verified item was lost from packing across the kill: each is in a pack or in a box being built.
    lost = q(db, "SELECT c.code FROM codes c JOIN jobs j ON j.id = c.job WHERE j.name = 'WO-1' AND c.level = "
                 "'item' AND c.state = 'verified' AND c.id NOT IN (SELECT child FROM pack_links) AND c.id NOT IN "
                 "(SELECT child FROM pack_build_children)")
    assert lost == []
    assert q(db, "PRAGMA integrity_check") == [("ok",)]
