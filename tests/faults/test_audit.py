"""The audit can fail: a small world written out by hand (a plant record, a real ledger file, a real
receiver store) passes every check, and each fault the harness hunts for, put in by hand, fails exactly
the check that names it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.ledger import Ledger
from agent.receiver.store import SqliteStore
from tests.faults.audit import Report, audit, code_of_epc
from tests.faults.processes import Life

DL = "https://id.example.com/01/09506000134352/21/"
T0 = 1_800_000_000.0


def epc(code: str) -> str:  # as the agent names an item of GTIN 09506000134352, company prefix 9506000
    return f"urn:epc:id:sgtin:9506000.013435.{code}"


def commissioning(code: str) -> dict[str, Any]:
    return {"type": "ObjectEvent", "eventID": f"ni:///c-{code}", "eventTime": "2027-01-15T08:00:00Z",
            "action": "ADD", "bizStep": "commissioning", "epcList": [epc(code)]}


def decommissioning(code: str) -> dict[str, Any]:
    return {"type": "ObjectEvent", "eventID": f"ni:///d-{code}", "eventTime": "2027-01-15T08:00:00Z",
            "action": "OBSERVE", "bizStep": "decommissioning", "epcList": [epc(code)]}


@dataclass
class World:
    """Three items: A verified and shipped, B rejected (a no-read the plant injected), C verified and shipped."""

    truth: list[dict[str, Any]] = field(default_factory=lambda: [
        {"k": "start", "at": T0},
        {"k": "recv", "coder": "c1", "text": DL + "A", "at": T0 + 1},
        {"k": "recv", "coder": "c1", "text": DL + "B", "at": T0 + 1},
        {"k": "recv", "coder": "c1", "text": DL + "C", "at": T0 + 1},
        {"k": "item", "seq": 1, "coder": "c1", "text": DL + "A", "defect": None},
        {"k": "item", "seq": 2, "coder": "c1", "text": DL + "B", "defect": "no_read"},
        {"k": "item", "seq": 3, "coder": "c1", "text": DL + "C", "defect": None},
        {"k": "gate", "seq": 1, "out": "passed"},
        {"k": "gate", "seq": 2, "out": "rejected"},
        {"k": "gate", "seq": 3, "out": "passed"},
        {"k": "stop", "at": T0 + 9},
    ])
    codes: dict[str, str] = field(default_factory=lambda: {"A": "verified", "B": "rejected", "C": "verified"})
    items: list[tuple[str, int, str]] = field(default_factory=lambda: [("A", 1, "good"), ("B", 2, "no_read"),
                                                                       ("C", 3, "good")])
    uplink: list[dict[str, Any]] = field(default_factory=lambda: [commissioning("A"), decommissioning("B"),
                                                                  commissioning("C")])
    received: list[dict[str, Any]] | None = None  # None: what the ledger sent up
    packed: list[str] = field(default_factory=lambda: ["A", "C"])
    in_doubt: int = 0  # codes a reconcile put in doubt in the (only) life

    def build(self, tmp: Path) -> Report:
        truth = tmp / "plant.jsonl"
        truth.write_text("".join(json.dumps(r) + "\n" for r in self.truth))
        ledger = Ledger(tmp / "ledger.db")
        ledger.close()
        conn = sqlite3.connect(tmp / "ledger.db")
        with conn:
            conn.execute("INSERT INTO packages(id, package_id, issuer, level, count, code_format, body_sha256, "
                         "source, signed, imported_at) VALUES (1, 'p1', 't', 'item', 3, 'raw', '-', 'txt', 0, 0)")
            conn.execute("INSERT INTO jobs(id, name, gtin, product_name, lot, target_qty, level, template, state, "
                         "created_at) VALUES (1, 'WO', '09506000134352', 'w', 'L', 3, 'item', 'dl', 'finished', 0)")
            ids = {}
            for code, state in self.codes.items():
                ids[code] = conn.execute("INSERT INTO codes(code, level, package, state, job) VALUES "
                                         "(?, 'item', 1, ?, 1)", (code, state)).lastrowid
            ids["BOX"] = conn.execute("INSERT INTO codes(code, level, package, state, job) VALUES "
                                      "('BOX', 'box', 1, 'verified', 1)").lastrowid
            for code, seq, verdict in self.items:
                conn.execute("INSERT INTO items(job, code, seq, verdict, judged_at) VALUES (1, ?, ?, ?, ?)",
                             (ids[code], seq, verdict, T0 + 2))
            for ev in self.uplink:
                conn.execute("INSERT INTO events(at, kind, uplink, payload) VALUES (?, 'code.x', 1, ?)",
                             (T0 + 2, json.dumps({"epcis": ev})))
            if self.in_doubt:
                conn.execute("INSERT INTO events(at, kind, payload) VALUES (?, 'coder.reconciled', ?)",
                             (T0 + 2, json.dumps({"coder": "c1", "reason": "startup", "in_doubt": self.in_doubt})))
            conn.execute("INSERT INTO events(at, kind, payload) VALUES (?, 'coder.reconciled', ?)",  # not counted:
                         (T0 + 3, json.dumps({"coder": "c1", "reason": "shutdown", "in_doubt": 30})))  # orderly
            for code in self.packed:
                conn.execute("INSERT INTO pack_links(child, parent, linked_at) VALUES (?, ?, 0)",
                             (ids[code], ids["BOX"]))
        conn.close()
        store = SqliteStore(tmp / "receiver.db")
        store.store("s1", "L1", 1, self.uplink if self.received is None else self.received)
        store.close()
        life = Life(1, T0, end="sigterm", resumed_s=1.0)
        return audit(truth_path=truth, ledger=tmp / "ledger.db", receiver_db=tmp / "receiver.db", lives=[life],
                     job="WO", target=3, fifo_depth=24, finished=True)


def failed(report: Report) -> list[str]:
    return [c.name for c in report.failed()]


def test_a_clean_world_passes_every_check(tmp_path: Path) -> None:
    report = World().build(tmp_path)
    assert failed(report) == [], report.text()
    assert len(report.checks) == 15


def _replace(w: World, kind: str, seq: int, **new: Any) -> None:
    for r in w.truth:
        if r["k"] == kind and r.get("seq") == seq:
            r.update(new)


def printed_twice(w: World) -> None:
    _replace(w, "item", 3, text=DL + "A")
    w.truth.insert(3, {"k": "recv", "coder": "c1", "text": DL + "A", "at": T0 + 1, "copies": 2})


def sent_twice(w: World) -> None:  # a second copy while the first is still in the FIFO
    w.truth.insert(2, {"k": "recv", "coder": "c1", "text": DL + "A", "at": T0 + 1, "copies": 2})


def sent_after_print(w: World) -> None:
    w.truth.insert(5, {"k": "recv", "coder": "c1", "text": DL + "A", "at": T0 + 1, "copies": 1})


def sent_again_after_a_flush(w: World) -> None:  # the coder discarded it unprinted: sending it again is safe
    w.truth.insert(2, {"k": "recv", "coder": "c1", "text": DL + "A", "at": T0 + 1, "copies": 1})


def shifted(w: World) -> None:  # the ledger binds C to the item before it (what a restart shift does)
    w.items[2] = ("C", 2, "good")
    w.items[1] = ("B", 1, "no_read")


def unjudged(w: World) -> None:
    del w.items[2]
    w.codes["C"] = "printed"
    w.uplink.pop()
    w.packed.remove("C")


def void_shipped(w: World) -> None:
    w.uplink.append(decommissioning("A"))


def not_at_receiver(w: World) -> None:
    w.received = w.uplink[:2]


def doubt(w: World) -> None:
    w.in_doubt = 25


def foreign_epc(w: World) -> None:
    w.uplink.append(commissioning("NOT-OURS"))


def unpacked(w: World) -> None:
    w.packed.remove("A")


def defective_left(w: World) -> None:
    _replace(w, "gate", 2, out="passed")


SENT = "no code sent to a coder twice (while a copy could still print)"
ON_TWO = "no code on two items (printed, or tied by the ledger to one it is not on)"


@pytest.mark.parametrize(("fault", "expected"), [
    (printed_twice, {"no code printed twice", ON_TWO, SENT, "no product left the line unjudged"}),
    (sent_twice, {SENT}),
    (sent_after_print, {SENT}),
    (sent_again_after_a_flush, set()),
    (shifted, {ON_TWO, "no product left the line unjudged"}),
    (unjudged, {"no product left the line unjudged"}),
    (void_shipped, {"no decommissioning event for a code on a product that left"}),
    (not_at_receiver, {"every verified item has exactly one commissioning event at the receiver",
                       "every uplink event exactly once at the receiver"}),
    (doubt, {"codes put in doubt per restart at most the FIFO depth"}),
    (unpacked, {"every verified item is packed"}),
    (foreign_epc, {"every EPC at the receiver names a code of the ledger"}),
    (defective_left, {"no rejected or defective product left the line",
                      "no decommissioning event for a code on a product that left"}),
])
def test_each_fault_fails_the_check_that_names_it(tmp_path: Path, fault: Callable[[World], None],
                                                  expected: set[str]) -> None:
    world = World()
    fault(world)
    report = world.build(tmp_path)
    assert set(failed(report)) == expected, report.text()


def test_a_job_that_never_ran_again_after_a_restart_fails(tmp_path: Path) -> None:
    world = World()
    report = world.build(tmp_path)
    lives = [Life(1, T0, end="sigkill while running", resumed_s=1.0), Life(2, T0 + 5, end="sigterm")]
    report = audit(truth_path=tmp_path / "plant.jsonl", ledger=tmp_path / "ledger.db",
                   receiver_db=tmp_path / "receiver.db", lives=lives, job="WO", target=3, fifo_depth=24,
                   finished=False)
    assert failed(report) == ["the job finishes after every restart"], report.text()


def test_what_went_wrong_at_the_end_of_a_run_fails_it(tmp_path: Path) -> None:
    World().build(tmp_path)
    report = audit(truth_path=tmp_path / "plant.jsonl", ledger=tmp_path / "ledger.db",
                   receiver_db=tmp_path / "receiver.db", lives=[Life(1, T0, end="sigterm", resumed_s=1.0)],
                   job="WO", target=3, fifo_depth=24, finished=True,
                   problems=["the last agent exited 1 on SIGTERM (sigterm)"])
    assert failed(report) == ["the job finished on request, the outbox drained, the agent stopped on SIGTERM"]


@pytest.mark.parametrize(("epc", "code"), [
    ("urn:epc:id:sgtin:9506000.013435.DW3YF6RD5BBB3B", "DW3YF6RD5BBB3B"),
    ("urn:epc:id:sgtin:0614141.812345.ab%2Fc.d", "ab/c.d"),  # TDS: '/' escaped; a '.' may stay in a serial
    ("urn:epc:id:sscc:0614141.0000000001", "006141410000000012"),  # check digit 2, worked by hand
    ("urn:lineagent:code:A%20B", "A B"),
    ("https://id.example.com/01/09506000134352/21/X%2F1", "X/1"),
])
def test_epcs_read_back_to_the_ledgers_code(epc: str, code: str) -> None:
    assert code_of_epc(epc) == code
