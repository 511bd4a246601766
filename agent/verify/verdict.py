"""Verdicts: what one observation of one item means, decided without I/O.

Why pure: the rules that keep a wrong or doubled code off the market must be testable exhaustively
and identically for every source. A fixed reader gives strings, a camera gives decoded symbols plus a
grade; both become an `Observation`, and `judge` never knows which it was.

The order of the checks is the order of severity, so an item that is wrong in two ways gets the worse
reason: nothing printed, nothing read, then a code that is not ours (foreign), ours but already used
(duplicate), ours but not the one printed here (mismatch), and only for the right code the grade.

A job printing GS1 element strings (`gs1=True`) adds two checks (agent.codes.gs1_rules): data that is
not a valid GS1 element string is `bad_gs1_data` before it is looked up (its code cannot be told
reliably: a missing separator runs the lot into the serial), and the right code in a symbol without
FNC1 in first position is `not_gs1_symbol`, after the code checks (a duplicate stays a duplicate) and
before the grade: a plain DataMatrix carrying GS1 data is unusable downstream however well printed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from agent.codes import gs1_rules
from agent.config.verify import Grade
from agent.ledger import CodeState


class Verdict(StrEnum):
    GOOD = "good"
    NO_READ = "no_read"  # something was printed (or may have been) but nothing could be read
    MISMATCH = "mismatch"  # a code of this line, but not the one printed at this position
    DUPLICATE = "duplicate"  # a code already judged on another item
    FOREIGN = "foreign"  # a code in no package of this line
    LOW_GRADE = "low_grade"  # the right code, printed below the minimum grade
    MISSING_PRINT = "missing_print"  # nothing printed: the coder reported no print, or no ink was seen
    # In flight across a restart of the agent, and no binding to a code is proven (not in the ledger,
    # not provable from the PLC's and the coder's counters): rejected without looking at it, never
    # judged against another item's code.
    UNBOUND = "unbound_after_restart"
    # In flight across a restart with its code known, but its read window passed while the agent was
    # down: nobody saw it, so it cannot be released.
    MISSED = "missed_after_restart"
    # A GS1 job: the right code, but not in a GS1 symbol (a plain DataMatrix ]d1 or QR ]Q1 carrying GS1
    # data: the coder's FNC1 setting or its barcode mode is wrong).
    NOT_GS1 = "not_gs1_symbol"
    # A GS1 job: the data read is no valid GS1 element string (an unknown AI, a wrong length or check
    # digit, an impossible date, a missing separator, an AI without the key it needs).
    BAD_GS1 = "bad_gs1_data"

    @property
    def rejects(self) -> bool:
        return self is not Verdict.GOOD

    @property
    def restart(self) -> bool:
        """A reject caused by the agent's own restart, not by the coder, camera or codes: it does not
        count towards "N rejects in a row" (that alarm is for a broken line, not a restarted agent)."""
        return self in (Verdict.UNBOUND, Verdict.MISSED)


# A code in one of these states was already judged on some item; seeing it again means two items
# carry it.
JUDGED = frozenset({CodeState.VERIFIED, CodeState.REJECTED})
# States a code may be verified from: sent to a coder (a read proves the print), or printed. A code
# voided, returned or never sent cannot be on a genuine product of this run, even if it is the text
# the binding expected here.
VERIFIABLE = frozenset({CodeState.SENT, CodeState.IN_DOUBT, CodeState.PRINTED})


@dataclass(frozen=True, slots=True)
class Observation:
    """What a camera or reader reported for the item at conveyor seq `seq`."""

    seq: int
    texts: tuple[str, ...] = ()
    grade: Grade | None = None  # None: the source does not grade (a fixed reader's string)
    blank: bool = False  # the source saw no ink at all in the print region
    at: float = 0.0  # time.monotonic() when the image or string arrived
    # The AIM symbology identifier of each text ("]d2"), where the source says (a camera does; a fixed
    # reader's string does not unless the reader sends one): the GS1 symbol check needs it.
    symbologies: tuple[str | None, ...] = ()

    @property
    def no_read(self) -> bool:
        return not self.texts

    def symbology_of(self, text: str) -> str | None:
        i = self.texts.index(text)
        return self.symbologies[i] if i < len(self.symbologies) else None


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    read: str | None  # the text that decided it (None: nothing read)
    reason: str  # one line an operator can act on


# text -> the ledger state of the code it carries, or None if it is in no package of this line
StateOf = Callable[[str], CodeState | None]


def judge(expected: str | None, obs: Observation | None, state_of: StateOf, *, minimum: Grade,
          gs1: bool = False) -> Judgement:
    """The verdict for one item; `expected` is the text the coder printed at this position (None: none).
    `gs1`: the job prints GS1 element strings, so the read must be one, in a GS1 symbol."""
    if obs is None or obs.no_read:
        if expected is None:
            return Judgement(Verdict.MISSING_PRINT, None, "the coder reported no print for this item")
        if obs is not None and obs.blank:
            return Judgement(Verdict.MISSING_PRINT, None, f"no ink in the print region; expected {expected!r}")
        why = "no read arrived before the read window closed" if obs is None else "nothing decoded"
        return Judgement(Verdict.NO_READ, None, f"{why}; expected {expected!r}")
    text = expected if expected is not None and expected in obs.texts else obs.texts[0]
    if gs1 and (problem := gs1_rules.element_string_problem(text)):
        return Judgement(Verdict.BAD_GS1, text, f"read {text!r}, not valid GS1 data: {problem}")
    state = state_of(text)
    if state is None:
        return Judgement(Verdict.FOREIGN, text, f"read {text!r}, which is in no code package of this line")
    if state in JUDGED:
        return Judgement(Verdict.DUPLICATE, text, f"read {text!r}, already {state} on another item")
    if text != expected:
        want = "nothing" if expected is None else repr(expected)
        return Judgement(Verdict.MISMATCH, text, f"read {text!r} where {want} was printed")
    if state not in VERIFIABLE:
        return Judgement(Verdict.MISMATCH, text, f"read {text!r} as printed, but the ledger holds it {state}: "
                                                 "it cannot be on a product of this run")
    if gs1 and (problem := gs1_rules.symbol_problem(obs.symbology_of(text))):
        return Judgement(Verdict.NOT_GS1, text, f"read {text!r} as printed, but {problem}")
    if obs.grade is not None and obs.grade.points < minimum.points:
        return Judgement(Verdict.LOW_GRADE, text, f"grade {obs.grade} is below the minimum {minimum}")
    return Judgement(Verdict.GOOD, text, "read back as printed" + (f", grade {obs.grade}" if obs.grade else ""))
