"""The ledger: one SQLite file that is the single truth about every code, item, pack and event."""

from agent.ledger.states import CodeState, IllegalTransition, UnknownCode
from agent.ledger.store import Ledger, LedgerError, Receipt

__all__ = ["CodeState", "IllegalTransition", "Ledger", "LedgerError", "Receipt", "UnknownCode"]
