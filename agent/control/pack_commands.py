"""The daemon's pack and gate commands (`pack close --partial`, `pack park`, `pack resume`, the gate test).

Why a pack on the line is moved by the packing task and not here: the level's task fills the build
between two verdicts; an order queued to it (agent/line/packing.py `PackLine.order`) runs between
two fills, so "park the box being built" parks exactly the box the next bottle would have gone into.
Packs not on the line (another job's parked box, a pallet built by hand) are moved on the ledger
here, as the CLI does with no daemon (agent/aggregation/commands.py). Every command, done or refused,
is audited with the user from the socket's peer credentials; the PIN is checked here, never logged.

The gate test (a technician's check that the reject gate and its confirm sensor work): it fires the
gate for the next pitch and runs the belt until that pitch has passed the gate, then stops it. It runs
only with no job on the line: the verify station counts the gate's confirms against its own rejects.
The PLC is polled while the belt runs (Modbus has no events); it is a one-off of a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from agent.aggregation import commands
from agent.aggregation.commands import PackRefused
from agent.aggregation.model import AggregationError
from agent.config.model import LineConfig
from agent.control.protocol import (
    GATE_BUSY,
    GATE_ITEMS_ON_BELT,
    GATE_LINE_BUSY,
    NEEDS_REASON,
    NOT_ON_LINE,
    PACK_TARGET,
    UNKNOWN_LEVEL,
    UNKNOWN_PLC,
    Command,
    ControlError,
    ErrorCode,
    Request,
)
from agent.jobs import Job
from agent.ledger import Ledger, LedgerError
from drivers.plc import GateMode, LinePlc, PlcError, Signal, unwrap

if TYPE_CHECKING:  # the CLI imports gate_test from here without the line's packing code
    from agent.line.packing import PackLine

log = logging.getLogger(__name__)

COMMANDS = frozenset({Command.PACK_CLOSE, Command.PACK_PARK, Command.PACK_RESUME, Command.GATE_TEST})
GATE_TIMEOUT_S = 60.0
GATE_POLL_S = 0.1
_gate_running: set[str] = set()  # PLCs under a gate test now (the loop is the only user: no lock needed)


class Line(Protocol):
    """What the commands need of the runtime (agent/line/runtime.py LineRuntime)."""

    cfg: LineConfig
    ledger: Ledger
    current: Job | None
    packline: PackLine | None

    def gates(self) -> dict[str, Gate]: ...


async def handle(line: Line, request: Request, user: str) -> dict[str, Any]:
    """One pack or gate request; audited done or refused, with the peer's user name."""
    args = request.args
    shown = {k: v for k, v in args.items() if k != "pin"}
    action = str(request.cmd)
    try:
        if request.cmd is Command.GATE_TEST:
            result = await _gate(line, args)
        else:
            result = await _pack(line, request.cmd, args)
    except PackRefused as exc:
        await asyncio.to_thread(line.ledger.audit, action, shown, exc.audit, user=user)
        raise ControlError(ErrorCode.NOT_FOUND if exc.not_found else ErrorCode.REFUSED, str(exc)) from None
    except (AggregationError, LedgerError, PlcError) as exc:
        await asyncio.to_thread(line.ledger.audit, action, shown, f"refused: {exc}", user=user)
        raise ControlError(ErrorCode.REFUSED, str(exc)) from None
    except ControlError as exc:
        await asyncio.to_thread(line.ledger.audit, action, shown, f"refused: {exc}", user=user)
        raise
    await asyncio.to_thread(line.ledger.audit, action, shown, "ok: " + json.dumps(result, default=str), user=user)
    return result


def _text(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ControlError(ErrorCode.USAGE, PACK_TARGET)
    return value.strip()


async def _pack(line: Line, cmd: Command, args: dict[str, Any]) -> dict[str, Any]:
    level, code = _text(args, "level"), _text(args, "code")
    if (level is None) == (code is None):
        raise ControlError(ErrorCode.USAGE, PACK_TARGET)
    partial = cmd is Command.PACK_CLOSE and args.get("partial") is True
    reason = args.get("reason") if partial else None
    if partial and (not isinstance(reason, str) or not reason.strip()):
        raise ControlError(ErrorCode.USAGE, NEEDS_REASON)
    kind = {Command.PACK_CLOSE: "close", Command.PACK_PARK: "park", Command.PACK_RESUME: "resume"}[cmd]
    packline = line.packline
    if level is not None:
        if packline is None or line.current is None:
            raise PackRefused(NOT_ON_LINE)
        if level not in packline.level_names:
            raise PackRefused(UNKNOWN_LEVEL, level=level, known=", ".join(packline.level_names) or "-")
    if partial:
        pin = args.get("pin")
        await asyncio.to_thread(commands.check_pin, line.cfg, line.ledger, pin if isinstance(pin, str) else None,
                                str(cmd))
    if level is not None:
        assert packline is not None
        return await packline.order(level, kind, reason=reason)
    assert code is not None
    target = await asyncio.to_thread(commands.resolve, line.ledger, line.cfg, code)
    build = target.build
    if build is not None and packline is not None and build.job == packline.job.id \
            and build.level in packline.level_names:
        return await packline.order(build.level, kind, build=build.id, reason=reason)
    if kind == "park":
        return await asyncio.to_thread(commands.park, target)
    if kind == "resume":
        return await asyncio.to_thread(commands.resume, target)
    return await commands.close(line.cfg, target, partial_reason=reason)


@dataclass(frozen=True)
class Gate:
    """A reject gate: the PLC that fires it and how far downstream of the print head it is."""

    plc: LinePlc
    gate_at: int  # pitches from the print head (verify.gate_at)
    margin: int  # pitches the confirm sensor may lag (verify.confirm_margin)


def on_the_belt(ledger: Ledger) -> tuple[str, int] | None:
    """(job, count) of printed items still waiting for their verdict (a job paused or stopped with
    items between print head and camera): moving the belt would carry them off unjudged."""
    with ledger.lock:
        row = ledger.conn.execute(
            "SELECT j.name, COUNT(*) FROM codes c JOIN jobs j ON j.id = c.job WHERE c.state = 'printed'"
            " AND c.level = j.level AND j.state != 'finished' GROUP BY j.id ORDER BY j.id LIMIT 1").fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


async def _gate(line: Line, args: dict[str, Any]) -> dict[str, Any]:
    if line.current is not None:
        raise PackRefused(GATE_LINE_BUSY, job=line.current.name)
    gates = line.gates()
    name = args.get("plc")
    if name is None and len(gates) == 1:
        name = next(iter(gates))
    if not isinstance(name, str) or name not in gates:
        raise PackRefused(UNKNOWN_PLC, plc=name, known=", ".join(sorted(gates)) or "-", not_found=True)
    waiting = await asyncio.to_thread(on_the_belt, line.ledger)
    if waiting is not None:
        raise PackRefused(GATE_ITEMS_ON_BELT, job=waiting[0], count=waiting[1])
    if name in _gate_running:
        raise PackRefused(GATE_BUSY)
    _gate_running.add(name)
    try:
        g = gates[name]
        # Its own connection: the runtime opens and closes its PLC link for the idle probes.
        return await gate_test(Gate(LinePlc(g.plc.settings, name=name), g.gate_at, g.margin))
    finally:
        _gate_running.discard(name)


async def gate_test(gate: Gate, *, timeout_s: float = GATE_TIMEOUT_S) -> dict[str, Any]:
    """Run the belt until what was on it has passed the gate (a reject pending for one of those lands
    meanwhile, and is not taken for the test's), fire the gate for the next pitch, run until that pitch
    is past the gate and the confirm sensor's margin, stop the belt. `confirmed`: the sensor counted an
    item leaving through the gate (a test item on that pitch; an empty pitch gives False).

    Under positive release (`gate: release`) every pitch that passes the head during the test is
    released but the test pitch, so only the test pitch can be removed; what was on the belt unreleased
    when the test began is removed in the first run, as the PLC's logic wants it."""
    plc = gate.plc
    await plc.open()
    try:
        start = await plc.read_many([Signal.COUNTER, Signal.REJECT_CONFIRM])
        head = start[Signal.COUNTER]
        run = _Run(plc, head, plc.gate is GateMode.RELEASE)
        await plc.heartbeat()
        await plc.run_line(True)
        pitch, confirmed = head, False
        try:
            async with asyncio.timeout(timeout_s):
                before = await run.until(head + gate.gate_at + gate.margin, None)
                pitch = run.skip = run.at + 1
                await plc.fire_reject(pitch)
                after = await run.until(pitch + gate.gate_at + gate.margin, before)
                confirmed = after != before
        except TimeoutError:
            pass
        finally:
            await plc.run_line(False)
        log.info("gate test on %s: pitch %d fired, belt ran %d pitches, confirmed %s", plc.name, pitch,
                 run.at - head, confirmed)
        return {"plc": plc.name, "pitch": pitch, "pitches_run": run.at - head, "confirmed": confirmed}
    finally:
        await plc.close()


class _Run:
    """The belt running for the gate test, watched by polls (with heartbeats, so the PLC's watchdog lets
    it run), releasing each new pitch but `skip` when the PLC's gate works by positive release."""

    def __init__(self, plc: LinePlc, head: int, release: bool) -> None:
        self.plc = plc
        self.head = head
        self.at = head
        self.released = head if release else None
        self.skip: int | None = None

    async def until(self, target: int, confirms: int | None) -> int:
        """Poll until the counter reaches `target` or, given `confirms`, the confirm count moves from it;
        returns the confirm count."""
        while True:
            await asyncio.sleep(GATE_POLL_S)
            await self.plc.heartbeat()
            now = await self.plc.read_many([Signal.COUNTER, Signal.REJECT_CONFIRM])
            self.at = unwrap(now[Signal.COUNTER], self.head)
            if self.released is not None:
                for seq in range(self.released + 1, self.at + 1):  # one write per pitch, in order
                    if seq != self.skip:
                        await self.plc.release(seq)
                self.released = max(self.released, self.at)
            if self.at >= target or (confirms is not None and now[Signal.REJECT_CONFIRM] != confirms):
                return now[Signal.REJECT_CONFIRM]
