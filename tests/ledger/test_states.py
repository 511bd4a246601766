"""Every legal and every illegal code transition, applied to a real ledger file."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from agent.ledger import CodeState, IllegalTransition, Ledger, UnknownCode
from agent.ledger.states import TRANSITIONS
from tests.helpers import seed_codes

# How to walk a fresh code to each state through legal steps.
PATHS: dict[CodeState, list[CodeState]] = {
    CodeState.AVAILABLE: [],
    CodeState.ALLOCATED: [CodeState.ALLOCATED],
    CodeState.SENT: [CodeState.ALLOCATED, CodeState.SENT],
    CodeState.PRINTED: [CodeState.ALLOCATED, CodeState.SENT, CodeState.PRINTED],
    CodeState.VERIFIED: [CodeState.ALLOCATED, CodeState.SENT, CodeState.PRINTED, CodeState.VERIFIED],
    CodeState.REJECTED: [CodeState.ALLOCATED, CodeState.SENT, CodeState.PRINTED, CodeState.REJECTED],
    CodeState.IN_DOUBT: [CodeState.ALLOCATED, CodeState.SENT, CodeState.IN_DOUBT],
    CodeState.VOIDED: [CodeState.VOIDED],
    CodeState.RETURNED: [CodeState.ALLOCATED, CodeState.RETURNED],
    CodeState.ESCAPED: [CodeState.ALLOCATED, CodeState.SENT, CodeState.PRINTED, CodeState.ESCAPED],
}
PAIRS = list(itertools.product(CodeState, CodeState))


def _at(ledger: Ledger, code: str, state: CodeState) -> None:
    for step in PATHS[state]:
        ledger.transition(code, step)
    assert ledger.state_of(code) is state


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    led = Ledger(tmp_path_factory.mktemp("states") / "ledger.db")
    seed_codes(led, [f"C{i}" for i in range(len(PAIRS))])
    return led


def test_every_state_has_a_rule() -> None:
    assert set(TRANSITIONS) == set(CodeState)


@pytest.mark.parametrize(("index", "pair"), list(enumerate(PAIRS)), ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition(ledger: Ledger, index: int, pair: tuple[CodeState, CodeState]) -> None:
    source, target = pair
    code = f"C{index}"
    _at(ledger, code, source)
    events_before = ledger.conn.execute("SELECT COUNT(*) FROM events WHERE code = ?", (code,)).fetchone()[0]
    if target in TRANSITIONS[source]:
        receipt = ledger.transition(code, target)
        assert ledger.state_of(code) is target
        row = ledger.conn.execute("SELECT kind, payload FROM events WHERE seq = ?", (receipt.event_seq,)).fetchone()
        assert row["kind"] == f"code.{target}"
        assert f'"from":"{source}"' in row["payload"]
    else:
        with pytest.raises(IllegalTransition) as err:
            ledger.transition(code, target)
        assert code in str(err.value) and str(source) in str(err.value) and str(target) in str(err.value)
        assert ledger.state_of(code) is source  # nothing changed
        after = ledger.conn.execute("SELECT COUNT(*) FROM events WHERE code = ?", (code,)).fetchone()[0]
        assert after == events_before  # and no event was written


def test_unknown_code_is_named(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    with pytest.raises(UnknownCode, match="NOPE"):
        led.transition("NOPE", CodeState.ALLOCATED)
