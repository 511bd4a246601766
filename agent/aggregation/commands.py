"""The operator's pack commands on the ledger: close, park and resume a pack, whether a pack with its
code (a pallet built by hand) or a pack being built on the line (a build, named by a child's code or #N).

Why here and not in the CLI: the same work runs in the CLI when no daemon answers, and in the daemon
for packs that are not on its line (another job's parked box). What is on the line goes through the
packing task instead (agent/line/packing.py), so a build being filled is never moved under it.
Refusals carry their template (agent/control/protocol.py): each side shows them in its operator's
language and audits them in English; a refusal changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from agent import pins
from agent.aggregation import rules
from agent.aggregation.builds import BuildInfo, Builds, find_build
from agent.aggregation.model import AggregationError, LevelPlan, PackInfo, PackRejected, Reason, Violation
from agent.aggregation.packs import Aggregator, pack_info
from agent.aggregation.parents import ParentCodes
from agent.aggregation.setup import aggregator_for
from agent.clock import Stamp
from agent.config.model import LineConfig
from agent.config.stations import StationKind
from agent.control.protocol import (
    LABEL_ON_LINE,
    NO_SUCH_PACK,
    PIN_LOCKED,
    PIN_UNSET,
    PIN_WRONG,
    SHORT_NEEDS_PARTIAL,
)
from agent.i18n import _
from agent.ledger import Ledger

T = TypeVar("T")


class PackRefused(AggregationError):
    """A refusal made from a template: `str()` is the English text, `shown()` the operator's language."""

    def __init__(self, template: str, *, not_found: bool = False, audit: str | None = None,
                 **values: object) -> None:
        super().__init__(template.format(**values))
        self.template = template
        self.values = values
        self.not_found = not_found
        self.audit = audit or f"refused: {self}"  # what the audit log records (never the PIN)

    def shown(self) -> str:
        return _(self.template).format(**self.values)


def pin_gate(cfg: LineConfig, ledger: Ledger, action: str) -> None:
    """PackRefused when no PIN action can be done now: no PIN configured (that switches them off), or
    too many wrong PINs lately (the lock-out, counted from the audit log, agent/pins.py)."""
    if not cfg.security.operator_pin_hash:
        raise PackRefused(PIN_UNSET, action=action, audit="refused: no operator PIN configured")
    with ledger.lock:
        failures = [Stamp(float(r[0]), r[1], r[2]) for r in ledger.conn.execute(
            "SELECT at, boot, boot_s FROM audit WHERE result = ? ORDER BY id DESC LIMIT ?",
            (pins.WRONG, pins.LOCKOUT_AFTER))]
    until = pins.locked_until(failures)
    if until is not None:
        raise PackRefused(PIN_LOCKED, action=action, n=pins.LOCKOUT_AFTER,
                          at=datetime.fromtimestamp(until).strftime("%H:%M:%S"),
                          audit="refused: locked out after wrong PINs")


def pin_verify(cfg: LineConfig, pin: str | None, action: str) -> None:
    """PackRefused unless `pin` is the operator PIN (a wrong one is audited as pins.WRONG: it counts)."""
    want = cfg.security.operator_pin_hash
    if want is None:
        raise PackRefused(PIN_UNSET, action=action, audit="refused: no operator PIN configured")
    if pin is None:
        raise PackRefused(PIN_WRONG, action=action, audit="refused: no operator PIN given")
    if not pins.verify_pin(want, pin):
        raise PackRefused(PIN_WRONG, action=action, audit=pins.WRONG)


def check_pin(cfg: LineConfig, ledger: Ledger, pin: str | None, action: str) -> None:
    pin_gate(cfg, ledger, action)
    pin_verify(cfg, pin, action)


@dataclass(frozen=True)
class Target:
    """What an operator's reference names: a build (a pack being built) or a pack with its code."""

    agg: Aggregator
    build: BuildInfo | None = None
    pack: PackInfo | None = None


def resolve(ledger: Ledger, cfg: LineConfig, ref: str) -> Target:
    with ledger.lock:
        build = find_build(ledger.conn, ref)
        pack = None
        if build is None:
            try:
                pack = pack_info(ledger.conn, ref)
            except AggregationError:
                raise PackRefused(NO_SUCH_PACK, code=ref, not_found=True) from None
    if build is not None:
        return Target(aggregator_for(ledger, cfg, job=build.job), build=build)
    return Target(aggregator_for(ledger, cfg, code=ref), pack=pack)


def build_result(b: BuildInfo, **extra: Any) -> dict[str, Any]:
    return {"pack": b.name, "build": b.id, "level": b.level, "state": str(b.state), "children": b.children,
            "expected": b.expected, "job": b.job, **extra}


def pack_result(p: PackInfo) -> dict[str, Any]:
    return {"pack": p.code, "level": p.level, "state": str(p.state), "children": p.children,
            "expected": p.expected_count, "job": p.job, "partial_reason": p.partial_reason}


def park(t: Target) -> dict[str, Any]:
    if t.build is not None:
        return build_result(Builds(t.agg).park(t.build.id))
    assert t.pack is not None
    return pack_result(t.agg.park(t.pack.code))


def resume(t: Target) -> dict[str, Any]:
    if t.build is not None:
        resumed, parked = Builds(t.agg).resume(t.build.id)
        return build_result(resumed, parked=parked.name if parked else None)
    assert t.pack is not None
    return pack_result(t.agg.resume(t.pack.code))


def upper_plan(cfg: LineConfig, agg: Aggregator, level: str) -> LevelPlan | None:
    """The level a closed `level` pack goes into, when the line has a station building it."""
    built = {st.level for st in cfg.stations.values() if st.type is StationKind.AGGREGATE}
    return next((p for p in agg.plans.values() if p.child_level == level and p.level in built), None)


def dry_check(builds: Builds, b: BuildInfo, partial_reason: str | None) -> None:
    """Before a parent code is spent: PackRejected (nothing changed) when the pack would be refused."""
    plan = builds.agg.plan(b.level)
    if b.children < b.expected and partial_reason is None:
        raise PackRefused(SHORT_NEEDS_PARTIAL, pack=b.name, children=b.children, expected=b.expected)
    children = builds.children(b.id)
    with builds.ledger.lock:
        known = rules.facts(builds.ledger.conn, children)
        lot = builds.agg.lot_of(builds.ledger.conn, b.job)
    bad = rules.check_children(plan, children, known, job=b.job, lot=lot,
                               child_packs=plan.child_level in builds.agg.plans)
    bad += rules.check_count(plan, len(children), closing=True, partial=partial_reason is not None)
    if not children:
        bad.append(Violation(Reason.NO_CHILDREN, None, f"{b.name} holds nothing"))
    if bad:
        raise PackRejected(None, b.level, bad)


async def close(cfg: LineConfig, t: Target, *, partial_reason: str | None,
                executor: Executor | None = None) -> dict[str, Any]:
    """Close a pack off the line. A build gets its parent code here only when its level has no label
    printer (an allocated or minted code, as the line itself does without one): a printed label
    belongs to the running line, which prints and reads it back. Ledger work runs in `executor`."""
    loop = asyncio.get_running_loop()

    def off(work: Callable[[], T]) -> asyncio.Future[T]:
        return loop.run_in_executor(executor, work)

    if t.pack is not None:
        code = t.pack.code
        return pack_result(await off(lambda: t.agg.close(code, partial_reason=partial_reason)))
    assert t.build is not None
    b = t.build
    builds = Builds(t.agg)
    printer = next((st.label_printer for st in cfg.stations.values()
                    if st.type is StationKind.AGGREGATE and st.level == b.level and st.label_printer), None)
    if printer is not None:
        raise PackRefused(LABEL_ON_LINE, pack=b.name)
    await off(lambda: dry_check(builds, b, partial_reason))
    plan = t.agg.plan(b.level)
    parent = await ParentCodes(t.agg.ledger, plan, b.job, sscc=cfg.code_sources.sscc, executor=executor).obtain()
    upper = upper_plan(cfg, t.agg, b.level)
    out = await off(lambda: builds.close(b.id, parent, partial_reason=partial_reason, upper=upper))
    if out.rejected is not None:
        raise out.rejected
    assert out.pack is not None
    return build_result(out.build, parent=out.pack.code, partial_reason=partial_reason)
