"""Commit groups and receipts: what a caller holds to know, honestly, whether its write is on disk.

Why a group object and not a number: a receipt used to say "durable once group N is committed", and
a rolled-back group N was followed by a committed group N+1, so a lost write read as durable. Now a
receipt points at the one `Group` its write belongs to, and that group ends exactly once, either
DURABLE (its COMMIT returned) or FAILED (rolled back, with the reason). A failed group never becomes
durable later, whatever happens to the groups after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum

from agent.ledger.states import CodeState


class LedgerError(RuntimeError):
    """A ledger operation that cannot be done as asked; the message says what and why."""


class GroupState(StrEnum):
    OPEN = "open"  # collecting writes in the open transaction; nothing of it is on disk
    DURABLE = "durable"  # its COMMIT returned (synchronous=FULL: the WAL is fsynced)
    FAILED = "failed"  # rolled back; every write of it is lost, `error` says why


class Group:
    """One SQLite transaction of the writer connection; ends once, DURABLE or FAILED."""

    __slots__ = ("_done", "cause", "error", "number", "state")

    def __init__(self, number: int) -> None:
        self.number = number
        self.state = GroupState.OPEN
        self.error: str | None = None
        self.cause: BaseException | None = None  # the SQLite error that lost it, when there was one
        self._done = threading.Event()

    def __repr__(self) -> str:
        return f"Group({self.number}, {self.state}{', ' + self.error if self.error else ''})"

    @property
    def durable(self) -> bool:
        return self.state is GroupState.DURABLE

    @property
    def failed(self) -> bool:
        return self.state is GroupState.FAILED

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the group ended (or `timeout` passed); True only if it is durable."""
        self._done.wait(timeout)
        return self.state is GroupState.DURABLE

    def _end(self, error: str | None, cause: BaseException | None = None) -> None:
        """Called once, by the ledger's writer, holding the writer lock."""
        if self.state is not GroupState.OPEN:
            raise LedgerError(f"group {self.number} already ended {self.state}")
        self.error = error
        self.cause = cause
        self.state = GroupState.FAILED if error is not None else GroupState.DURABLE
        self._done.set()


def durable_group(number: int = 0) -> Group:
    """A group that is already durable: for a receipt of nothing (an empty batch)."""
    g = Group(number)
    g._end(None)
    return g


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that a transition is applied in `commit`; on disk once `commit` is durable.

    `group` is the group's number (for logs); `count` is how many codes the journaled step moved
    (1 for `transition`, the batch size for `transition_many`, whose `code` is the first of them).
    """

    code: str
    state: CodeState
    event_seq: int
    group: int
    commit: Group = field(compare=False, repr=False)
    count: int = 1

    @property
    def durable(self) -> bool:
        return self.commit.durable

    @property
    def failed(self) -> bool:
        return self.commit.failed

    @property
    def error(self) -> str | None:
        """Why the write is lost (its group was rolled back), or None."""
        return self.commit.error

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the group to end; True if durable, False if it failed (see `error`) or timed out."""
        return self.commit.wait(timeout)
