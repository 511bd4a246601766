"""The CLI's side of the control socket (blocking: the CLI has no event loop)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from agent.control.protocol import MAX_LINE, ErrorCode


class DaemonNotRunning(Exception):
    """Nobody answers on the socket: the CLI works on the ledger directly."""


class DaemonRefused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def call(path: Path, cmd: str, args: dict[str, Any] | None = None, *, timeout_s: float = 120.0) -> dict[str, Any]:
    """Send one request and wait for its reply. `timeout_s` is long: `job finish` drains the line."""
    if not path.exists():
        raise DaemonNotRunning(f"no control socket at {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise DaemonNotRunning(f"nobody listens on {path}: {exc.strerror}") from None
        sock.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 16 * MAX_LINE:
                raise DaemonRefused(ErrorCode.USAGE, "the daemon's reply is too long")
    finally:
        sock.close()
    if not data:
        raise DaemonRefused(ErrorCode.REFUSED, "the daemon closed the connection without a reply")
    reply = json.loads(data)
    if not reply.get("ok"):
        raise DaemonRefused(ErrorCode(reply.get("code", "refused")), str(reply.get("error")))
    result: dict[str, Any] = reply.get("result", {})
    return result
