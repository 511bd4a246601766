"""The restart plan (agent/verify/binding.py) against situations written out by hand.

Each case is a line state a restart can find: the bindings the ledger holds, the mark, the coder's
feed records as the feeder's reconcile left them, the PLC counter and the release register. The
expected plan is what the counters and the gate logic prove, item by item, worked out here by hand.
"""

from __future__ import annotations

from agent.ledger import CodeState
from agent.verify.binding import Bound, Fate, Mark, plan
from agent.verify.verdict import Verdict
from drivers.plc import GateMode

P, S, D = CodeState.PRINTED, CodeState.SENT, CodeState.IN_DOUBT
GATE = 4


def feed(*states: CodeState, first: int = 101) -> list[Bound]:
    return [Bound(0, f"F{first + i}", st, "coder1", first + i) for i, st in enumerate(states)]


def test_items_after_the_mark_are_bound_when_both_counters_agree() -> None:
    # Mark: item 10 got feed record 100. The PLC counted 3 more items; the coder printed 101..103, then
    # nothing of 104 (still sent, pushed after the reconcile). Item 10+k carries record 100+k.
    p = plan(raw_counter=13, rows=[Bound(10, "F100", P, "coder1", 100)], mark=Mark(10, "coder1", 100),
             after_mark=feed(P, P, P, S), gate=GateMode.RELEASE, released_raw=None, gate_at=GATE)
    assert [(b.seq, b.code) for b in p.proven] == [(11, "F101"), (12, "F102"), (13, "F103")]
    assert [b.seq for b in p.restore] == [10, 11, 12, 13] and p.unbound == []


def test_no_binding_when_the_coder_printed_fewer_more_or_out_of_order() -> None:
    mark = Mark(10, "coder1", 100)
    for after in (feed(P, P), feed(P, P, P, P), feed(P, D, P), feed(D, P, P, P)):
        p = plan(raw_counter=13, rows=[], mark=mark, after_mark=after, gate=GateMode.RELEASE,
                 released_raw=None, gate_at=GATE)
        assert p.proven == [] and p.unbound == [10, 11, 12, 13], after


def test_past_the_gate_under_positive_release_what_was_not_released_was_removed() -> None:
    rows = [Bound(3, "A", CodeState.VERIFIED, verdict=Verdict.GOOD, released=True),
            Bound(4, "B", CodeState.VERIFIED, verdict=Verdict.GOOD),  # released: the register says 5
            Bound(5, "C", P, verdict=Verdict.NO_READ, reason="nothing decoded"),
            Bound(6, "D", P),  # never judged
            Bound(7, "E", CodeState.VERIFIED, verdict=Verdict.GOOD),  # verified, release never written
            Bound(8, "G", P)]  # in flight (head 11, gate at 4: items 8..11)
    p = plan(raw_counter=11, rows=rows, mark=Mark(8, None, None), after_mark=[], gate=GateMode.RELEASE,
             released_raw=5, gate_at=GATE)
    assert [(b.seq, f) for b, f, _ in p.settle] == [(3, Fate.PASSED), (4, Fate.PASSED), (5, Fate.REMOVED),
                                                    (6, Fate.REMOVED), (7, Fate.REMOVED)]
    assert [b.seq for b in p.restore] == [8] and p.unbound == [9, 10, 11] and p.released_upto == 5


def test_past_the_gate_under_a_reject_only_gate_nothing_unproven_is_called_removed() -> None:
    rows = [Bound(3, "A", CodeState.VERIFIED, verdict=Verdict.GOOD),
            Bound(4, "B", P, verdict=Verdict.LOW_GRADE, reason="grade D"),  # fired, confirm not seen
            Bound(5, "C", P)]  # passed unjudged while the agent was down
    p = plan(raw_counter=9, rows=rows, mark=Mark(5, None, None), after_mark=[], gate=GateMode.REJECT,
             released_raw=None, gate_at=GATE)
    assert [(b.seq, f) for b, f, _ in p.settle] == [(3, Fate.PASSED), (4, Fate.ESCAPED), (5, Fate.ESCAPED)]
    assert p.unbound == [6, 7, 8, 9]


def test_a_binding_whose_code_was_flushed_unprinted_is_not_trusted() -> None:
    rows = [Bound(8, "A", CodeState.RETURNED), Bound(9, "B", D), Bound(10, "C", P)]
    p = plan(raw_counter=10, rows=rows, mark=Mark(10, None, None), after_mark=[], gate=GateMode.RELEASE,
             released_raw=0, gate_at=GATE)
    assert [b.seq for b in p.restore] == [9, 10]  # in doubt: a read may still prove it on its item
    assert p.unbound == [7, 8]


def test_the_counter_unwraps_across_16_bits_and_a_counter_that_went_back_is_a_reset() -> None:
    p = plan(raw_counter=2, rows=[Bound(65536, "A", P)], mark=Mark(65536, None, None), after_mark=[],
             gate=GateMode.RELEASE, released_raw=65535, gate_at=GATE)
    assert p.head == 65538 and [b.seq for b in p.restore] == [65536] and p.released_upto == 65535
    assert p.unbound == [65535, 65537, 65538]
    p = plan(raw_counter=3, rows=[Bound(500, "A", P)], mark=Mark(500, None, None), after_mark=[],
             gate=GateMode.RELEASE, released_raw=None, gate_at=GATE)
    assert p.reset and p.head == 3 and [(b.seq, f) for b, f, _ in p.settle] == [(500, Fate.ESCAPED)]
    assert p.unbound == [1, 2, 3]


def test_a_first_start_rejects_whatever_is_already_on_the_belt() -> None:
    p = plan(raw_counter=40, rows=[], mark=None, after_mark=[], gate=GateMode.REJECT, released_raw=None,
             gate_at=GATE)
    assert p.head == 40 and p.unbound == [37, 38, 39, 40] and p.restore == [] and p.settle == []
