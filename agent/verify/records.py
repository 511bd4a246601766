"""What the verify station writes to the ledger (all of it in the station's writer thread).

Why the verdict and the code's fate are two writes: a verdict is known at the camera, but whether the
product left the line is known only at the gate. A code is decommissioned (rejected, or voided when no
read proves its print, each with its EPCIS decommissioning event, after a commissioning when it never
had one) only when its product was physically
removed: the gate's confirm sensor counted it, or under positive release it reached the gate without a
release (`removed`). A product that left with no verdict carried out at the gate (it passed unjudged
under a reject-only gate, or its reject was not confirmed) is never reported void: its code goes
printed -> escaped, with no event for the cloud (`escaped`). A good verdict is final at once: the code
is verified with its commissioning event (under positive release the release is written only after
that commit, so a released product always has a verified code).

Beside the codes, the binding of each item in flight (conveyor seq <-> coder feed record and code,
table conveyor_items, migration 7) is written when it is made, completed with the verdict and the
release, and deleted once the item is through the gate and its fate recorded, so a restarted agent
knows what is between head and gate (agent/verify/binding.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.epcis import LineContext, commissioning_event, retirement_events
from agent.ledger import CodeState, Ledger
from agent.verify.verdict import JUDGED, Verdict

UNPROVEN = frozenset({CodeState.SENT, CodeState.IN_DOUBT})
JobFacts = tuple[str | None, str | None, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One item's verdict as the writer records it (plain values: restored items have no Observation)."""

    seq: int
    code: str | None
    text: str | None
    verdict: Verdict
    reason: str
    read: str | None = None
    grade: str | None = None


class Records:
    def __init__(self, ledger: Ledger, line: LineContext, station: str) -> None:
        self.ledger = ledger
        self.line = line
        self.station = station
        self._jobs: dict[int, JobFacts] = {}  # job id -> lot, expiry, name, gtin, template

    # ---- bindings -------------------------------------------------------------------------------

    def bound(self, seq: int, code: str, coder: str | None, feed_seq: int | None) -> None:
        """Item `seq` carries `code` (the coder's feed record `feed_seq`): durable with the next group."""
        now = time.time()
        with self.ledger.atomic() as conn:
            conn.execute(
                "INSERT INTO conveyor_items(station, seq, coder, feed_seq, code, bound_at) "
                "SELECT ?, ?, ?, ?, id, ? FROM codes WHERE code = ? "
                "ON CONFLICT(station, seq) DO UPDATE SET coder = excluded.coder, feed_seq = excluded.feed_seq, "
                "code = excluded.code, verdict = NULL, reason = NULL, released = 0, bound_at = excluded.bound_at",
                (self.station, seq, coder, feed_seq, now, code))
            conn.execute(
                "INSERT INTO conveyor_marks(station, seq, coder, feed_seq, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(station) DO UPDATE SET seq = excluded.seq, coder = excluded.coder, "
                "feed_seq = excluded.feed_seq, at = excluded.at WHERE excluded.seq >= conveyor_marks.seq",
                (self.station, seq, coder, feed_seq, now))

    def mark(self, seq: int) -> None:
        """A restart found the PLC counter went back (a PLC reset): bindings start again from `seq`."""
        with self.ledger.atomic() as conn:
            conn.execute("DELETE FROM conveyor_items WHERE station = ?", (self.station,))
            conn.execute("INSERT INTO conveyor_marks(station, seq, coder, feed_seq, at) VALUES (?, ?, NULL, NULL, ?) "
                         "ON CONFLICT(station) DO UPDATE SET seq = excluded.seq, coder = NULL, feed_seq = NULL, "
                         "at = excluded.at", (self.station, seq, time.time()))

    def done(self, seq: int) -> None:
        """The item's fate at the gate is recorded (or nothing more is to be done for it)."""
        with self.ledger.atomic() as conn:
            conn.execute("DELETE FROM conveyor_items WHERE station = ? AND seq = ?", (self.station, seq))

    # ---- verdicts -------------------------------------------------------------------------------

    def released(self, seq: int) -> None:
        """release_fire was written for item `seq`."""
        with self.ledger.atomic() as conn:
            conn.execute("UPDATE conveyor_items SET released = 1 WHERE station = ? AND seq = ?", (self.station, seq))

    def verdict(self, o: Outcome) -> None:
        """The verdict, its item row and (good) the code verified with its commissioning event: one
        transaction. A reject moves no code here (its fate is known at the gate), except that a read
        proving the print of a code still `sent`/`in_doubt` moves it to `printed`."""
        assert o.code is not None
        code, now = o.code, time.time()
        good = not o.verdict.rejects
        with self.ledger.atomic() as conn:
            row = self.ledger.code_row(code)
            payload, _ = self._payload(o, row["job"], commissioning=good, at=now)
            state = CodeState(row["state"])
            if state in UNPROVEN and o.read is not None and o.read == o.text:
                self.ledger.transition(code, CodeState.PRINTED, kind="code.printed",
                                       payload={"proven_by": "read", "seq": o.seq})
                state = CodeState.PRINTED
            if state in JUDGED:
                # Printed a second time: the first item keeps its verdict (it may have shipped and
                # is genuine); this item leaves at the gate, and the journal says why.
                self.ledger.append_event("verify.printed_again", payload, code=code, job=row["job"])
            elif good:
                self.ledger.transition(code, CodeState.VERIFIED, kind="code.verified", payload=payload, uplink=True)
            else:
                payload.pop("epcis")
                self.ledger.append_event(f"verify.{o.verdict.value}", payload, code=code, job=row["job"])
            if row["job"] is not None:
                conn.execute(
                    "INSERT INTO items(job, code, seq, verdict, grade, judged_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(code) DO UPDATE SET seq = excluded.seq, verdict = excluded.verdict, "
                    "grade = excluded.grade, judged_at = excluded.judged_at",
                    (row["job"], row["id"], o.seq, o.verdict.value, o.grade, now))
            conn.execute("UPDATE conveyor_items SET verdict = ?, reason = ? WHERE station = ? AND seq = ? "
                         "AND code = ?", (o.verdict.value, o.reason, self.station, o.seq, row["id"]))

    def event(self, o: Outcome, error: str | None = None) -> None:
        """A verdict with no code to move (nothing printed), or one the ledger refused: journal it."""
        with self.ledger.atomic():
            self.ledger.append_event(f"verify.{o.verdict.value}", {
                "seq": o.seq, "reason": o.reason, "read": o.read, "station": self.station,
                **({"error": error} if error else {}),
            }, code=o.code)

    # ---- fates at the gate ----------------------------------------------------------------------

    def removed(self, o: Outcome, how: str) -> None:
        """The product left through the gate (`how`: confirmed by the sensor, or not released): its code
        is decommissioned. A code no read proves printed (still sent or in doubt) cannot be `rejected`;
        it is voided (sent -> in_doubt -> voided), the void carrying the decommissioning event. A code
        verified on THIS item but not released (a late release, a restart) is decommissioned after the
        fact; one verified on another item keeps that verdict."""
        if o.code is None:
            self._journal("verify.removed", o, how)
            return
        code, now = o.code, time.time()
        with self.ledger.atomic() as conn:
            row = self.ledger.code_row(code)
            state = CodeState(row["state"])
            payload, first = self._payload(o, row["job"], commissioning=False, at=now,
                                           commissioned=state is CodeState.VERIFIED)
            payload["removed"] = how
            own_verified = state is CodeState.VERIFIED and not o.verdict.rejects
            if state in JUDGED and not own_verified:
                self.ledger.append_event("verify.removed", payload, code=code, job=row["job"])
            elif state in UNPROVEN:
                if state is CodeState.SENT:
                    self.ledger.transition(code, CodeState.IN_DOUBT, kind="code.in_doubt", payload={
                        "seq": o.seq, "station": self.station, "why": f"{o.verdict.value}: no read proves the print"})
                self._commission_first(code, row["job"], first, now)
                self.ledger.transition(code, CodeState.VOIDED, kind="code.voided", payload=payload, uplink=True)
            elif state in (CodeState.PRINTED, CodeState.VERIFIED):
                self._commission_first(code, row["job"], first, now)
                self.ledger.transition(code, CodeState.REJECTED, kind="code.rejected", payload=payload, uplink=True)
            else:
                self.ledger.append_event("verify.removed", payload, code=code, job=row["job"])
            conn.execute("DELETE FROM conveyor_items WHERE station = ? AND seq = ?", (self.station, o.seq))

    def escaped(self, o: Outcome, why: str) -> None:
        """The product left the line with no verdict carried out at the gate: never reported void. A
        printed code becomes `escaped` (no uplink event); a code whose print nothing proves stays where
        it is (in doubt, voided at job close without an event), and the journal says which item it was."""
        if o.code is None:
            self._journal("verify.escaped", o, why)
            return
        with self.ledger.atomic() as conn:
            row = self.ledger.code_row(o.code)
            payload = {"seq": o.seq, "station": self.station, "verdict": o.verdict.value, "reason": o.reason,
                       "why": why}
            if CodeState(row["state"]) is CodeState.PRINTED:
                self.ledger.transition(o.code, CodeState.ESCAPED, kind="code.escaped", payload=payload)
            else:
                self.ledger.append_event("verify.escaped", payload, code=o.code, job=row["job"])
            conn.execute("DELETE FROM conveyor_items WHERE station = ? AND seq = ?", (self.station, o.seq))

    def _journal(self, kind: str, o: Outcome, why: str) -> None:
        with self.ledger.atomic() as conn:
            self.ledger.append_event(kind, {"seq": o.seq, "station": self.station, "verdict": o.verdict.value,
                                            "reason": o.reason, "why": why})
            conn.execute("DELETE FROM conveyor_items WHERE station = ? AND seq = ?", (self.station, o.seq))

    def _payload(self, o: Outcome, job: int | None, *, commissioning: bool, at: float, commissioned: bool = True
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The verdict's journal payload with its own EPCIS event, and the events that must precede it
        (the commissioning of a code removed before it ever was: agent.epcis.retirement_events)."""
        assert o.code is not None
        lot, expiry, work_order, gtin, template = self._job(job)
        # A good item removed at the gate (its release came late, or never: a restart) says so.
        why = o.verdict.value if o.verdict.rejects else "not_released"
        events = verification_events(self.line, o.code, commissioning=commissioning, at=at, lot=lot, expiry=expiry,
                                     work_order=work_order, reason=None if commissioning else why,
                                     commissioned=commissioned, gtin=gtin, template=template)
        payload = {"epcis": events[-1], "seq": o.seq, "verdict": o.verdict.value, "reason": o.reason,
                   "read": o.read, "grade": o.grade, "station": self.station}
        return payload, events[:-1]

    def _commission_first(self, code: str, job: int | None, events: list[dict[str, Any]], at: float) -> None:
        """A code removed before it was ever commissioned: its commissioning goes up first, same transaction."""
        for event in events:
            self.ledger.append_event("code.commissioned", {"epcis": event, "station": self.station}, code=code,
                                     job=job, uplink=True, at=at)

    def _job(self, job: int | None) -> JobFacts:
        """Lot, expiry, work order (the job's name), GTIN and template for the events of a job's codes."""
        if job is None:
            return None, None, None, None, None
        if job not in self._jobs:
            row = self.ledger.conn.execute(
                "SELECT lot, expiry, name, gtin, template FROM jobs WHERE id = ?", (job,)).fetchone()
            self._jobs[job] = ((row["lot"], row["expiry"], row["name"], row["gtin"], row["template"]) if row
                               else (None, None, str(job), None, None))
        return self._jobs[job]


def verification_events(
    line: LineContext, code: str, *, commissioning: bool, at: float, reason: str | None,
    lot: str | None = None, expiry: str | None = None, work_order: str | None = None,
    commissioned: bool = True, gtin: str | None = None, template: str | None = None,
) -> list[dict[str, Any]]:
    """The EPCIS 2.0 ObjectEvents for one verdict or removal, built by agent.epcis so every producer
    agrees; the last one is its own.

    The code is named by the line's identity from the job's GTIN and template. Verified: ADD /
    commissioning / active with lot and expiry as ilmd. Removed: DELETE / decommissioning / inactive
    with the verdict as `lineagent:reason`, preceded by a commissioning when the code never was one
    (`commissioned=False`: agent.epcis.retirement_events).
    """
    epc = line.ident.epc(code, gtin=gtin, template=template) if gtin else line.ident.epc(code)
    if commissioning:
        return [commissioning_event(line, [epc], at=at, lot=lot, expiry=expiry, work_order=work_order)]
    return retirement_events(line, [epc], at=at, reason=reason or "rejected", commissioned=commissioned, lot=lot,
                             expiry=expiry, work_order=work_order)


def verification_event(
    line: LineContext, code: str, *, commissioning: bool, at: float, reason: str | None,
    lot: str | None = None, expiry: str | None = None, work_order: str | None = None,
) -> dict[str, Any]:
    """The verdict's own event alone (the last of `verification_events`), for callers that want one."""
    return verification_events(line, code, commissioning=commissioning, at=at, reason=reason, lot=lot,
                               expiry=expiry, work_order=work_order)[-1]
