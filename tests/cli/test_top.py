"""`lineagent top`: figures put in a ledger and a status record come out as the numbers the test
computes itself, on a real 80x24 terminal (tmux) as well as with --once."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from agent.cli.main import app
from agent.cli.top_view import Rates, render
from agent.ledger import Ledger
from agent.line.status import DaemonStatus, status_path, write_status
from tests.helpers import seed_codes

# What the fixture puts in, and what the test expects from it (computed here, not by the code under test).
VERIFIED, REJECTS, PRINTED_ONLY, SENT, ALLOCATED, IN_DOUBT = 40, {"no_read": 3, "mismatch": 2}, 2, 6, 10, 1
TARGET = 100
PRINTED = VERIFIED + sum(REJECTS.values()) + PRINTED_ONLY  # 47
JUDGED = VERIFIED + sum(REJECTS.values())  # 45
EVENTS, ACKED_THROUGH, BATCHED_THROUGH = 30, 20, 25
UNDELIVERED = EVENTS - ACKED_THROUGH  # 5 in the open batch + 5 not yet batched
OLDEST_AGE_S = 30.0
CLOSED_BOXES, BOX, FILLING = 6, 6, 4
PACKED = CLOSED_BOXES * BOX  # good items linked into the closed boxes
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from agent.cli.main import main; main()"]


def _move(conn: Any, ids: list[int], *states: str) -> None:
    for s in states:  # through every legal step: the ledger's trigger refuses a jump
        conn.executemany("UPDATE codes SET state = ? WHERE id = ?", [(s, i) for i in ids])


def build(tmp: Path, now: float) -> Path:
    db = tmp / "ledger.db"
    ledger = Ledger(db)
    total = VERIFIED + sum(REJECTS.values()) + PRINTED_ONLY + SENT + ALLOCATED + IN_DOUBT + 200
    seed_codes(ledger, [f"IT{i:05d}" for i in range(total)])
    seed_codes(ledger, [f"BX{i:03d}" for i in range(20)], level="box", package_id="p2")
    with ledger.atomic(durable=True) as conn:
        conn.execute("INSERT INTO jobs(name, gtin, product_name, lot, target_qty, level, template, state, created_at)"
                     " VALUES ('WO-7', '09506000134352', 'Water', 'L1', ?, 'item', 'dl', 'running', ?)",
                     (TARGET, now))
        job = conn.execute("SELECT id FROM jobs").fetchone()[0]
        ids = [r[0] for r in conn.execute("SELECT id FROM codes WHERE level = 'item' ORDER BY id")]
        conn.execute("UPDATE codes SET job = ? WHERE level = 'item'", (job,))
        n = 0

        def take(k: int) -> list[int]:
            nonlocal n
            n += k
            return ids[n - k:n]

        good = take(VERIFIED)
        _move(conn, good, "allocated", "sent", "printed", "verified")
        bad = {v: take(k) for v, k in REJECTS.items()}
        for b in bad.values():
            _move(conn, b, "allocated", "sent", "printed", "rejected")
        _move(conn, take(PRINTED_ONLY), "allocated", "sent", "printed")
        sent = take(SENT)
        _move(conn, sent, "allocated", "sent")
        _move(conn, take(ALLOCATED), "allocated")
        _move(conn, take(IN_DOUBT), "allocated", "sent", "in_doubt")
        conn.executemany("INSERT INTO coder_feed(coder, seq, code, job, sent_at) VALUES ('coder1', ?, ?, ?, ?)",
                         [(i, c, job, now) for i, c in enumerate(sent)])
        rows = [(job, c, i, "good", now) for i, c in enumerate(good)]
        rows += [(job, c, 1000 + i, v, now) for v, b in bad.items() for i, c in enumerate(b)]
        conn.executemany("INSERT INTO items(job, code, seq, verdict, judged_at) VALUES (?, ?, ?, ?, ?)", rows)
        boxes = [r[0] for r in conn.execute("SELECT id FROM codes WHERE level = 'box' ORDER BY id")]
        packs = [(b, "closed") for b in boxes[:CLOSED_BOXES]] + [(boxes[CLOSED_BOXES], "open")]
        conn.executemany("INSERT INTO pack_links(child, parent, linked_at) VALUES (?, ?, ?)",
                         [(c, boxes[i // BOX], now) for i, c in enumerate(good[:PACKED])])
        conn.executemany("INSERT INTO packs(code, level, job, state, expected_count, created_at) "
                         "VALUES (?, 'box', ?, ?, ?, ?)", [(b, job, s, BOX, now) for b, s in packs])
        for i in range(1, EVENTS + 1):
            at = now - OLDEST_AGE_S if i == ACKED_THROUGH + 1 else now - 100 + i
            conn.execute("INSERT INTO events(at, kind, job, uplink) VALUES (?, 'test', ?, 1)", (at, job))
        conn.execute("INSERT INTO sync_batches(first_seq, last_seq, events, created_at, acked_at) "
                     "VALUES (1, ?, ?, ?, ?)", (ACKED_THROUGH, ACKED_THROUGH, now, now))
        conn.execute("INSERT INTO sync_batches(first_seq, last_seq, events, created_at) VALUES (?, ?, ?, ?)",
                     (ACKED_THROUGH + 1, BATCHED_THROUGH, BATCHED_THROUGH - ACKED_THROUGH, now))
        conn.execute("INSERT INTO sync_state(key, value) VALUES ('cursor', ?)", (str(BATCHED_THROUGH),))
    ledger.close()
    beat(db, now)
    return db


def beat(db: Path, now: float) -> None:
    write_status(status_path(db), DaemonStatus(
        pid=os.getpid(), started_at=now - 3725, beat_at=now, state="running", light="amber", job="WO-7",
        devices={"coder1": {"kind": "coder", "state": "printing", "feeder": "feeding", "fifo_target": 24}},
        stations={"camera": {"kind": "verify", "state": "running", "verdicts": {}, "camera": "connected",
                             "plc": "plc1"},
                  "pack:box": {"closed": 99, "partial": 0, "open": FILLING, "rejected": {}, "state": "running"}},
        alarms=[{"source": "sync", "key": "backlog", "severity": "warning", "since": now,
                 "detail": f"the cloud is {UNDELIVERED} events behind"},
                {"source": "plc1", "key": "line_run", "severity": "stop", "since": now,
                 "detail": "cannot stop the line: no answer from the PLC " + "x" * 120}],
        sync={"link": "connected", "acks": 20}))


def _env() -> dict[str, str]:
    # tests/conftest.py widens rich to 200 columns for the tables; here the terminal decides
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def test_once_shows_the_figures_put_in(tmp_path: Path) -> None:
    db = build(tmp_path, time.time())
    res = subprocess.run([*CLI, "top", "--once", "--db", str(db)], capture_output=True, text=True, env=_env(),
                         cwd=ROOT, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "daemon alive" in out and "up 1 h 02 min" in out and "AMBER" in out
    assert f"printed {PRINTED}/{TARGET} ({100 * PRINTED / TARGET:.1f}%)" in out
    assert f"judged {JUDGED}  good {VERIFIED}  packed {PACKED}  in doubt {IN_DOUBT}  voided 0  in FIFOs {SENT}  " \
        f"allocated {ALLOCATED}" in out
    assert f"{100 * VERIFIED / JUDGED:.1f}% (job)" in out
    assert "rejects 5: no_read 3, mismatch 2" in out
    assert "items/min - (10 s)" in out  # one snapshot: no rate is invented
    assert "coder1 printing  feeder feeding  FIFO 6/24" in out
    assert f"box {CLOSED_BOXES} closed, 1 open, filling {FILLING}" in out
    assert f"undelivered {UNDELIVERED}  batches out 1" in out
    assert re.search(r"oldest (29|3\d) s", out)
    # the stop alarm comes before the warning, and a long detail is cut, not wrapped
    assert out.index("STOP") < out.index("WARNING")
    assert all(len(line) <= 80 for line in out.splitlines()), out

    snap = json.loads(CliRunner().invoke(app, ["top", "--once", "--json", "--db", str(db)]).output)
    assert snap["job"]["printed"] == PRINTED and snap["job"]["rejects"] == REJECTS
    assert snap["coders"]["coder1"]["fifo"] == SENT and snap["sync"]["undelivered"] == UNDELIVERED


def test_a_dead_daemon_exits_3_and_a_missing_ledger_4(tmp_path: Path) -> None:
    db = build(tmp_path, time.time() - 60)
    res = CliRunner().invoke(app, ["top", "--once", "--db", str(db)])
    assert res.exit_code == 3 and "daemon NOT RUNNING" in res.output
    assert "filling 0" in res.output and "(as of the last beat)" in res.output  # nothing shown as live
    res = CliRunner().invoke(app, ["top", "--db", str(tmp_path / "nope.db")])
    assert res.exit_code == 4 and not (tmp_path / "nope.db").exists()


def test_rates_come_from_successive_snapshots() -> None:
    r = Rates()
    job = {"id": 1, "printed": 0, "judged": 0, "good": 0}
    for t in range(0, 121, 2):  # 600 items/min for a minute, then 1200/min with 9 of 10 good
        n = 10 * t if t <= 60 else 600 + 20 * (t - 60)
        g = n if t <= 60 else 600 + 18 * (t - 60)
        r.add({"at": 1000.0 + t, "job": dict(job, printed=n, judged=n, good=g)})
    assert r.per_min(10) == pytest.approx(1200.0)
    assert r.per_min(60) == pytest.approx(1200.0)
    assert r.read_rate(60) == pytest.approx(0.9)
    assert r.covered(60) == pytest.approx(60.0) and r.covered(10) == pytest.approx(10.0)
    young = Rates()
    for s in (0, 1, 2):
        young.add({"at": float(s), "job": dict(job, printed=10 * s, judged=0, good=0)})
    assert young.per_min(60) == pytest.approx(600.0) and young.covered(60) == pytest.approx(2.0)
    assert young.read_rate(60) is None  # nothing judged: no read rate, not 0 %
    r.add({"at": 1200.0, "job": dict(job, id=2, printed=5, judged=5, good=5)})
    assert r.per_min(10) is None  # a new job starts a new history


def test_many_alarms_still_fit_80x24(tmp_path: Path) -> None:
    from agent.cli.top_source import collect

    db = build(tmp_path, time.time())
    snap = collect(db)
    snap["alarms"] = [{"severity": "stop", "source": f"dev{i}", "key": "lost", "detail": "gone"} for i in range(40)]
    buf = io.StringIO()
    Console(file=buf, width=80, height=24, force_terminal=False).print(render(snap, Rates(), 80, 24, ledger=db))
    rows = buf.getvalue().splitlines()
    assert len(rows) <= 24 and all(len(x) <= 80 for x in rows)
    assert rows[0].startswith("lineagent top") and "WO-7" in rows[1]
    assert any("more alarms" in x for x in rows)


def _capture(tmux: list[str], session: str) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True,
                          check=False).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/setup installs it)")
def test_live_view_on_an_80x24_terminal(tmp_path: Path) -> None:
    now = time.time()
    db = build(tmp_path, now)
    stop = threading.Event()

    def line() -> None:  # a short simulated line: the daemon's beat, and codes printed and judged
        ledger = Ledger(db)
        try:
            while not stop.wait(0.3):
                with ledger.atomic() as conn:
                    ids = [r[0] for r in conn.execute(
                        "SELECT id FROM codes WHERE state = 'allocated' AND level = 'item' LIMIT 2")]
                    _move(conn, ids, "sent", "printed", "verified")
                    conn.executemany("INSERT INTO items(job, code, seq, verdict, judged_at) "
                                     "VALUES (1, ?, ?, 'good', ?)", [(c, 5000 + c, time.time()) for c in ids])
                ledger.commit()
                beat(db, time.time())
        finally:
            ledger.close()

    sim = threading.Thread(target=line, daemon=True)
    sim.start()
    session = f"top-test-{os.getpid()}"
    rc = tmp_path / "rc"
    cli = shlex.join(CLI)
    cmd = f"cd {ROOT} && {cli} top --db {db} --interval 0.5; echo $? > {rc}; sleep 120"
    tmux = ["tmux", "-L", session, "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", "-s", session, cmd], check=True,
                   env={**_env(), "TERM": "xterm-256color"})
    try:
        screen = ""
        for _ in range(120):  # up to a minute on a busy machine; no timed assert
            time.sleep(0.5)
            screen = _capture(tmux, session)
            if re.search(r"items/min \d+ \(\d+ s\)", screen) and "coder1" in screen:
                break
        rows = screen.splitlines()
        assert re.search(r"items/min \d+ \(\d+ s\)", screen), screen
        assert "daemon alive" in rows[0] and "WO-7" in rows[1], screen
        assert "rejects 5: no_read 3, mismatch 2" in screen and "FIFO" in screen, screen
        assert len(rows) <= 24 and all(len(r) <= 80 for r in rows), screen
        stop_row = next(i for i, r in enumerate(rows) if r.startswith(" STOP"))
        assert rows[stop_row].endswith("…") and rows[stop_row + 1].startswith(" WARNING"), screen  # cut, not wrapped
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True)
        for _ in range(60):
            if rc.exists() and rc.read_text().strip():
                break
            time.sleep(0.5)
        assert rc.read_text().strip() == "0"
        # the main screen is back (alternate screen left), the frame is gone from it
        after = _capture(tmux, session)
        assert "items/min" not in after
    finally:
        stop.set()
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)
        sim.join(5)


def test_to_a_pipe_it_prints_whole_frames_and_ends_on_sigterm(tmp_path: Path) -> None:
    db = build(tmp_path, time.time())
    out = tmp_path / "frames.txt"
    with out.open("w") as sink:
        proc = subprocess.Popen([*CLI, "top", "--db", str(db), "--interval", "0.2"], stdout=sink,
                                stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
        try:
            for _ in range(240):  # until two frames are out, on a busy machine too
                time.sleep(0.25)
                if out.read_text().count("lineagent top") >= 2:
                    break
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = out.read_text()
    assert proc.returncode == 0, err
    assert text.count("lineagent top") >= 2 and "\x1b[?1049h" not in text  # no alternate-screen codes
    assert all(len(line) <= 80 for line in text.splitlines())
