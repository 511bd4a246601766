"""The ledger: one SQLite file that is the single truth about every code, item, pack and event."""

from agent.ledger.receipts import Group, GroupState, LedgerError, Receipt
from agent.ledger.states import CodeState, IllegalTransition, UnknownCode
from agent.ledger.store import Ledger

__all__ = ["CodeState", "Group", "GroupState", "IllegalTransition", "Ledger", "LedgerError", "Receipt",
           "UnknownCode"]
