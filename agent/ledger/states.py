"""Code states after OPEN-SCS, and the one table that says which transitions are legal.

Every state change anywhere in the agent goes through `check_transition`, so the rules live here
and nowhere else. A code that may be on a product but is not proven printed is `in_doubt`; it is
never sent again, and ends `voided` unless a camera read proves it (then `printed`).
"""

from __future__ import annotations

from enum import StrEnum


class CodeState(StrEnum):
    AVAILABLE = "available"  # in a package of this line, not reserved
    ALLOCATED = "allocated"  # reserved for a job
    SENT = "sent"  # in a coder's FIFO (durable before its bytes leave)
    PRINTED = "printed"  # the coder confirmed it (OPEN-SCS Encoded)
    VERIFIED = "verified"  # read back and graded good (OPEN-SCS Commissioned)
    REJECTED = "rejected"  # read back and failed, item left the line (decommissioned)
    IN_DOUBT = "in_doubt"  # sent, then a stop/fault/power loss: may or may not be printed
    VOIDED = "voided"  # never usable again (in doubt and not proven, or a voided label)
    RETURNED = "returned"  # a job ended with the code unused: back in the pool, allocatable again
    # Printed on a product that left the line with no verdict carried out at the gate: it passed
    # unjudged (reject-only gate, agent down) or its reject was not confirmed by the gate sensor. Still
    # OPEN-SCS Encoded, neither commissioned nor decommissioned: never reported void, since the product
    # may be in the market; shown to the operator (`lineagent codes stats`, status).
    ESCAPED = "escaped"


# Legal transitions. ALLOCATED -> PRINTED is for codes printed on demand by a label printer that
# confirms synchronously (no FIFO, so no SENT step). SENT -> RETURNED is for a record the coder proved
# flushed (gone from its queue, never printed): it goes back to the pool, and the move is audited.
# PRINTED -> ESCAPED is for a printed product that left the line without its verdict carried out at the
# gate (migration 7).
# The same pairs are enforced by a trigger in the ledger file (schema migrations 6 and 7); a test checks
# that the two agree, so changing this table needs a new migration too.
TRANSITIONS: dict[CodeState, frozenset[CodeState]] = {
    CodeState.AVAILABLE: frozenset({CodeState.ALLOCATED, CodeState.VOIDED}),
    CodeState.ALLOCATED: frozenset(
        {CodeState.SENT, CodeState.RETURNED, CodeState.VOIDED, CodeState.PRINTED}
    ),
    CodeState.SENT: frozenset({CodeState.PRINTED, CodeState.IN_DOUBT, CodeState.RETURNED}),
    CodeState.PRINTED: frozenset({CodeState.VERIFIED, CodeState.REJECTED, CodeState.ESCAPED}),
    CodeState.IN_DOUBT: frozenset({CodeState.PRINTED, CodeState.VOIDED}),
    CodeState.VERIFIED: frozenset({CodeState.REJECTED}),  # decommissioned after the fact
    CodeState.REJECTED: frozenset(),
    CodeState.VOIDED: frozenset(),
    CodeState.RETURNED: frozenset({CodeState.ALLOCATED, CodeState.VOIDED}),
    CodeState.ESCAPED: frozenset(),
}

# States from which allocation may take a code.
ALLOCATABLE: frozenset[CodeState] = frozenset({CodeState.AVAILABLE, CodeState.RETURNED})
TERMINAL: frozenset[CodeState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def legal_pairs() -> frozenset[tuple[CodeState, CodeState]]:
    """Every (source, target) the table allows, for the schema's trigger and the tests that compare."""
    return frozenset((s, t) for s, nxt in TRANSITIONS.items() for t in nxt)


class UnknownCode(LookupError):
    """A code that is in no package held by this ledger."""

    def __init__(self, code: str) -> None:
        super().__init__(f"code {code!r} is not in any package held by this ledger")
        self.code = code


class IllegalTransition(ValueError):
    """A state change the rules forbid; names the code, where it is and where it was asked to go."""

    def __init__(self, code: str, current: CodeState, target: CodeState) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (terminal state)"
        super().__init__(
            f"code {code!r}: illegal transition {current} -> {target} (allowed from {current}: {allowed})"
        )
        self.code = code
        self.current = current
        self.target = target


def check_transition(code: str, current: CodeState, target: CodeState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(code, current, target)
