"""EPCIS 2.0: event builders, the CBV 2.0 event hash, documents and schema validation.

Convention for producers: an uplink journal row (`ledger.append_event(..., uplink=True)`) carries the
event dict under payload key "epcis", with eventTime fixed at write time. eventID may be absent: the
sync uplink sets it from `event_hash` when it builds the document.
"""

from agent.epcis.document import CONTEXT, DocumentInvalid, document, problems, validate, with_event_id
from agent.epcis.events import (
    Action,
    BizStep,
    Disposition,
    EventError,
    LineContext,
    aggregation_event,
    commissioning_event,
    decommissioning_event,
    epc_for,
    object_event,
    retirement_events,
)
from agent.epcis.hashing import HashError, event_hash, prehash
from agent.epcis.identity import Identity, IdentityError

__all__ = [
    "CONTEXT", "Action", "BizStep", "Disposition", "DocumentInvalid", "EventError", "HashError", "Identity",
    "IdentityError", "LineContext", "aggregation_event", "commissioning_event", "decommissioning_event", "document",
    "epc_for", "event_hash", "object_event", "prehash", "problems", "retirement_events", "validate", "with_event_id",
]
