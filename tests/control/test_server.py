"""The control socket on its own, through a real Unix socket: permissions, who asked, and clients that
misbehave (garbage, endless lines, silence, too many) never stalling another client."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from agent.control import client
from agent.control.protocol import MAX_CLIENTS, MAX_LINE, Command, Request
from agent.control.server import ControlServer, SocketInUse


class Recorder:
    """A handler that answers with who asked and what: the server's part is what is under test."""

    def __init__(self) -> None:
        self.seen: list[tuple[Command, dict[str, Any], str]] = []

    async def control(self, request: Request, user: str) -> dict[str, Any]:
        self.seen.append((request.cmd, request.args, user))
        return {"cmd": str(request.cmd), "user": user}


async def _send(path: Path, data: bytes) -> bytes:
    r, w = await asyncio.open_unix_connection(str(path))
    w.write(data)
    await w.drain()
    out = await asyncio.wait_for(r.readline(), 10)
    w.close()
    return out


def test_mode_owner_and_peer_credentials(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    async def main() -> None:
        handler = Recorder()
        server = ControlServer(path, handler, mode=0o660)
        await server.start()
        try:
            assert stat.S_IMODE(path.stat().st_mode) == 0o660
            assert stat.S_ISSOCK(path.stat().st_mode)
            reply = json.loads(await _send(path, b'{"cmd": "status"}\n'))
            me = pwd.getpwuid(os.getuid()).pw_name
            assert reply == {"ok": True, "result": {"cmd": "status", "user": me}}
            assert handler.seen == [(Command.STATUS, {}, me)]
        finally:
            await server.close()
        assert not path.exists()

    asyncio.run(main())


def test_garbage_and_unknown_commands_get_a_usage_reply_and_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    async def main() -> None:
        handler = Recorder()
        server = ControlServer(path, handler)
        await server.start()
        try:
            for data, words in ((b"\x00\xff garbage\n", "not a JSON request"),
                                (b"[1, 2]\n", "a request is a JSON object"),
                                (b'{"cmd": "rm -rf"}\n', "unknown command 'rm -rf'"),
                                (b'{"cmd": "job.stop", "args": "WO-1"}\n', "args must be a JSON object")):
                reply = json.loads(await _send(path, data))
                assert reply["ok"] is False and reply["code"] == "usage" and words in reply["error"], reply
            assert handler.seen == []
            reply = json.loads(await _send(path, b'{"cmd": "status"}\n'))  # still serving
            assert reply["ok"] is True
        finally:
            await server.close()

    asyncio.run(main())


def test_an_endless_line_is_refused_and_a_silent_client_stalls_nobody(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    async def main() -> None:
        server = ControlServer(path, Recorder())
        await server.start()
        try:
            silent = [await asyncio.open_unix_connection(str(path)) for _ in range(3)]  # connect, say nothing
            r, w = await asyncio.open_unix_connection(str(path))
            w.write(b"x" * (MAX_LINE + 10))
            await w.drain()
            reply = json.loads(await asyncio.wait_for(r.readline(), 10))
            assert reply["code"] == "usage" and "longer than" in reply["error"]
            assert await asyncio.wait_for(r.read(), 10) == b""  # and the connection is closed
            reply = json.loads(await _send(path, b'{"cmd": "status"}\n'))
            assert reply["ok"] is True
            for _r, sw in silent:
                sw.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_too_many_clients_are_told_to_come_back(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    async def main() -> None:
        server = ControlServer(path, Recorder())
        await server.start()
        try:
            held = [await asyncio.open_unix_connection(str(path)) for _ in range(MAX_CLIENTS)]
            for _ in range(100):  # the server registers them as it accepts them
                if len(server._clients) == MAX_CLIENTS:
                    break
                await asyncio.sleep(0.01)
            reply = json.loads(await _send(path, b'{"cmd": "status"}\n'))
            assert reply["code"] == "busy"
            for _r, w in held:
                w.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_a_second_daemon_is_refused_and_a_stale_socket_replaced(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    async def main() -> None:
        first = ControlServer(path, Recorder())
        await first.start()
        try:
            with pytest.raises(SocketInUse):
                await ControlServer(path, Recorder()).start()
        finally:
            await first.close()
        path.write_text("left by a daemon that died")  # not a socket anybody answers on
        again = ControlServer(path, Recorder())
        await again.start()
        await again.close()

    asyncio.run(main())


def test_the_client_tells_no_daemon_from_a_refusal(tmp_path: Path) -> None:
    with pytest.raises(client.DaemonNotRunning):
        client.call(tmp_path / "none.sock", "status")
    path = tmp_path / "c.sock"

    async def main() -> dict[str, Any]:
        server = ControlServer(path, Recorder())
        await server.start()
        try:
            return await asyncio.to_thread(client.call, path, "status")
        finally:
            await server.close()

    assert asyncio.run(main())["cmd"] == "status"
