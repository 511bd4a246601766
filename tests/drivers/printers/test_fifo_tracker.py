"""FifoTracker: turning "last printed index + records waiting" into seqs, and noticing a cleared FIFO."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.printers.base import FifoTracker


def tracker_with(n: int, capacity: int = 8, first_seq: int = 100) -> FifoTracker:
    t = FifoTracker()
    for i in range(n):
        t.pushed(first_seq + i, i % capacity + 1)
    return t


def test_progress_is_read_from_last_index_and_depth() -> None:
    t = tracker_with(5)
    r = t.reconcile(3, 2)
    assert (r.printed, r.lost, t.last_printed, len(t)) == ((100, 101, 102), (), 102, 2)
    assert t.reconcile(3, 2).printed == ()  # nothing new


def test_cleared_fifo_puts_the_rest_in_doubt_keeping_what_was_printed() -> None:
    t = tracker_with(5)
    r = t.reconcile(2, 0)  # two printed, then a stop cleared the rest
    assert (r.printed, r.lost, t.fifo_lost, t.last_printed) == ((100, 101), (102, 103, 104), True, 101)
    t.pushed(105, 6)
    assert not t.fifo_lost


def test_power_on_report_with_no_last_index_claims_nothing_printed() -> None:
    t = tracker_with(3)
    r = t.reconcile(0, 0)
    assert (r.printed, r.lost) == ((), (100, 101, 102))


def test_a_full_fifo_with_a_wrapped_index_is_not_mistaken_for_progress() -> None:
    t = tracker_with(8, capacity=8)  # seq 100..107 with indexes 1..8
    assert t.reconcile(1, 7).printed == (100,)
    t.pushed(108, 1)  # index 1 again: the FIFO is full, and its newest record shares the last printed index
    assert t.reconcile(1, 8).printed == ()  # index 1 last printed and eight waiting: no progress
    assert t.reconcile(1, 0).printed == tuple(range(101, 109))  # all eight printed, the last with index 1


def test_an_answer_overtaken_by_print_messages_is_not_a_loss() -> None:
    t = tracker_with(3)
    t.printed_count(2)  # print-complete for indexes 1 and 2 handled first...
    r = t.reconcile(1, 2)  # ...then the answer sent between them: last 1, two waiting
    assert (r.printed, r.lost, t.fifo_lost) == ((), (), False)


@settings(max_examples=200, deadline=None)
@given(pushed=st.integers(0, 8), printed=st.integers(0, 8), cleared=st.booleans())
def test_reconcile_never_confirms_more_than_was_printed(pushed: int, printed: int, cleared: bool) -> None:
    printed = min(printed, pushed)
    t = tracker_with(pushed)
    r = t.reconcile(printed or None, 0 if cleared else pushed - printed)
    assert len(r.printed) <= printed
    assert set(r.printed).isdisjoint(r.lost)
    assert len(r.printed) + len(r.lost) + len(t) == pushed
