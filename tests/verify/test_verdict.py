"""Every verdict from reader strings and grades, against code states in a real ledger file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.ledger import CodeState, Ledger, UnknownCode
from agent.verify.grade import Grade
from agent.verify.verdict import Observation, StateOf, Verdict, judge
from tests.helpers import seed_codes


def walk(ledger: Ledger, code: str, *states: str) -> None:
    """Move a code through legal steps (the ledger file refuses any other move)."""
    for state in dict.fromkeys(states):  # "printed" twice in a row is one step
        ledger.transition(code, CodeState(state))


@pytest.fixture
def state_of(tmp_path: Path) -> StateOf:
    ledger = Ledger(tmp_path / "l.db")
    seed_codes(ledger, ["A1", "A2", "A3", "A4"])
    for code, last in (("A1", "printed"), ("A2", "printed"), ("A3", "verified"), ("A4", "rejected")):
        walk(ledger, code, "allocated", "sent", "printed", last)

    def lookup(text: str) -> CodeState | None:
        try:
            return ledger.state_of(text)
        except UnknownCode:
            return None

    return lookup


@pytest.mark.parametrize(
    ("expected", "obs", "verdict", "read"),
    [
        ("A1", Observation(1, ("A1",)), Verdict.GOOD, "A1"),
        ("A1", Observation(1, ("A1",), Grade.C), Verdict.GOOD, "A1"),
        ("A1", Observation(1, ("A1",), Grade.D), Verdict.LOW_GRADE, "A1"),
        ("A1", Observation(1, ("A2",)), Verdict.MISMATCH, "A2"),
        ("A1", Observation(1, ("A3",)), Verdict.DUPLICATE, "A3"),  # verified on another item
        ("A1", Observation(1, ("A4",)), Verdict.DUPLICATE, "A4"),  # rejected on another item
        ("A3", Observation(1, ("A3",)), Verdict.DUPLICATE, "A3"),  # the coder printed a used code again
        ("A1", Observation(1, ("ZZ9",)), Verdict.FOREIGN, "ZZ9"),
        ("A1", Observation(1, ("ZZ9",), Grade.F), Verdict.FOREIGN, "ZZ9"),  # worse reason wins
        ("A1", Observation(1, ("A2", "A1")), Verdict.GOOD, "A1"),  # the expected code among several
        ("A1", Observation(1, ()), Verdict.NO_READ, None),
        ("A1", None, Verdict.NO_READ, None),
        ("A1", Observation(1, (), blank=True), Verdict.MISSING_PRINT, None),
        (None, None, Verdict.MISSING_PRINT, None),
        (None, Observation(1, ("A2",)), Verdict.MISMATCH, "A2"),  # nothing printed here, yet a code read
    ],
)
def test_verdicts(expected: str | None, obs: Observation | None, verdict: Verdict, read: str | None,
                  state_of: StateOf) -> None:
    j = judge(expected, obs, state_of, minimum=Grade.C)
    assert (j.verdict, j.read) == (verdict, read)
    assert j.verdict.rejects == (verdict is not Verdict.GOOD)


def test_reasons_name_what_was_read_and_expected(state_of: StateOf) -> None:
    j = judge("A1", Observation(1, ("A2",)), state_of, minimum=Grade.C)
    assert "'A2'" in j.reason and "'A1'" in j.reason
    j = judge("A1", Observation(1, ("A1",), Grade.D), state_of, minimum=Grade.B)
    assert "grade D is below the minimum B" in j.reason


def test_the_right_code_in_a_state_that_cannot_be_verified_is_rejected(tmp_path: Path) -> None:
    """A code voided (or never sent) cannot be on a genuine product of this run, even where expected."""
    ledger = Ledger(tmp_path / "v.db")
    seed_codes(ledger, ["V1", "R1"])
    walk(ledger, "V1", "voided")
    walk(ledger, "R1", "allocated", "returned")

    def lookup(text: str) -> CodeState | None:
        try:
            return ledger.state_of(text)
        except UnknownCode:
            return None

    for code in ("V1", "R1"):
        j = judge(code, Observation(1, (code,)), lookup, minimum=Grade.C)
        assert j.verdict is Verdict.MISMATCH and j.read == code
        assert "cannot be on a product" in j.reason
    ledger.close()
