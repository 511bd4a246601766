"""The daemon's end of the control socket: who may ask (file mode and group), who asked (the kernel's
peer credentials, into the audit log), and a bound on what any client can cost the line.

Every client is its own task on the runtime's loop: a client that connects and hangs is dropped after
READ_TIMEOUT_S, one that sends more than MAX_LINE without a newline is refused and dropped, one that
sends garbage gets a USAGE reply; none of it touches the line. A command's own work (a job finish
drains the line) runs in the client's task, so other clients are served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import socket
import struct
from pathlib import Path
from typing import Any, Protocol

from agent.control.protocol import (
    MAX_CLIENTS,
    MAX_LINE,
    READ_TIMEOUT_S,
    ControlError,
    ErrorCode,
    Request,
    parse_request,
    reply_error,
    reply_ok,
)

log = logging.getLogger(__name__)


class Handler(Protocol):
    async def control(self, request: Request, user: str) -> dict[str, Any]: ...


class SocketInUse(Exception):
    """Another daemon answers on this socket: two agents must never drive one line."""


def peer_user(sock: socket.socket) -> tuple[int, int, str]:
    """(pid, uid, user name) of the process at the other end, from SO_PEERCRED (Linux)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid:{uid}"
    return pid, uid, name


class ControlServer:
    def __init__(self, path: Path, handler: Handler, *, mode: int = 0o660, group: str | None = None) -> None:
        self.path = path
        self.handler = handler
        self.mode = mode
        self.group = group
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.served = 0

    async def start(self) -> None:
        if len(os.fsencode(self.path)) >= 108:
            raise ValueError(f"control socket path {self.path} is longer than a Unix socket allows (107 bytes)")
        if self.path.exists() or self.path.is_symlink():
            if await self._answers():
                raise SocketInUse(f"another lineagent daemon answers on {self.path}")
            self.path.unlink()  # left by a daemon that died
        gid = -1
        if self.group:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                raise ValueError(f"control.group {self.group!r} does not exist on this PC") from None
        old = os.umask(0o177)  # never world-accessible, not even between bind and chmod
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chown(self.path, -1, gid)
        self.path.chmod(self.mode)

    async def _answers(self) -> bool:
        try:
            _r, w = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path)), 1.0)
        except (OSError, TimeoutError):
            return False
        w.close()
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= MAX_CLIENTS:
            writer.write(reply_error(ErrorCode.BUSY, f"{MAX_CLIENTS} clients are connected; try again"))
            await self._close(writer)
            return
        self._clients.add(task)
        try:
            _pid, _uid, user = peer_user(writer.get_extra_info("socket"))
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
                except TimeoutError:
                    break
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(reply_error(ErrorCode.USAGE, f"request longer than {MAX_LINE} bytes"))
                    break
                if not line.endswith(b"\n"):
                    break  # end of stream (possibly mid-line): nothing to answer
                writer.write(await self._answer(line, user))
                await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._clients.discard(task)
            await self._close(writer)

    async def _answer(self, line: bytes, user: str) -> bytes:
        try:
            request = parse_request(line)
            result = await self.handler.control(request, user)
        except ControlError as exc:
            return reply_error(exc.code, str(exc))
        except Exception as exc:  # a bug behind one request must not end the daemon; logged whole
            log.exception("control request failed: %r", line[:200])
            return reply_error(ErrorCode.REFUSED, f"internal error: {exc}")
        self.served += 1
        return reply_ok(result)

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)
