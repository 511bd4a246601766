"""The control socket's wire format: one JSON object per line each way, request then reply.

Why JSON lines over a Unix socket: the CLI and the daemon are on the same PC; a stream socket gives
the kernel's peer credentials (who is asking, for the audit log) and file permissions (who may ask),
and one line per message is trivial to bound (MAX_LINE) so a client cannot make the daemon buffer
without end. Requests: {"cmd": "...", "args": {...}}. Replies: {"ok": true, "result": {...}} or
{"ok": false, "error": "what and why", "code": "refused|not_found|usage|busy"}.

The error texts are English on the wire whatever language an operator reads (logs, the audit and
scripts see one language). Each is built from a template below marked with N_; the CLI shows it in the
operator's language by matching the text against the templates (agent/cli/refusals.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.i18n import N_

MAX_LINE = 64 * 1024  # bytes per request; a longer one is refused and the connection closed
READ_TIMEOUT_S = 10.0  # a client that connects and says nothing is dropped after this
MAX_CLIENTS = 16


# The refusals a daemon answers (server.py, dispatch.py), as templates the CLI can translate.
NOT_JSON = N_("not a JSON request: {error}")
NOT_AN_OBJECT = 'a request is a JSON object {"cmd": ..., "args": {...}}'  # our CLI never sends one; not a template
UNKNOWN_COMMAND = N_("unknown command {cmd!r} (known: {known})")
ARGS_NOT_AN_OBJECT = N_("args must be a JSON object")
TOO_MANY_CLIENTS = N_("{count} clients are connected; try again")
TOO_LONG = N_("request longer than {limit} bytes")
INTERNAL = N_("internal error: {error}")
NO_JOB_ARG = N_("args.job: the job's name or id")
ALREADY_RUNNING = N_("cannot start {job!r}: already running; stop, pause or finish it first")
OTHER_RUNNING = N_("cannot start {job!r}: job {other!r} is running on this line; stop, pause or finish it first")
ALREADY_ENDING = N_("job {job!r} is already ending ({end})")
# Packs and the gate (agent/control/pack_commands.py, agent/aggregation/commands.py, agent/line/packing.py).
PACK_TARGET = N_("name the pack by its level (--level) or by a code, not both and not neither")
NEEDS_REASON = N_("a partial close needs a reason the auditor can read (--reason)")
UNKNOWN_LEVEL = N_("{level!r} is not a pack level being built on this line (known: {known})")
NOT_ON_LINE = N_("no job is running on the line, so no pack is being built; name the pack by a code or #N")
NO_DAEMON_LEVEL = N_("--level names the pack being built on a running line, and no daemon answers; "
                     "name the pack by a code or #N")
NO_SUCH_PACK = N_("{code!r} is neither a pack nor in a pack being built")
NOTHING_BUILT = N_("no {level} is being built on the line")
NO_PARKED = N_("no parked {level} of job {job!r}")
SHORT_NEEDS_PARTIAL = N_("{pack} holds {children} of {expected}; closing it short needs --partial and a reason")
LABEL_ON_LINE = N_("{pack} gets a printed label when it closes: close it on the running line while its job runs")
PACKING_ENDED = N_("packing of job {job!r} has ended; try again on the ledger")
PIN_UNSET = N_("{action} needs the operator PIN, and security.operator_pin_hash is not set in the config")
PIN_WRONG = N_("{action}: wrong operator PIN")
PIN_LOCKED = N_("{action}: {n} wrong PINs; PIN actions are locked until {at}")
GATE_LINE_BUSY = N_("the gate test runs the belt, so not while job {job!r} runs; pause or stop it first")
UNKNOWN_PLC = N_("no PLC {plc!r} behind a verify station of this line (known: {known})")
GATE_BUSY = N_("a gate test is already running")
GATE_ITEMS_ON_BELT = N_("{count} printed items of job {job!r} wait for their verdict on the belt, and the gate test "
                        "would carry them off unjudged: start or finish the job first")
PACK_REFUSALS = (PACK_TARGET, NEEDS_REASON, UNKNOWN_LEVEL, NOT_ON_LINE, NO_DAEMON_LEVEL, NO_SUCH_PACK,
                 NOTHING_BUILT, NO_PARKED, SHORT_NEEDS_PARTIAL, LABEL_ON_LINE, PACKING_ENDED, PIN_UNSET, PIN_WRONG,
                 PIN_LOCKED, GATE_LINE_BUSY, UNKNOWN_PLC, GATE_BUSY, GATE_ITEMS_ON_BELT)
REFUSALS = (NOT_JSON, UNKNOWN_COMMAND, ARGS_NOT_AN_OBJECT, TOO_MANY_CLIENTS, TOO_LONG, INTERNAL, NO_JOB_ARG,
            ALREADY_RUNNING, OTHER_RUNNING, ALREADY_ENDING, *PACK_REFUSALS)


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
    # args: {"level": "box"} or {"code": CODE or "#N"}; close also "partial": bool, "reason": str, "pin": str
    PACK_CLOSE = "pack.close"
    PACK_PARK = "pack.park"
    PACK_RESUME = "pack.resume"
    GATE_TEST = "gate.test"  # args: {"plc": NAME} (optional with one PLC behind a verify station)


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
        raise ControlError(ErrorCode.USAGE, NOT_JSON.format(error=exc)) from None
    if not isinstance(obj, dict):
        raise ControlError(ErrorCode.USAGE, NOT_AN_OBJECT)
    cmd, args = obj.get("cmd"), obj.get("args", {})
    try:
        command = Command(str(cmd))
    except ValueError:
        known = ", ".join(c.value for c in Command)
        raise ControlError(ErrorCode.USAGE, UNKNOWN_COMMAND.format(cmd=cmd, known=known)) from None
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ControlError(ErrorCode.USAGE, ARGS_NOT_AN_OBJECT)
    return Request(command, args)


def reply_ok(result: dict[str, Any]) -> bytes:
    return json.dumps({"ok": True, "result": result}, default=str, ensure_ascii=False).encode() + b"\n"


def reply_error(code: ErrorCode, message: str) -> bytes:
    return json.dumps({"ok": False, "error": message, "code": code.value}, ensure_ascii=False).encode() + b"\n"
