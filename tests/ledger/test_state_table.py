"""The transition table checked against a table written here by hand, not derived from it.

Why by hand: a test that derives legality from TRANSITIONS passes whatever TRANSITIONS says, a wrong
table included. The pairs below are written from the OPEN-SCS code life cycle as the agent uses it
(reserved -> encoded -> commissioned / decommissioned), each with the physical event that justifies
it; the properties after them say what must hold whatever the table is, e.g. that a code which may be
on a product can never be handed to a coder again.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from agent.ledger import CodeState, IllegalTransition, Ledger, LedgerError
from agent.ledger.states import ALLOCATABLE, TERMINAL, TRANSITIONS, legal_pairs
from tests.helpers import seed_codes

A, AL, SE, PR, VE, RJ, ID, VO, RE, ES = (
    "available", "allocated", "sent", "printed", "verified", "rejected", "in_doubt", "voided", "returned",
    "escaped")

BY_HAND: dict[tuple[str, str], str] = {
    (A, AL): "a job reserves a pooled code",
    (A, VO): "a code of the pool is withdrawn (a recalled package)",
    (AL, SE): "the code goes into a coder's FIFO (durable before its bytes leave)",
    (AL, PR): "a label printer prints on demand and confirms at once (no FIFO, no sent step)",
    (AL, VO): "a reserved code is withdrawn",
    (AL, RE): "the job ends with the code never sent: back to the pool",
    (SE, PR): "the coder reports it printed (OPEN-SCS: encoded)",
    (SE, ID): "a stop, fault or power loss: it may or may not be on a product",
    (SE, RE): "the coder proved it flushed, never printed: back to the pool (audited)",
    (PR, VE): "read back and graded good (commissioned)",
    (PR, RJ): "read back and failed; the gate removed the item (decommissioned)",
    (PR, ES): "the product left the line with no verdict carried out at the gate (never reported void)",
    (VE, RJ): "decommissioned after the fact (a recall, a broken pack)",
    (ID, PR): "a camera read proves it is on a product",
    (ID, VO): "never proven: voided at job close, never used again",
    (RE, AL): "a later job reserves it",
    (RE, VO): "a returned code is withdrawn",
}

SENDABLE = {AL, SE}  # states from which a code can (still or again) reach a coder
MAY_BE_ON_A_PRODUCT = {PR, VE, RJ, ID, ES}


def _reachable(start: str) -> set[str]:
    """States reachable from `start` through the table under test (not the hand-written one)."""
    seen: set[str] = set()
    todo = deque([start])
    while todo:
        for nxt in TRANSITIONS[CodeState(todo.popleft())]:
            if nxt.value not in seen:
                seen.add(nxt.value)
                todo.append(nxt.value)
    return seen


def test_the_table_is_exactly_the_hand_written_one() -> None:
    table = {(s.value, t.value) for s, t in legal_pairs()}
    assert table - set(BY_HAND) == set(), "the table allows moves no physical event justifies"
    assert set(BY_HAND) - table == set(), "the table forbids moves the line needs"


def test_every_state_is_named_here() -> None:
    assert {s.value for s in CodeState} == {A, AL, SE, PR, VE, RJ, ID, VO, RE, ES}


@pytest.mark.parametrize("start", sorted(MAY_BE_ON_A_PRODUCT))
def test_a_code_that_may_be_on_a_product_never_becomes_sendable(start: str) -> None:
    """In doubt (or printed) means possibly on an item: sending it again could print it twice."""
    assert _reachable(start) & (SENDABLE | {A, RE}) == set()


def test_an_in_doubt_code_ends_printed_or_voided_only() -> None:
    assert {t.value for t in TRANSITIONS[CodeState.IN_DOUBT]} == {PR, VO}
    assert _reachable(ID) <= {PR, VE, RJ, VO, ES}  # once proven printed, it may escape like any print


def test_voided_and_rejected_are_final_and_nothing_returns_to_available() -> None:
    assert {s.value for s in TERMINAL} == {RJ, VO, ES}
    assert all(A not in _reachable(s.value) for s in CodeState)


def test_only_pooled_codes_are_allocatable() -> None:
    assert {s.value for s in ALLOCATABLE} == {A, RE}
    assert {s.value for s, nxt in TRANSITIONS.items() if CodeState.ALLOCATED in nxt} == {A, RE}


def test_a_code_enters_a_coder_only_from_allocated() -> None:
    assert {s.value for s, nxt in TRANSITIONS.items() if CodeState.SENT in nxt} == {AL}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    led = Ledger(tmp_path_factory.mktemp("hand") / "ledger.db")
    seed_codes(led, [f"H{i}" for i in range(len(CodeState) ** 2)])
    return led


# A path to each state through hand-written legal moves.
WALK: dict[str, list[str]] = {A: [], AL: [AL], SE: [AL, SE], PR: [AL, SE, PR], VE: [AL, SE, PR, VE],
                              RJ: [AL, SE, PR, RJ], ID: [AL, SE, ID], VO: [VO], RE: [AL, RE]}
PAIRS = [(s, t) for s in WALK for t in WALK]


@pytest.mark.parametrize(("index", "pair"), list(enumerate(PAIRS)), ids=[f"{a}->{b}" for a, b in PAIRS])
def test_the_ledger_applies_the_hand_written_table(ledger: Ledger, index: int, pair: tuple[str, str]) -> None:
    source, target = pair
    code = f"H{index}"
    for step in WALK[source]:
        ledger.transition(code, CodeState(step))
    if pair in BY_HAND:
        ledger.transition(code, CodeState(target))
        assert ledger.state_of(code).value == target
    else:
        with pytest.raises(IllegalTransition):
            ledger.transition(code, CodeState(target))
        assert ledger.state_of(code).value == source


def test_in_doubt_cannot_be_sent_even_in_a_batch(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    seed_codes(led, ["D"])
    for step in (CodeState.ALLOCATED, CodeState.SENT, CodeState.IN_DOUBT):
        led.transition("D", step)
    for target in (CodeState.SENT, CodeState.ALLOCATED):
        with pytest.raises(IllegalTransition):
            led.transition_many(["D"], target, expect=CodeState.IN_DOUBT)
    with pytest.raises(LedgerError, match="only 0 codes"):  # and it is not in the pool
        led.allocate(1, "item", 1)
    assert led.state_of("D") is CodeState.IN_DOUBT
    led.close()
