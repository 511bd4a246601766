"""The downlink: signed messages from the cloud on `.../cmd`, checked before anything is applied.

Why every message is signed, expiring and sequenced: the broker is shared infrastructure, so a message
on our topic proves nothing. The Ed25519 signature (cloud key from `security.cloud_public_key`) proves
the cloud wrote it; `line` proves it was meant for this line; `expires_at` bounds how long a captured
message stays dangerous; a strictly increasing `seq` stops a replay of an old, validly signed one.
Anything failing a check is refused, recorded, reported on `.../cmd/result`, and never applied.

A message (JSON):
  {"id": str, "kind": "code_package_chunk" | "work_order" | "config" | "command", "seq": int,
   "line": "<site>/<line>", "expires_at": ISO 8601, "body": {...}, "signature": base64}
The signature covers the canonical JSON of every field but `signature` (agent.codes.package.canonical).
Large code packages come as chunks {package_id, index, total, data (base64)}; when all are in, the
assembled file (itself a signed package) goes to the importer.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.codes.package import PackageError, canonical, verify


class Kind(StrEnum):
    CODE_PACKAGE_CHUNK = "code_package_chunk"
    WORK_ORDER = "work_order"
    CONFIG = "config"
    COMMAND = "command"


class Status(StrEnum):
    APPLIED = "applied"
    PENDING = "pending"  # a chunk stored, the package not complete yet
    REFUSED = "refused"  # failed a check: never applied
    FAILED = "failed"  # passed the checks, the apply step raised


class Refusal(StrEnum):
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    FORGED = "forged"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    WRONG_LINE = "wrong_line"
    UNKNOWN_KIND = "unknown_kind"


class Refused(Exception):
    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# An apply step gets the checked body and returns a one-line outcome for the result message.
Apply = Callable[[Mapping[str, Any]], str]
ApplyPackage = Callable[[bytes], str]


@dataclass(frozen=True, slots=True)
class Checked:
    id: str
    kind: Kind
    seq: int
    body: Mapping[str, Any]


class Downlink:
    def __init__(
        self,
        conn: sqlite3.Connection,
        cloud_key: Ed25519PublicKey,
        site: str,
        line: str,
        *,
        apply_package: ApplyPackage,
        handlers: Mapping[Kind, Apply] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.key = cloud_key
        self.line = f"{site}/{line}"
        self.apply_package = apply_package
        self.handlers = dict(handlers or {})
        self.clock = clock

    def last_seq(self) -> int:
        row = self.conn.execute(
            "SELECT max(seq) FROM sync_commands WHERE status IN ('applied', 'pending', 'failed')"
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def check(self, payload: bytes) -> Checked:
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(Refusal.MALFORMED, f"not JSON: {exc}") from exc
        if not isinstance(msg, dict):
            raise Refused(Refusal.MALFORMED, "not a JSON object")
        signature = msg.pop("signature", None)
        if not isinstance(signature, str) or not signature:
            raise Refused(Refusal.UNSIGNED, "no signature: every downlink message must be signed by the cloud")
        try:
            verify(msg, signature, self.key)
        except PackageError as exc:
            raise Refused(Refusal.FORGED, str(exc)) from exc
        missing = [f for f in ("id", "kind", "seq", "line", "expires_at", "body") if f not in msg]
        if missing:
            raise Refused(Refusal.MALFORMED, f"missing fields {missing}")
        if msg["line"] != self.line:
            raise Refused(Refusal.WRONG_LINE, f"addressed to {msg['line']!r}, this is {self.line!r}")
        try:
            expires = datetime.fromisoformat(str(msg["expires_at"]).replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise Refused(Refusal.MALFORMED, f"expires_at {msg['expires_at']!r} is not ISO 8601") from exc
        if expires <= self.clock():
            raise Refused(Refusal.EXPIRED, f"expired at {msg['expires_at']}")
        seq = msg["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise Refused(Refusal.MALFORMED, "seq must be a positive integer")
        if seq <= (last := self.last_seq()):
            raise Refused(Refusal.REPLAYED, f"seq {seq} is not above the last accepted seq {last}")
        try:
            kind = Kind(msg["kind"])
        except ValueError as exc:
            known = [k.value for k in Kind]
            raise Refused(Refusal.UNKNOWN_KIND, f"kind {msg['kind']!r} is not one of {known}") from exc
        if not isinstance(msg["body"], dict):
            raise Refused(Refusal.MALFORMED, "body must be a JSON object")
        return Checked(str(msg["id"]), kind, seq, msg["body"])

    def handle(self, payload: bytes) -> dict[str, Any]:
        """Check, then apply; the result for `.../cmd/result`. Every outcome is recorded in the ledger."""
        try:
            checked = self.check(payload)
        except Refused as exc:
            msg_id = _peek(payload, "id")
            self._record(msg_id, None, _peek(payload, "kind"), Status.REFUSED, str(exc))
            return {"id": msg_id, "status": str(Status.REFUSED), "reason": str(exc.reason), "detail": exc.detail,
                    "at": self.clock()}
        try:
            status, outcome = self._apply(checked)
        except Exception as exc:  # noqa: BLE001 - any apply failure is reported to the cloud, not swallowed
            status, outcome = Status.FAILED, f"{type(exc).__name__}: {exc}"
        self._record(checked.id, checked.seq, checked.kind, status, outcome)
        return {"id": checked.id, "seq": checked.seq, "kind": str(checked.kind), "status": str(status),
                "detail": outcome, "at": self.clock()}

    def _apply(self, msg: Checked) -> tuple[Status, str]:
        if msg.kind is Kind.CODE_PACKAGE_CHUNK:
            return self._chunk(msg.body)
        handler = self.handlers.get(msg.kind)
        if handler is None:
            raise RuntimeError(f"this agent has no handler for {msg.kind}")
        return Status.APPLIED, handler(msg.body)

    def _chunk(self, body: Mapping[str, Any]) -> tuple[Status, str]:
        try:
            package_id, index, total = str(body["package_id"]), int(body["index"]), int(body["total"])
            data = base64.b64decode(str(body["data"]), validate=True)
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            raise ValueError(f"chunk body is malformed: {exc}") from exc
        if not 0 <= index < total:
            raise ValueError(f"chunk index {index} outside 0..{total - 1}")
        self.conn.execute(
            "INSERT OR REPLACE INTO sync_chunks(package_id, idx, total, data) VALUES (?, ?, ?, ?)",
            (package_id, index, total, data),
        )
        rows = self.conn.execute(
            "SELECT idx, data FROM sync_chunks WHERE package_id = ? AND total = ? ORDER BY idx", (package_id, total)
        ).fetchall()
        if len(rows) < total:
            return Status.PENDING, f"package {package_id}: {len(rows)} of {total} chunks"
        outcome = self.apply_package(b"".join(bytes(r[1]) for r in rows))
        self.conn.execute("DELETE FROM sync_chunks WHERE package_id = ?", (package_id,))
        return Status.APPLIED, outcome

    def _record(self, msg_id: str | None, seq: int | None, kind: str | None, status: Status, detail: str) -> None:
        self.conn.execute(
            "INSERT INTO sync_commands(at, msg_id, seq, kind, status, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (self.clock(), msg_id, seq, kind, str(status), detail[:2000]),
        )


def _peek(payload: bytes, key: str) -> str | None:
    try:
        value = json.loads(payload).get(key)
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return None if value is None else str(value)


def import_package_bytes(data: bytes, importer: Callable[[Path], str]) -> str:
    """Hand an assembled package to the importer through a private temp file (the importer reads paths)."""
    with tempfile.TemporaryDirectory(prefix="lineagent-pkg-") as tmp:
        path = Path(tmp) / "downlink.lapkg"
        path.write_bytes(data)
        return importer(path)


def sign_message(msg: Mapping[str, Any], sign: Callable[[bytes], bytes]) -> bytes:
    """Cloud side (tests, tools): the wire bytes of a signed message."""
    body = dict(msg)
    body["signature"] = base64.b64encode(sign(canonical(body))).decode()
    return json.dumps(body).encode()
