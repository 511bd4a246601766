"""Rework on a populated ledger: take-out, merge (合垛) and move, each one transaction with its EPCIS
events, partial state, journal row and audit; the journal alone, replayed into a fresh ledger, gives
the same links; every refusal changes nothing.

The expectations are written out by hand from the floor built here (2 items a box, 3 boxes a case,
2 cases a pallet) and from EPCIS 2.0 section 7.4.3 / CBV 2.0 section 7.2: a child leaving is an
AggregationEvent DELETE (bizStep unpacking) naming only that child, its arrival an ADD (packing).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from agent.aggregation import events, rework
from agent.aggregation.model import PackRejected, PackState, Reason
from agent.epcis import document, validate
from agent.jobs import JobSpec, create_job
from agent.ledger import Ledger
from tests.aggregation.conftest import Floor, make_floor
from tests.helpers import seed_codes

PALLETS = ["P1", "P2", "P3", "P4", "P5", "P6"]


@pytest.fixture
def yard(tmp_path: Path) -> Iterator[Floor]:
    """15 boxes, 5 cases, 4 pallets: P1 and P2 partial (one case each), P3 full, P4 partial and built
    case by case (open, add, force-close), all through the real aggregation code."""
    floor = make_floor(tmp_path / "ledger.db")
    seed_codes(floor.ledger, PALLETS, level="pallet", package_id="pp")
    agg = floor.agg
    for i in range(15):
        agg.pack("box", floor.boxes[i], floor.items[2 * i: 2 * i + 2])
    for j in range(5):
        agg.pack("case", floor.cases[j], floor.boxes[3 * j: 3 * j + 3])
    agg.pack("pallet", "P1", ["C00000"], partial_reason="end of shift")
    agg.pack("pallet", "P2", ["C00001"], partial_reason="end of shift")
    agg.pack("pallet", "P3", ["C00002", "C00003"])
    agg.open("pallet", "P4", job=floor.job)
    agg.add("P4", ["C00004"])
    agg.close("P4", partial_reason="line stop")
    yield floor
    floor.ledger.close()


def links(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in conn.execute(
        "SELECT k.code, p.code FROM pack_links l JOIN codes k ON k.id = l.child JOIN codes p ON p.id = l.parent")}


def partial(conn: sqlite3.Connection, code: str) -> tuple[str, str | None]:
    r = conn.execute("SELECT p.state, p.partial_reason FROM packs p JOIN codes c ON c.id = p.code WHERE c.code = ?",
                     (code,)).fetchone()
    return r[0], r[1]


def printed(uri: str) -> str:
    """The floor's raw codes are named <namespace>:<percent-encoded code>; this reads the code back."""
    return unquote(uri.rsplit(":", 1)[1])


def uplink_after(conn: sqlite3.Connection, seq: int) -> list[dict[str, Any]]:
    return [json.loads(r[0])["epcis"] for r in conn.execute(
        "SELECT payload FROM events WHERE uplink = 1 AND seq > ? ORDER BY seq", (seq,))]


def last_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT MAX(seq) FROM events").fetchone()[0])


def test_rework_events_partial_states_audit_and_a_journal_replay_to_the_same_links(yard: Floor, tmp_path: Path) -> None:
    conn, agg = yard.ledger.conn, yard.agg
    before = last_seq(conn)

    out = rework.take_out(agg, "I00008", reason="damaged cap", audit=("pack.take_out", {"code": "I00008"}))
    assert (out.moved, out.source.code, out.source.children, out.target) == (["I00008"], "B00004", 1, None)
    merged = rework.merge(agg, "P1", "P2", audit=("pack.merge", {"from": "P1", "into": "P2"}))
    assert (merged.moved, merged.source.state, merged.target and merged.target.children) == (
        ["C00000"], PackState.UNPACKED, 2)
    moved = rework.move(agg, "C00003", "P4", reason="fill the short pallet",
                        audit=("pack.move", {"code": "C00003", "to": "P4"}))
    assert (moved.source.children, moved.target and moved.target.children) == (1, 2)

    # The links, written out by hand: one bottle out of B00004 (still in C00001), C00000 onto P2, C00003 onto P4.
    by_parent: dict[str, set[str]] = {}
    for child, parent in links(conn):
        by_parent.setdefault(parent, set()).add(child)
    assert by_parent["B00004"] == {"I00009"}
    assert by_parent["C00001"] == {"B00003", "B00004", "B00005"}
    assert by_parent["P2"] == {"C00000", "C00001"}
    assert by_parent["P3"] == {"C00002"}
    assert by_parent["P4"] == {"C00003", "C00004"}
    assert "P1" not in by_parent and ("I00008", "B00004") not in links(conn)

    # Partial state: short packs say why, packs made full again lost their reason, the merged-away one is spent.
    assert partial(conn, "B00004") == ("closed", "I00008 taken out: damaged cap")
    assert partial(conn, "P1") == ("unpacked", None)
    assert partial(conn, "P2") == ("closed", None)
    assert partial(conn, "P3") == ("closed", "C00003 moved to P4: fill the short pallet")
    assert partial(conn, "P4") == ("closed", None)
    assert partial(conn, "C00001") == ("closed", None)  # the box is still there: the case is not short

    # The EPCIS events of the reworks, exactly these and in this order (hand-written).
    sent = uplink_after(conn, before)
    got = [(e["type"], e["action"], e["bizStep"], printed(e["parentID"]), [printed(c) for c in e["childEPCs"]])
           for e in sent]
    assert got == [
        ("AggregationEvent", "DELETE", "unpacking", "B00004", ["I00008"]),
        ("AggregationEvent", "DELETE", "unpacking", "P1", ["C00000"]),
        ("AggregationEvent", "ADD", "packing", "P2", ["C00000"]),
        ("AggregationEvent", "DELETE", "unpacking", "P3", ["C00003"]),
        ("AggregationEvent", "ADD", "packing", "P4", ["C00003"]),
    ]
    assert [e.get("disposition") for e in sent] == [None, None, "in_progress", None, "in_progress"]
    validate(document(sent))
    for leave, arrive in ((sent[1], sent[2]), (sent[3], sent[4])):  # the arrival is 1 ms after the leaving
        gap = datetime.fromisoformat(arrive["eventTime"]) - datetime.fromisoformat(leave["eventTime"])
        assert gap == timedelta(milliseconds=1)
    assert len({e["eventID"] for e in sent}) == 5

    # The journal rows (not uplinked) carry the partial states; the audit rows were written with the change.
    journal = {r[0]: json.loads(r[1]) for r in conn.execute(
        "SELECT kind, payload FROM events WHERE kind LIKE 'pack.%' AND seq > ?", (before,))}
    assert journal["pack.take_out"]["partial"] == {"B00004": "I00008 taken out: damaged cap"}
    assert journal["pack.merge"]["partial"] == {"P1": None, "P2": None}
    assert journal["pack.move"]["partial"] == {"P3": "C00003 moved to P4: fill the short pallet", "P4": None}
    audit = [(r[0], r[1]) for r in conn.execute("SELECT action, result FROM audit ORDER BY id")]
    assert audit == [
        ("pack.take_out", "ok: 1 moved; B00004 closed 1/2"),
        ("pack.merge", "ok: 1 moved; P1 unpacked 0/2 -> P2 2/2"),
        ("pack.move", "ok: 1 moved; P3 closed 1/2 -> P4 2/2"),
    ]
    history = [r[0] for r in conn.execute("SELECT action FROM pack_history WHERE action IN"
                                          " ('take_out', 'merge', 'move') ORDER BY id")]
    assert history == ["take_out", "merge", "move"]

    # Replay: a fresh ledger holding only what exists before any packing (code packages, the job, the
    # codes) and the journal; the links rebuilt from its uplinked events equal the original ones.
    expected = links(conn)
    yard.ledger.commit()
    with Ledger(tmp_path / "fresh.db") as fresh:
        with fresh.atomic(durable=True) as dst:
            for table, cols in (("packages", "*"), ("jobs", "*"), ("codes", "id, code, level, package, job"),
                                ("events", "*")):
                rows = conn.execute(f"SELECT {cols} FROM {table}").fetchall()
                names = [d[0] for d in conn.execute(f"SELECT {cols} FROM {table} LIMIT 0").description]
                dst.executemany(f"INSERT INTO {table}({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                                [tuple(r) for r in rows])
            assert dst.execute("SELECT COUNT(*) FROM pack_links").fetchone()[0] == 0
            rebuilt = events.replay(dst)
            ids = dict(dst.execute("SELECT code, id FROM codes").fetchall())
            dst.executemany("INSERT INTO pack_links(child, parent, linked_at) VALUES (?, ?, 0)",
                            [(ids[c], ids[p]) for c, p in rebuilt.items()])
        assert links(fresh.conn) == expected
        assert len(expected) == 30 - 1 + 15 + 5  # bottles (one taken out), boxes, cases (P1's moved, none lost)


def snapshot(ledger: Ledger) -> tuple[object, ...]:
    conn = ledger.conn
    return (sorted(links(conn)), conn.execute("SELECT * FROM packs ORDER BY id").fetchall(),
            last_seq(conn), conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM pack_history").fetchone()[0])


def test_every_refusal_names_what_and_changes_nothing(yard: Floor) -> None:
    agg, ledger = yard.agg, yard.ledger
    rework.take_out(agg, "I00008", reason="damaged cap")  # B00004 now holds one bottle
    agg.open("box", "B00020", job=yard.job)
    agg.add("B00020", ["I00040"])
    agg.add("B00020", ["I00041"])
    agg.pack("box", "B00021", ["I00042", "I00043"])
    # A second job with its own lot, packed to a partial pallet P5.
    job2 = create_job(ledger, JobSpec("J2", "09506000134352", "Water", "LOT2", 100))
    yard.verify(yard.items[50:56], job=job2)
    for i in range(3):
        agg.pack("box", yard.boxes[25 + i], yard.items[50 + 2 * i: 52 + 2 * i], job=job2)
    agg.pack("case", "C00009", yard.boxes[25:28], job=job2)
    agg.pack("pallet", "P5", ["C00009"], job=job2, partial_reason="end of lot")
    agg.open("pallet", "P6", job=yard.job)

    before = snapshot(ledger)
    refusals: list[tuple[Any, str]] = [
        (lambda: rework.take_out(agg, "I00059", reason="x"), "'I00059' is in no pack"),
        (lambda: rework.take_out(agg, "NOPE", reason="x"), "'NOPE' is not a code of this ledger"),
        (lambda: rework.take_out(agg, "I00040", reason="x"),
         "box 'B00020' is open: a station is filling it; park it first"),
        (lambda: rework.take_out(agg, "I00009", reason="x"), "'I00009' is the last item in 'B00004'; unlink"),
        (lambda: rework.take_out(agg, "I00010", reason="  "), "needs a reason"),
        (lambda: rework.move(agg, "C00000", "P2"), "'C00000' is the last case in 'P1'; merge 'P1' into 'P2'"),
        (lambda: rework.move(agg, "C00001", "P2"), "'C00001' is already in 'P2'"),
        (lambda: rework.move(agg, "B00000", "I00030"), "'I00030' is not a pack"),
        (lambda: rework.move(agg, "C00002", "P6"), "pallet 'P6' is open"),
        (lambda: rework.merge(agg, "P1", "P1"), "cannot be merged into itself"),
        (lambda: rework.merge(agg, "P1", "C00001"), "'P1' is a pallet, 'C00001' is a case"),
        (lambda: rework.merge(agg, "C00000", "C00001"), "'C00000' is inside 'P1'; take it out of 'P1' first"),
        (lambda: rework.merge(agg, "P6", "P2"), "pallet 'P6' is open"),
    ]
    for call, message in refusals:
        with pytest.raises(rework.ReworkRefused, match=message):
            call()
        assert snapshot(ledger) == before, message
    # The packing rules, as PackRejected with their reasons: over the count, the wrong level, another lot.
    rejected: list[tuple[Any, Reason, str]] = [
        (lambda: rework.merge(agg, "B00021", "B00004"), Reason.TOO_MANY, "3 item codes, a box holds 2"),
        (lambda: rework.move(agg, "B00000", "C00001"), Reason.TOO_MANY, "4 box codes, a case holds 3"),
        (lambda: rework.move(agg, "B00000", "P2"), Reason.WRONG_LEVEL, "is a box code; a pallet holds case"),
        (lambda: rework.move(agg, "I00000", "P2"), Reason.WRONG_LEVEL, "is a item code; a pallet holds case"),
        (lambda: rework.merge(agg, "P5", "P1"), Reason.MIXED_LOT, "is lot 'LOT2', the pack is lot 'LOT1'"),
        (lambda: rework.merge(agg, "P1", "P5"), Reason.MIXED_LOT, "is lot 'LOT1', the pack is lot 'LOT2'"),
    ]
    for call, reason, detail in rejected:
        with pytest.raises(PackRejected) as exc:
            call()
        assert exc.value.reasons == [reason] and detail in str(exc.value), str(exc.value)
        assert snapshot(ledger) == before, detail


def test_parked_packs_are_reworked_and_stay_parked_without_a_partial_reason(yard: Floor) -> None:
    agg, conn = yard.agg, yard.ledger.conn
    for i in range(15, 18):
        agg.pack("box", yard.boxes[i], yard.items[2 * i: 2 * i + 2])
    agg.pack("case", "C00005", yard.boxes[15:18])
    agg.open("pallet", "P5", job=yard.job)
    agg.add("P5", ["C00005"])
    agg.park("P5")
    agg.open("pallet", "P6")  # opened before any job was known
    agg.park("P6")

    rework.move(agg, "C00003", "P5")
    assert partial(conn, "P5") == ("parked", None) and partial(conn, "P3") == ("closed", "C00003 moved to P5")
    rework.take_out(agg, "C00005", reason="label torn")
    assert partial(conn, "P5") == ("parked", None)
    rework.merge(agg, "P5", "P6")
    assert partial(conn, "P6") == ("parked", None) and partial(conn, "P5") == ("unpacked", None)
    assert conn.execute("SELECT p.job FROM packs p JOIN codes c ON c.id = p.code WHERE c.code = 'P6'").fetchone()[0] \
        == yard.job  # the job of what arrived
    assert agg.children_of("P6") == ["C00003"] and ("C00005", "P5") not in links(conn)
    assert events.replay(conn) == dict(links(conn))
    agg.resume("P6")
    agg.add("P6", ["C00005"])  # the taken-out case packs again, onto the pallet that has room
    assert agg.close("P6").state is PackState.CLOSED


def test_a_rework_that_fails_half_way_leaves_nothing_behind(yard: Floor) -> None:
    """One transaction: the arrival's event is refused by the file itself (a trigger), after the child
    was unlinked and its DELETE journaled; the move and the merge must leave no trace at all."""
    ledger = yard.ledger
    with ledger.atomic(durable=True) as conn:
        conn.execute("CREATE TEMP TRIGGER no_arrival BEFORE INSERT ON events WHEN NEW.kind = 'aggregation.add'"
                     " BEGIN SELECT RAISE(ABORT, 'no room on the disk for the arrival'); END")
    before = snapshot(ledger)
    for call in (lambda: rework.move(yard.agg, "C00003", "P4"), lambda: rework.merge(yard.agg, "P1", "P2")):
        with pytest.raises(sqlite3.IntegrityError, match="no room on the disk"):
            call()
        assert snapshot(ledger) == before
    with ledger.atomic(durable=True) as conn:
        conn.execute("DROP TRIGGER no_arrival")
    rework.move(yard.agg, "C00003", "P4")  # and the ledger goes on
    assert snapshot(ledger) != before
