"""The control socket's wire format: one JSON object per line each way, request then reply.

Why JSON lines over a Unix socket: the CLI and the daemon are on the same PC; a stream socket gives
the kernel's peer credentials (who is asking, for the audit log) and file permissions (who may ask),
and one line per message is trivial to bound (MAX_LINE) so a client cannot make the daemon buffer
without end. Requests: {"cmd": "...", "args": {...}}. Replies: {"ok": true, "result": {...}} or
{"ok": false, "error": "what and why", "code": "refused|not_found|usage|busy"}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_LINE = 64 * 1024  # bytes per request; a longer one is refused and the connection closed
READ_TIMEOUT_S = 10.0  # a client that connects and says nothing is dropped after this
MAX_CLIENTS = 16


class ErrorCode(StrEnum):
    REFUSED = "refused"  # a valid request the line cannot do now (the reason says why)
    NOT_FOUND = "not_found"
    USAGE = "usage"  # not a request this daemon understands
    BUSY = "busy"  # too many clients


class Command(StrEnum):
    STATUS = "status"
    JOB_START = "job.start"
    JOB_STOP = "job.stop"
    JOB_PAUSE = "job.pause"
    JOB_FINISH = "job.finish"
    ALARM_ACK = "alarm.ack"


class ControlError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Request:
    cmd: Command
    args: dict[str, Any] = field(default_factory=dict)


def parse_request(line: bytes) -> Request:
    """A request line, or ControlError(USAGE) saying what is wrong with it."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(ErrorCode.USAGE, f"not a JSON request: {exc}") from None
    if not isinstance(obj, dict):
        raise ControlError(ErrorCode.USAGE, "a request is a JSON object {\"cmd\": ..., \"args\": {...}}")
    cmd, args = obj.get("cmd"), obj.get("args", {})
    try:
        command = Command(str(cmd))
    except ValueError:
        known = ", ".join(c.value for c in Command)
        raise ControlError(ErrorCode.USAGE, f"unknown command {cmd!r} (known: {known})") from None
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ControlError(ErrorCode.USAGE, "args must be a JSON object")
    return Request(command, args)


def reply_ok(result: dict[str, Any]) -> bytes:
    return json.dumps({"ok": True, "result": result}, default=str, ensure_ascii=False).encode() + b"\n"


def reply_error(code: ErrorCode, message: str) -> bytes:
    return json.dumps({"ok": False, "error": message, "code": code.value}, ensure_ascii=False).encode() + b"\n"
