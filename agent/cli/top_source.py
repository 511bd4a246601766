"""What `lineagent top` (and the demo's progress bar) shows, gathered as one plain dict: a snapshot.

Why a separate module returning a dict: the view (agent/cli/top_view.py) must not care where the
figures come from. Today they come from the daemon's status record (what only the running daemon
knows: device states, alarms, the uplink's link) plus read-only queries on the ledger (facts that stay
true when the daemon is dead: job progress, verdicts, coder FIFO contents, packs, sync backlog). A
control socket to the daemon can replace `collect` later with the same dict.

The ledger is opened read-only (`mode=ro`): a viewer left running over SSH must never write, migrate
or lock the file whose fsyncs pace the line. That is why the sync backlog is queried here rather than
through agent.sync.outbox.Outbox, which opens read-write and migrates; the queries are the same.

Snapshot keys (all JSON-serialisable):
  at, daemon{alive, pid, state, light, job, beat_age_s, up_s}, job{name, state, target, codes{state: n},
  printed, judged, good, packed, rejects{verdict: n}} or None, coders{name: {state, feeder, fifo, fifo_target}},
  stations{name: {kind, state, camera, plc}}, packs{level: {open, parked, closed, filling}} (open/parked:
  packs left unfinished in the ledger; filling: children in the pack the daemon is building now),
  sync{undelivered, delivered, open_batches, oldest_age_s, link, acks}, alarms[{severity, source, key, detail, since}].
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from agent.line.status import read_status, status_path

EMPTY_PACKS = {"open": 0, "parked": 0, "closed": 0, "filling": 0}
PRINTED_STATES = ("printed", "verified", "rejected", "escaped")  # a code in one of these was printed on an item


def collect(ledger: Path, now: float | None = None) -> dict[str, Any]:
    """One snapshot of the line; raises sqlite3.Error when the ledger cannot be read."""
    now = time.time() if now is None else now
    st = read_status(status_path(ledger))
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5.0)
    try:
        job = _job(conn)
        fifo = {str(c): int(n) for c, n in conn.execute(
            "SELECT f.coder, COUNT(*) FROM coder_feed f JOIN codes c ON c.id = f.code WHERE c.state = 'sent' "
            "GROUP BY f.coder")}
        packs = _packs(conn, job)
        sync = _backlog(conn, now)
    finally:
        conn.close()
    coders: dict[str, dict[str, Any]] = {}
    stations: dict[str, dict[str, Any]] = {}
    for name, d in sorted((st.devices if st else {}).items()):
        if d.get("kind", "coder") == "coder":
            coders[name] = {"state": d.get("state"), "feeder": d.get("feeder"), "fifo": fifo.get(name, 0),
                            "fifo_target": d.get("fifo_target")}
    for name, n in fifo.items():
        coders.setdefault(name, {"state": None, "feeder": None, "fifo": n, "fifo_target": None})
    alive = bool(st and st.alive(now))
    for name, s in sorted((st.stations if st else {}).items()):
        if name.startswith("pack:"):  # the pack being filled lives in the daemon until it closes
            if alive:
                packs.setdefault(name[5:], dict(EMPTY_PACKS))["filling"] = int(s.get("open") or 0)
        else:
            stations[name] = {"kind": s.get("kind"), "state": s.get("state"), "camera": s.get("camera"),
                              "plc": s.get("plc")}
    sync["link"] = (st.sync if st else {}).get("link")
    sync["acks"] = (st.sync if st else {}).get("acks")
    return {
        "at": now,
        "daemon": {"alive": alive, "pid": st.pid if st else None,
                   "state": st.state if st else None, "light": st.light if st else None,
                   "job": st.job if st else None,
                   "beat_age_s": round(now - st.beat_at, 1) if st else None,
                   "up_s": round(now - st.started_at) if st else None},
        "job": job,
        "coders": coders,
        "stations": stations,
        "packs": packs,
        "sync": sync,
        "alarms": [dict(a) for a in sorted(st.alarms if st else [], key=lambda a: _sev(a.get("severity")),
                                           reverse=True)],
    }


def _sev(name: object) -> int:
    return {"stop": 2, "warning": 1}.get(str(name), 0)


def _job(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The running job, else the newest; counts of the job's item-level codes only (not box/case codes)."""
    row = conn.execute("SELECT id, name, state, target_qty, level FROM jobs "
                       "ORDER BY state = 'running' DESC, id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    job_id, level = int(row[0]), str(row[4])
    codes = {str(s): int(n) for s, n in conn.execute(
        "SELECT state, COUNT(*) FROM codes WHERE job = ? AND level = ? GROUP BY state", (job_id, level))}
    verdicts = {str(v): int(n) for v, n in conn.execute(
        "SELECT verdict, COUNT(*) FROM items WHERE job = ? AND verdict IS NOT NULL GROUP BY verdict", (job_id,))}
    good = verdicts.pop("good", 0)
    packed = conn.execute("SELECT COUNT(*) FROM pack_links l JOIN codes c ON c.id = l.child "
                          "WHERE c.job = ? AND c.level = ?", (job_id, level)).fetchone()[0]
    return {"id": job_id, "name": str(row[1]), "state": str(row[2]), "target": int(row[3]), "codes": codes,
            "printed": sum(codes.get(s, 0) for s in PRINTED_STATES), "judged": good + sum(verdicts.values()),
            "good": good, "packed": int(packed), "rejects": dict(sorted(verdicts.items(), key=lambda kv: -kv[1]))}


def _packs(conn: sqlite3.Connection, job: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """Per level: open and parked packs of any job (a parked pack outlives its job), closed ones of this job."""
    out: dict[str, dict[str, int]] = {}
    for level, state, n in conn.execute(
            "SELECT level, state, COUNT(*) FROM packs WHERE state IN ('open', 'parked') OR job = ? "
            "GROUP BY level, state", (job["id"] if job else -1,)):
        if state in ("open", "parked", "closed"):
            out.setdefault(str(level), dict(EMPTY_PACKS))[str(state)] = int(n)
    return out


def _backlog(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    """Undelivered uplink events (not yet batched + in unacked batches) and the age of the oldest."""
    cur = conn.execute("SELECT value FROM sync_state WHERE key = 'cursor'").fetchone()
    cursor = int(cur[0]) if cur else 0
    unbatched, oldest = conn.execute(
        "SELECT count(*), min(at) FROM events WHERE uplink = 1 AND seq > ?", (cursor,)).fetchone()
    open_events, open_batches, first_open = conn.execute(
        "SELECT coalesce(sum(events), 0), count(*), min(first_seq) FROM sync_batches "
        "WHERE acked_at IS NULL AND resend = 0").fetchone()
    delivered = conn.execute("SELECT coalesce(sum(events), 0) FROM sync_batches WHERE acked_at IS NOT NULL "
                             "AND resend = 0").fetchone()[0]
    if first_open is not None:
        row = conn.execute("SELECT at FROM events WHERE seq = ?", (first_open,)).fetchone()
        oldest = row[0] if row else oldest
    return {"undelivered": int(unbatched) + int(open_events), "delivered": int(delivered),
            "open_batches": int(open_batches),
            "oldest_age_s": None if oldest is None else round(max(0.0, now - float(oldest)), 1)}
