"""`lineagent top`: the live view of the line for an operator or a technician, over SSH on 80x24.

Why a plain polling loop in the CLI: `top` is a reader. It takes a snapshot (agent/cli/top_source.py:
the daemon's status record and read-only ledger queries) every --interval seconds, renders it
(agent/cli/top_view.py) on the alternate screen, and waits for a key with select() on the terminal in
cbreak mode, so `q` quits at once without Enter and Ctrl-C still raises. Whatever ends it (q, Ctrl-C,
SIGTERM, the SSH session hanging up), the terminal modes are restored and the main screen comes back.

Written to a pipe or a file instead of a terminal, the live view prints one whole frame per interval
(batch mode, like `top -b`).

Exit codes: live view 0 when the operator quits (q, Ctrl-C, SIGTERM, hang-up); --once 0 when the
daemon is alive, 3 when it is not (as `status`); 4 when there is no ledger at the path.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import sys
import termios
import time
import tty
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.live import Live

from agent.cli.common import ConfigOpt, DbOpt, Exit, config_optional, console, fail, ledger_path
from agent.cli.top_source import collect
from agent.cli.top_view import Rates, render
from agent.i18n import _

QUIT_KEYS = (b"q", b"Q")


def register(app: typer.Typer) -> None:
    @app.command("top")
    def top(config_path: ConfigOpt = None, db: DbOpt = None,
            once: Annotated[bool, typer.Option("--once", help="Print one frame and exit (for scripts)")] = False,
            interval: Annotated[float, typer.Option("--interval", "-n", min=0.2, max=60.0,
                                                    help="Seconds between refreshes")] = 1.0,
            as_json: Annotated[bool, typer.Option("--json", help="With --once: the snapshot as JSON")] = False,
            ) -> None:
        """Live view: items/min, read rate, rejects, FIFO levels, devices, packs, sync backlog, alarms."""
        path = ledger_path(config_optional(config_path), db)
        if not path.is_file():
            fail(_("no ledger at {path}").format(path=path), Exit.NOT_FOUND)  # already in the catalogues
        if once or as_json:
            snap = _collect(path)
            if as_json:
                typer.echo(json.dumps(snap, default=str, ensure_ascii=False, indent=2))
            else:
                height = console.size.height if console.is_terminal else 10_000
                console.print(render(snap, Rates(), console.size.width, height, ledger=path))
            raise typer.Exit(int(Exit.OK) if snap["daemon"]["alive"] else int(Exit.DEVICE))
        live_view(path, interval)


def _collect(path: Path) -> dict[str, Any]:
    try:
        return collect(path)
    except sqlite3.Error as exc:
        fail(f"cannot read the ledger {path}: {exc}", Exit.REFUSED)


class _Hangup(Exception):
    """SIGTERM or SIGHUP (the SSH session closed): leave like a quit, restoring the terminal."""


def _hangup(signum: int, frame: FrameType | None) -> None:
    raise _Hangup(signum)


def live_view(path: Path, interval: float) -> None:
    if not console.is_terminal:
        return _batch(path, interval)
    rates = Rates()
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None
    previous = {s: signal.signal(s, _hangup) for s in (signal.SIGTERM, signal.SIGHUP)}
    snap: dict[str, Any] | None = None
    try:
        if fd is not None:
            tty.setcbreak(fd)  # keys arrive one by one, unechoed; Ctrl-C still sends SIGINT
        with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as live:
            while True:
                try:
                    snap = collect(path)
                except sqlite3.Error:
                    if snap is None:
                        raise
                    # busy or being checkpointed: keep the last frame, try again next tick
                else:
                    rates.add(snap)
                size = console.size
                live.update(render(snap, rates, size.width, size.height, ledger=path, interval=interval),
                            refresh=True)
                if _quit_pressed(fd, interval):
                    break
    except (KeyboardInterrupt, _Hangup):
        pass
    finally:
        if fd is not None and saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for s, h in previous.items():
            signal.signal(s, h)


def _batch(path: Path, interval: float) -> None:
    """Output to a pipe or a file (`lineagent top | tee`): one whole frame per interval, no screen
    control codes, until Ctrl-C or a signal."""
    rates = Rates()
    previous = {s: signal.signal(s, _hangup) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            snap = _collect(path)
            rates.add(snap)
            console.print(render(snap, rates, console.size.width, 10_000, ledger=path, interval=interval))
            console.print()
            time.sleep(interval)  # a plain CLI loop, no event loop here
    except (KeyboardInterrupt, _Hangup, BrokenPipeError):
        pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _quit_pressed(fd: int | None, timeout: float) -> bool:
    """Wait up to `timeout` for a key; True when it is a quit key. Other keys redraw at once."""
    if fd is None:
        time.sleep(timeout)  # no terminal to read keys from: Ctrl-C or a signal ends it
        return False
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return False
    data = os.read(fd, 64)
    return not data or any(k in data for k in QUIT_KEYS)
