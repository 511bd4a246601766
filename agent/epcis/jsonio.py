"""JSON in and out of the EPCIS pipeline: orjson when installed (5-10x the stdlib), else json.

Why it matters: a backlog drain parses each outbox row, serialises each document, and the receiver
parses and re-serialises each event; with the stdlib that is most of the CPU per event.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the stdlib path is exercised where orjson is absent
    orjson = None  # type: ignore[assignment]


def loads(data: bytes | str) -> Any:
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)


def dumps(obj: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON bytes."""
    if orjson is not None:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys).encode()
