"""The audit of a fault run, from outside the agent: the plant's own record (what each coder accepted,
what was printed on which item, what the gate did with it), the agent's ledger and the receiver's store,
both opened read-only.

Why from outside: the agent's own tables cannot prove the agent right. The plant's record is the truth;
each check names what it compares and gives its figures, and a failed check lists examples.

A code is read out of what a coder printed as the GS1 Digital Link standard puts a serial in a URI (the
path segment after /21/, percent-decoded; GS1 Digital Link Standard: URI Syntax 1.2, 4.4); a printed
text with no /21/ is the code itself. An EPC at the receiver (docs/cloud-contract.md) is read back to the
ledger's code as the GS1 EPC Tag Data Standard writes the pure identity URIs (6.3.1 SGTIN:
urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial, the serial percent-encoded; 6.3.2 SSCC:
urn:epc:id:sscc:CompanyPrefix.ExtensionSerialRef, the 18 digits being extension, company prefix, serial
reference and the GS1 mod-10 check digit of General Specifications 7.9.1), a Digital Link URI, or
`urn:lineagent:code:<percent-encoded code>`. The audit fails when an EPC names no code of the ledger, so a
changed EPC form can never make a check pass by matching nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from agent.line.truth import read_truth
from tests.faults.processes import Life

CODE_URN = "urn:lineagent:code:"
SGTIN_URN = "urn:epc:id:sgtin:"
SSCC_URN = "urn:epc:id:sscc:"
STATION_STOPS = ("alarm.consecutive_rejects", "alarm.reject_unconfirmed", "alarm.plc_failed")
GOOD = "good"
STARTUP_KILL = "sigkill while starting"


def serial_of(text: str) -> str:
    if "/21/" in text:
        return unquote(text.split("/21/", 1)[1].split("?", 1)[0].split("/", 1)[0])
    return text


def gs1_check_digit(digits: str) -> int:
    """Mod 10, weights 3 and 1 alternating from the rightmost digit (GS1 General Specifications 7.9.1)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


def code_of_epc(epc: str) -> str:
    if epc.startswith(CODE_URN):
        return unquote(epc[len(CODE_URN):])
    if epc.startswith(SGTIN_URN):
        return unquote(epc[len(SGTIN_URN):].split(".", 2)[2])
    if epc.startswith(SSCC_URN):
        prefix, ref = epc[len(SSCC_URN):].split(".", 1)
        body = ref[:1] + prefix + ref[1:]
        return body + str(gs1_check_digit(body))
    return serial_of(epc)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    lives: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def text(self) -> str:
        lines = ["fault run audit", "=" * 15]
        lines += [f"  {k}: {v}" for k, v in self.figures.items()]
        lines.append("checks:")
        lines += [f"  [{'ok' if c.ok else 'FAILED'}] {c.name}: {c.detail}" for c in self.checks]
        lines.append("restarts (life: end, resumed after, in doubt by reconcile / by station, line stops):")
        for life in self.lives:
            resumed = "never" if life["resumed_s"] is None else f"{life['resumed_s']:.1f} s"
            lines.append(f"  {life['number']:>3}: {life['end'] or 'running'}, resumed {resumed}, in doubt "
                         f"{life['in_doubt_reconcile']}/{life['in_doubt_station']}, stops {life['line_stops']}, "
                         f"verdicts {life['verdicts']}" + (f"; {'; '.join(life['notes'])}" if life["notes"] else ""))
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"ok": self.ok, "checks": [asdict(c) for c in self.checks],
                                    "figures": self.figures, "lives": self.lives}, indent=2, default=str))


@dataclass
class Truth:
    items: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)  # seq -> (text, defect)
    gate: dict[int, str] = field(default_factory=dict)
    received: list[tuple[int, str, int]] = field(default_factory=list)  # (record no., text, copies held)
    printed_no: dict[str, int] = field(default_factory=dict)  # text -> record no. of its (first) print
    frames: int = 0
    watchdog_trips: int = 0
    start: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False

    @classmethod
    def read(cls, path: Path) -> Truth:
        t = cls()
        for no, r in enumerate(read_truth(path)):
            k = r["k"]
            if k == "item":
                t.items[r["seq"]] = (r["text"], r["defect"])
                if r["text"] is not None:
                    t.printed_no.setdefault(r["text"], no)
            elif k == "gate":
                t.gate[r["seq"]] = r["out"]
            elif k == "recv":
                t.received.append((no, r["text"], r.get("copies", 1)))
            elif k == "frame":
                t.frames += 1
            elif k == "belt":
                t.watchdog_trips = max(t.watchdog_trips, r["watchdog_trips"])
            elif k == "start":
                t.start = r
            elif k == "stop":
                t.stopped = True
        return t


def _ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def _some(items: list[Any], n: int = 3) -> str:
    return f": {items[:n]}" if items else ""


def audit(*, truth_path: Path, ledger: Path, receiver_db: Path, lives: list[Life], job: str, target: int,
          fifo_depth: int, finished: bool, problems: list[str] | None = None,
          extra: dict[str, Any] | None = None) -> Report:
    """`problems`: what the harness saw go wrong at the end (a refused finish, an undrained outbox, an
    unclean exit on SIGTERM); any of them fails the run."""
    rep = Report()
    truth = Truth.read(truth_path)
    conn = _ro(ledger)
    rconn = _ro(receiver_db)
    try:
        _audit(rep, truth, conn, rconn, lives, job, target, fifo_depth, finished)
    finally:
        conn.close()
        rconn.close()
    rep.add("the job finished on request, the outbox drained, the agent stopped on SIGTERM", not problems,
            "; ".join(problems or []) or "yes")
    rep.figures.update(extra or {})
    return rep


def _audit(rep: Report, truth: Truth, conn: sqlite3.Connection, rconn: sqlite3.Connection, lives: list[Life],
           job_name: str, target: int, fifo_depth: int, finished: bool) -> None:
    job = conn.execute("SELECT id, state, level FROM jobs WHERE name = ?", (job_name,)).fetchone()
    codes = {r["code"]: (r["id"], r["state"]) for r in conn.execute(
        "SELECT id, code, state FROM codes WHERE job = ? AND level = ?", (job["id"], job["level"]))}
    by_id = {cid: code for code, (cid, _s) in codes.items()}
    ledger_items = {by_id[r["code"]]: (r["seq"], r["verdict"], r["judged_at"]) for r in conn.execute(
        "SELECT code, seq, verdict, judged_at FROM items WHERE job = ?", (job["id"],)) if r["code"] in by_id}
    item_at_seq: dict[int, list[str]] = defaultdict(list)
    for code, (seq, _v, _t) in ledger_items.items():
        item_at_seq[seq].append(code)
    printed_at: dict[str, list[int]] = defaultdict(list)  # code -> seqs the plant printed it on
    for seq, (text, _d) in truth.items.items():
        if text is not None:
            printed_at[serial_of(text)].append(seq)
    states = Counter(s for _c, s in codes.values())
    judged_void = sum(1 for code, (_i, st) in codes.items() if st == "voided" and code in ledger_items)
    done = sum(states[s] for s in ("printed", "verified", "rejected")) + judged_void
    rep.figures.update({
        "agent lives": len(lives), "SIGKILLs": sum(1 for li in lives if li.end.startswith("sigkill")),
        "items past the print head": len(truth.items), "items printed": sum(1 for t, _d in truth.items.values() if t),
        "items rejected at the gate": sum(1 for o in truth.gate.values() if o == "rejected"),
        "items passed the gate": sum(1 for o in truth.gate.values() if o == "passed"),
        "PLC watchdog stops": truth.watchdog_trips, "job codes by state": dict(sorted(states.items())),
        "target": target, "FIFO depth (feed target)": fifo_depth})

    # -- the job finishes after every restart -----------------------------------------------------
    life_rows = _lives(conn, lives)
    # a life killed while it started never had the chance; every other one must have run the line
    never = [li.number for li in lives[1:] if li.resumed_s is None and li.end != STARTUP_KILL and not li.nothing_left]
    rep.add("the job finishes after every restart", finished and not never and job["state"] == "finished",
            f"job {job['state']}, {done} of {target} on products; {len(lives) - 1} restarts, "
            f"{len(never)} never ran the line again{_some(never)}")
    stops = [row["number"] for row in life_rows if row["line_stops"]]
    rep.add("no restart ends in a line stop", not stops,
            f"{len(stops)} of {len(lives)} lives had a verify-station line stop{_some(stops, 8)}")

    # -- nothing sent or printed twice, no code on two items --------------------------------------
    # A code may go to the coder again only once the coder has discarded it unprinted (a proven flush
    # returns it to the pool): never while a copy is still in the FIFO, never after it was printed.
    sends = Counter(text for _n, text, _c in truth.received)
    unsafe = sorted({text for no, text, copies in truth.received if sends[text] > 1 and (
        copies > 1 or no > truth.printed_no.get(text, no))})
    resent = sum(1 for t, n in sends.items() if n > 1 and t not in unsafe)
    rep.add("no code sent to a coder twice (while a copy could still print)", not unsafe,
            f"{len(truth.received)} records accepted by the coder; {len(unsafe)} sent again while a copy was in "
            f"the FIFO or after it printed{_some(unsafe)}; {resent} sent again after the coder discarded them "
            "unprinted (a proven flush)")
    printed_twice = [c for c, seqs in printed_at.items() if len(seqs) > 1]
    rep.add("no code printed twice", not printed_twice,
            f"{sum(len(s) for s in printed_at.values())} prints, {len(printed_twice)} codes twice"
            f"{_some(printed_twice)}")
    # The ledger must not tie a code to an item while the code is on another item, nor judge an item good
    # for a code it does not carry. (A code tied to an item the coder left blank and judged a reject is
    # the right outcome: the code is in doubt, the item removed.)
    elsewhere = [(code, seq, printed_at[code]) for code, (seq, _v, _t) in ledger_items.items()
                 if code in printed_at and seq not in printed_at[code]]
    false_good = [(code, seq, truth.items.get(seq, (None, None))[0]) for code, (seq, verdict, _t) in
                  ledger_items.items() if verdict == GOOD and seq not in printed_at.get(code, [])]
    blank_bound = sum(1 for code, (seq, verdict, _t) in ledger_items.items()
                      if code not in printed_at and verdict != GOOD)
    rep.add("no code on two items (printed, or tied by the ledger to one it is not on)",
            not (printed_twice or elsewhere or false_good),
            f"{len(printed_twice)} printed twice; {len(elsewhere)} tied by the ledger to an item while printed on "
            f"another (code, ledger seq, printed on){_some(elsewhere)}; {len(false_good)} judged good on an item "
            f"that does not carry them{_some(false_good)}; ({blank_bound} never printed, tied to a blank item "
            "and rejected: right)")

    # -- every product that left the line was judged good, for the code it carries ----------------
    left = [seq for seq, out in truth.gate.items() if out == "passed"]
    unjudged, blank, misjudged, bad_left, defective = [], [], [], [], []
    for seq in left:
        text, defect = truth.items.get(seq, (None, None))
        if defect is not None:
            defective.append((seq, defect))
        if text is None:
            blank.append(seq)
            continue
        code = serial_of(text)
        row = ledger_items.get(code)
        if row is None or row[0] != seq:
            (misjudged if item_at_seq.get(seq) else unjudged).append((seq, code))
        elif row[1] != GOOD:
            bad_left.append((seq, code, row[1]))
    rep.add("no product left the line unjudged", not (unjudged or blank or misjudged),
            f"{len(left)} left; {len(unjudged)} with no verdict{_some(unjudged)}, {len(blank)} blank (nothing "
            f"printed){_some(blank)}, {len(misjudged)} judged as another item{_some(misjudged)}")
    rep.add("no rejected or defective product left the line", not (bad_left or defective),
            f"{len(bad_left)} left with a reject verdict{_some(bad_left)}; {len(defective)} with a defect the "
            f"plant injected{_some(defective)}")

    # -- the cloud is never told a product that left is void --------------------------------------
    left_codes = {serial_of(t) for s in left if (t := truth.items.get(s, (None, None))[0]) is not None}
    received = [json.loads(r["body"]) for r in rconn.execute("SELECT body FROM epcis_events")]
    void_left = sorted({code_of_epc(e) for ev in received if ev.get("bizStep") == "decommissioning"
                        for e in ev.get("epcList", [])} & left_codes)
    outbox = [json.loads(r["payload"]).get("epcis") or {} for r in conn.execute(
        "SELECT payload FROM events WHERE uplink = 1")]
    void_left_outbox = sorted({code_of_epc(e) for ev in outbox if ev.get("bizStep") == "decommissioning"
                               for e in ev.get("epcList", [])} & left_codes)
    rep.add("no decommissioning event for a code on a product that left", not (void_left or void_left_outbox),
            f"{len(void_left)} at the receiver{_some(void_left)}, {len(void_left_outbox)} in the ledger's "
            f"outbox{_some(void_left_outbox)}")

    known = {str(r[0]) for r in conn.execute("SELECT code FROM codes")}
    named = {e for ev in received for e in ev.get("epcList", [])} | {
        e for ev in received for e in ev.get("childEPCs", [])} | {
        ev["parentID"] for ev in received if ev.get("parentID")}
    unknown = sorted(e for e in named if code_of_epc(e) not in known)
    rep.add("every EPC at the receiver names a code of the ledger", not unknown,
            f"{len(named)} EPCs in {len(received)} events; {len(unknown)} name no code{_some(unknown)}")

    # -- in doubt per restart ---------------------------------------------------------------------
    worst = max((row["in_doubt_reconcile"] for row in life_rows), default=0)
    over = [(row["number"], row["in_doubt_reconcile"]) for row in life_rows if row["in_doubt_reconcile"] > fifo_depth]
    by_reconcile = sum(r["in_doubt_reconcile"] for r in life_rows)
    by_station = sum(r["in_doubt_station"] for r in life_rows)
    orderly = sum(r["in_doubt_orderly"] for r in life_rows)
    rep.add("codes put in doubt per restart at most the FIFO depth", not over,
            f"most in one life {worst} (FIFO depth {fifo_depth}); total {by_reconcile} by reconciles after a "
            f"restart or a fault, {orderly} at orderly stops of feeding, {by_station} by the verify station; "
            f"{len(over)} lives over{_some(over, 6)}")
    rep.lives = life_rows

    # -- the receiver -------------------------------------------------------------------------------
    commissioned = Counter(code_of_epc(e) for ev in received if ev.get("bizStep") == "commissioning"
                           for e in ev.get("epcList", []))
    verified = [c for c, (_i, s) in codes.items() if s == "verified"]
    missing = [c for c in verified if commissioned.get(c, 0) == 0]
    twice = [c for c in verified if commissioned.get(c, 0) > 1]
    rep.add("every verified item has exactly one commissioning event at the receiver", not (missing or twice),
            f"{len(verified)} verified; {len(missing)} without{_some(missing)}, {len(twice)} with two or more"
            f"{_some(twice)}")
    produced = conn.execute("SELECT COUNT(*) FROM events WHERE uplink = 1").fetchone()[0]
    stored = rconn.execute("SELECT COUNT(*) FROM epcis_events").fetchone()[0]
    rep.add("every uplink event exactly once at the receiver", produced == stored,
            f"{produced} produced, {stored} distinct eventIDs received")
    unpacked = [c for c in verified if conn.execute(
        "SELECT 1 FROM pack_links WHERE child = ?", (codes[c][0],)).fetchone() is None]
    rep.add("every verified item is packed", not unpacked,
            f"{len(verified) - len(unpacked)} of {len(verified)} in a pack{_some(unpacked)}")

    # -- both files intact ------------------------------------------------------------------------
    li = conn.execute("PRAGMA integrity_check").fetchall()
    ri = rconn.execute("PRAGMA integrity_check").fetchall()
    rep.add("PRAGMA integrity_check ok on the ledger and the receiver's store",
            [tuple(r) for r in li] == [("ok",)] and [tuple(r) for r in ri] == [("ok",)],
            f"ledger {[r[0] for r in li][:3]}, receiver {[r[0] for r in ri][:3]}")


def _lives(conn: sqlite3.Connection, lives: list[Life]) -> list[dict[str, Any]]:
    """Per agent life: codes put in doubt by reconciles and by the verify station, line stops, verdicts."""
    rows: list[dict[str, Any]] = []
    for i, life in enumerate(lives):
        start = life.spawned_at
        end = lives[i + 1].spawned_at if i + 1 < len(lives) else float("inf")
        reconcile = orderly = 0  # reconciles after a restart or a fault; those of an orderly stop of feeding
        for r in conn.execute("SELECT payload FROM events WHERE kind = 'coder.reconciled' AND at >= ? AND at < ?",
                              (start, end)):
            payload = json.loads(r["payload"])
            if payload.get("reason") == "shutdown":
                orderly += int(payload.get("in_doubt", 0))
            else:
                reconcile += int(payload.get("in_doubt", 0))
        station = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'code.in_doubt' AND at >= ? AND at < ?",
                               (start, end)).fetchone()[0]
        stops = conn.execute(f"SELECT COUNT(*) FROM events WHERE kind IN ({','.join('?' * len(STATION_STOPS))}) "
                             "AND at >= ? AND at < ?", (*STATION_STOPS, start, end)).fetchone()[0]
        verdicts = conn.execute("SELECT COUNT(*) FROM items WHERE judged_at >= ? AND judged_at < ?",
                                (start, end)).fetchone()[0]
        rows.append({"number": life.number, "end": life.end, "resumed_s": life.resumed_s,
                     "in_doubt_reconcile": reconcile, "in_doubt_orderly": orderly, "in_doubt_station": int(station),
                     "line_stops": int(stops),
                     "verdicts": int(verdicts), "exit_code": life.exit_code, "notes": life.notes})
    return rows
