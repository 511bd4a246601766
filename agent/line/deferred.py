"""Rejects judged before the coder confirmed the print: recorded once the feeder confirms it.

Why: items are bound to the coder's sent records as they pass the head (agent/line/verifying.py), so a
no-read can be judged while its code is still `sent`; the ledger only lets a printed code be rejected
(sent -> rejected is illegal: nothing proves the code reached a product). The item has left at the
gate already; its ledger verdict waits here until the feeder confirms the print, then goes in as the
verify station would have written it: `rejected` with its decommissioning event on the outbox and its
item row. A code the feeder puts in doubt instead stays in doubt (voided unless a read proves it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from agent.epcis.events import LineContext
from agent.ledger import CodeState, Ledger
from agent.verify.station import verification_event


@dataclass(frozen=True, slots=True)
class Pending:
    code: str
    seq: int
    verdict: str
    reason: str
    station: str


class DeferredRejects:
    def __init__(self, ledger: Ledger, line: LineContext) -> None:
        self.ledger = ledger
        self.line = line
        self.pending: dict[str, Pending] = {}
        self.recorded = 0
        self.left_in_doubt = 0
        self._lock = threading.Lock()  # settle() runs from the station's tick and from the end-of-job check

    def add(self, p: Pending) -> None:
        with self._lock:
            self.pending[p.code] = p

    def settle(self) -> int:
        """Record every pending reject whose code is now printed; drop those now in doubt. Worker thread."""
        with self._lock:
            return self._settle()

    def _settle(self) -> int:
        done = 0
        for code, p in list(self.pending.items()):
            state = self.ledger.state_of(code)
            if state is CodeState.SENT:
                continue
            del self.pending[code]
            if state is CodeState.IN_DOUBT:
                self.left_in_doubt += 1
                continue
            if state is not CodeState.PRINTED:
                continue  # judged meanwhile by another path (a late read): that verdict stands
            self._record(p)
            done += 1
        self.recorded += done
        return done

    def _record(self, p: Pending) -> None:
        now = time.time()
        with self.ledger.atomic():
            row = self.ledger.code_row(p.code)
            job = self.ledger.conn.execute("SELECT name FROM jobs WHERE id = ?", (row["job"],)).fetchone()
            event = verification_event(self.line, p.code, commissioning=False, at=now, reason=p.verdict,
                                       work_order=job[0] if job else None)
            payload = {"epcis": event, "seq": p.seq, "verdict": p.verdict, "reason": p.reason, "read": None,
                       "grade": None, "station": p.station, "deferred": "judged before the print was confirmed"}
            self.ledger.transition(p.code, CodeState.REJECTED, kind="code.rejected", payload=payload, uplink=True)
            if row["job"] is not None:
                self.ledger.conn.execute(
                    "INSERT INTO items(job, code, seq, verdict, judged_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(code) DO UPDATE SET seq = excluded.seq, verdict = excluded.verdict, "
                    "judged_at = excluded.judged_at", (row["job"], row["id"], p.seq, p.verdict, now))
