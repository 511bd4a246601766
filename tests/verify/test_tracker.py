"""Position tracking: reads that come late, early, twice or never land on the right item."""

from __future__ import annotations

import pytest

from agent.verify.tracker import Tracker, TrackingError
from agent.verify.verdict import Judgement, Observation, Verdict


def tracker() -> Tracker:
    return Tracker(camera_at=3, window=2, gate_at=8)


def test_positions_must_leave_room_to_judge_before_the_gate() -> None:
    with pytest.raises(ValueError, match="judged before the gate"):
        Tracker(camera_at=5, window=3, gate_at=8)


def test_an_unread_item_expires_exactly_when_its_window_closes() -> None:
    t = tracker()
    t.printed(1, "C1")
    assert t.advance(6).expired == []  # seq 1 at position 5 = camera_at + window: still readable
    expired = t.advance(7).expired
    assert [i.seq for i in expired] == [1]
    assert expired[0].code == "C1"


def test_a_late_read_inside_the_window_counts_and_outside_is_dropped() -> None:
    t = tracker()
    for seq in (1, 2):
        t.printed(seq, f"C{seq}")
    t.advance(6)
    item = t.observe(Observation(1, ("C1",)))  # two pitches after the camera: late but in the window
    assert item is not None and item.code == "C1"
    t.judged(item, Judgement(Verdict.GOOD, "C1", "ok"))
    expired = t.advance(8).expired
    assert [i.seq for i in expired] == [2]  # seq 2's window closed unread; seq 1 was judged
    t.judged(expired[0], Judgement(Verdict.NO_READ, None, "none"))
    assert t.observe(Observation(2, ("C2",))) is None  # arrives after its item was judged unread
    assert t.late_reads == 1


def test_missing_reads_do_not_shift_verdicts_onto_neighbours() -> None:
    t = tracker()
    for seq in range(1, 20):
        t.printed(seq, f"C{seq}")
    seen: dict[int, str | None] = {}
    for counter in range(1, 20):
        adv = t.advance(counter)
        for item in adv.expired:
            seen[item.seq] = None
            t.judged(item, Judgement(Verdict.NO_READ, None, ""))
        cam = t.at_camera()
        if cam is not None and cam % 3 != 0:  # every third item is never read
            read = t.observe(Observation(cam, (f"C{cam}",)))
            assert read is not None
            seen[cam] = read.code
            t.judged(read, Judgement(Verdict.GOOD, read.code, ""))
    assert seen == {s: (None if s % 3 == 0 else f"C{s}") for s in range(1, 17) if s % 3 or s <= 13}


def test_items_leave_at_the_gate_and_prints_can_precede_the_counter() -> None:
    t = tracker()
    t.printed(1, "C1")  # print-complete before the counter moved
    adv = t.advance(8)
    assert [i.seq for i in adv.at_gate] == []
    adv = t.advance(9)
    assert [i.seq for i in adv.at_gate] == [1]
    assert t.get(1) is None
    with pytest.raises(TrackingError, match="past the gate"):
        t.printed(1, "C1")


def test_contradictions_are_refused() -> None:
    t = tracker()
    t.printed(1, "C1")
    with pytest.raises(TrackingError, match="already carries 'C1'"):
        t.printed(1, "C9")
    with pytest.raises(TrackingError, match="has not passed the print head"):
        t.observe(Observation(5, ("C5",)))
    t.advance(4)
    with pytest.raises(TrackingError, match="counter went back"):
        t.advance(3)


def test_a_second_read_of_the_same_item_is_ignored() -> None:
    t = tracker()
    t.printed(1, "C1")
    t.advance(4)
    first = t.observe(Observation(1, ("C1",)))
    assert first is not None
    t.judged(first, Judgement(Verdict.GOOD, "C1", ""))
    assert t.observe(Observation(1, ("C9",))) is None
    assert t.repeat_reads == 1
