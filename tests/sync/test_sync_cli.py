"""`lineagent sync status|resend` and `lineagent receiver` from the operator's side."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from agent.cli.main import app
from agent.sync.outbox import Outbox
from tests.sync.conftest import Broker, fill

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_status_then_resend_requeues_only_delivered_events(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    fill(db, 40, at=1_767_225_600.0)  # 2026-01-01T00:00:00Z, one ms apart
    outbox = Outbox(db)
    batch = outbox.cut(25)
    assert batch is not None
    outbox.mark_acked(batch.id, "stored")
    code, out = run("sync", "status", "--db", str(db), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["backlog_events"], report["unbatched_events"], report["open_batches"]) == (15, 15, 0)
    assert report["connection"] == "never ran"
    code, out = run("sync", "resend", "--db", str(db), "--since", "2026-01-01T00:00:00.010Z")
    assert code == 0, out
    assert "15 delivered events" in out  # events 10..24: delivered and written at or after --since
    resent = outbox.unacked(10)
    assert [(b.first_seq, b.last_seq, b.events) for b in resent] == [(11, 25, 15)]
    code, out = run("sync", "resend", "--db", str(db), "--since", "yesterday")
    assert code == 2 and "ISO 8601" in out


def test_receiver_command_serves_and_refuses_a_bad_broker_url(broker: Broker, tmp_path: Path) -> None:
    code, out = run("receiver", "--broker", "http://x", "--db", str(tmp_path / "r.db"))
    assert code == 2 and "mqtt://host:port" in out
    proc = subprocess.Popen([str(Path(sys.executable).parent / "lineagent"), "receiver", "--broker", broker.url, "--db",
                             str(tmp_path / "r.db")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "r.db").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "r.db").exists()
        assert proc.poll() is None, "the receiver exited"
    finally:
        proc.terminate()
        proc.wait(10)


def test_sync_run_delivers_the_lines_outbox(broker: Broker, tmp_path: Path) -> None:
    import signal
    import sqlite3

    from agent.receiver.service import Receiver
    from agent.receiver.store import SqliteStore
    from tests.helpers import make_line

    line = make_line(tmp_path)
    line.write_text(line.read_text() + f"mqtt: {{broker: '{broker.url}', batch_max_ms: 20}}\n")
    fill(tmp_path / "ledger.db", 50)
    receiver = Receiver(broker.url, SqliteStore(tmp_path / "r.db"))
    receiver.start()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "lineagent"), "sync", "run", "--config", str(line)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        count = 0
        while count < 50 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            count = sqlite3.connect(tmp_path / "r.db").execute("SELECT count(*) FROM epcis_events").fetchone()[0]
        assert count == 50, proc.stdout.read() if proc.poll() is not None and proc.stdout else count
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0].decode()
        receiver.stop()
    assert proc.returncode == 0, out
    code, status = run("sync", "status", "--config", str(line), "--json")
    assert code == 0, status
    report = json.loads(status)
    assert report["backlog_events"] == 0 and report["alarm"] == "ok"
