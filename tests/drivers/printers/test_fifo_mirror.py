"""FifoMirror: the one mirror of what a coder holds, and the fate it gives each record pushed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.printers.fifo import CoderKind, Fates, FifoMirror


def mirror(n: int, capacity: int = 8, kind: CoderKind = CoderKind.COUNTED_FIFO) -> FifoMirror:
    m = FifoMirror(kind, capacity)
    for i in range(n):
        m.pushed(100 + i, i % capacity + 1 if kind is CoderKind.INDEXED_FIFO else None)
    return m


def test_prints_take_the_oldest_records_and_move_last_printed() -> None:
    m = mirror(5)
    assert m.printed(2) == Fates(printed=(100, 101))
    assert (m.last_printed, len(m), m.room) == (101, 3, 5)
    assert m.printed(0) == Fates() and not m.printed(0)
    assert m.printed(10) == Fates(printed=(102, 103, 104))  # a count beyond what is held confirms no more
    assert m.last_printed == 104


def test_an_indexed_report_prints_through_its_tag_and_a_stranger_tag_is_none() -> None:
    m = mirror(4, kind=CoderKind.INDEXED_FIFO)
    assert m.printed_through(2) == Fates(printed=(100, 101))
    assert m.printed_through(7) is None  # no pending record has it: the caller treats the rest as lost
    assert len(m) == 2


def test_a_flush_the_driver_proved_is_flushed_any_other_loss_unknown() -> None:
    m = mirror(3)
    m.printed(1)
    assert m.flushed() == Fates(flushed=(101, 102))
    assert m.lost and len(m) == 0
    m.pushed(103)
    assert not m.lost  # a push clears the loss flag
    assert m.lose() == Fates(unknown=(103,))
    assert m.lose() == Fates()  # nothing pending: nothing lost again


def test_capacity_and_order_are_enforced() -> None:
    m = mirror(1, capacity=1, kind=CoderKind.SINGLE_SLOT)
    with pytest.raises(OverflowError):
        m.pushed(200)
    m.printed(1)
    m.pushed(200)
    with pytest.raises(ValueError, match="after seq 200"):
        FifoMirror(CoderKind.COUNTED_FIFO, 4, pending=m.pending).pushed(150)


def test_fates_add_in_order() -> None:
    assert Fates((1,), (2,), (3,)) + Fates((4,), (), (5,)) == Fates((1, 4), (2,), (3, 5))


@given(ops=st.lists(st.tuples(st.sampled_from(["push", "print", "flush", "lose"]), st.integers(0, 5)), max_size=60),
       capacity=st.integers(1, 8))
def test_every_record_gets_exactly_one_fate_in_push_order(ops: list[tuple[str, int]], capacity: int) -> None:
    m = FifoMirror(CoderKind.COUNTED_FIFO, capacity)
    seq, fates = 0, Fates()
    pushed: list[int] = []
    for op, n in ops:
        if op == "push":
            for _ in range(min(n, m.room)):
                seq += 1
                m.pushed(seq)
                pushed.append(seq)
        elif op == "print":
            fates += m.printed(n)
        elif op == "flush":
            fates += m.flushed()
        else:
            fates += m.lose()
        assert len(m) <= capacity
    fates += m.lose()
    every = sorted(fates.printed + fates.flushed + fates.unknown)
    assert every == pushed  # each record exactly one fate
    assert list(fates.printed) == sorted(fates.printed)  # prints confirmed in push order
