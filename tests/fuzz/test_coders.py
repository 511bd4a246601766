"""Every coder driver against a hostile device: results or PrinterErrors, never another exception or a hang.

The device sits between the driver and the real simulator (tests/fuzz/hostile.py) and, for each
answer, follows a hypothesis-drawn script: pass it, corrupt it, replace it with noise, re-frame it with
a hostile field, cut the link mid-frame, flood without a terminator, or never answer again. The driver
runs connect and a drawn sequence of the Printer operations over a pty or TCP; over TCP the device then
turns honest and cuts the link, and the driver must answer a status again (after connect() succeeds, if
the first one failed, as the line retries it): no state it cannot leave.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.printers.base import PrinterError, Record
from tests.fuzz.coders import TARGETS, Target
from tests.fuzz.harness import Bounded, run
from tests.fuzz.hostile import Action, HostileDevice, Script
from tests.fuzz.strategies import budget, scripts

ROOT = Path(__file__).resolve().parents[2]
RECOVER_TRIES = 60  # a reconnect backs off up to reconnect_max_s between tries
OPS = ["status", "push", "push2", "identity", "start", "stop", "settle", "clear_fifo", "select_job", "clear_fault",
       "print"]


async def exercise(target: Target, link: str, actions: list[Action], ops: list[str]) -> Bounded:
    sim = target.make_sim()
    port = await sim.serve_tcp(0)
    script = Script(actions, target.reframer())
    device = HostileDevice(port, script)
    url = await device.serve_tcp() if link == "tcp" else await device.serve_pty()
    driver = target.make_driver(url)
    b = Bounded((PrinterError,), f"{target.name} over {link}")
    b.watch_loop()
    seq = 0
    try:
        await b.op("connect", driver.connect)
        connected = b.last_error is None
        for name in ops:
            if name in ("push", "push2"):
                n = 1 if name == "push" else 2
                records = [Record(seq + i, f"CODE{seq + i:06d}") for i in range(1, n + 1)]
                seq += n
                await b.op(name, lambda records=records: driver.push(records))  # type: ignore[misc]
            elif name == "print":
                sim.trigger(1)  # a product passes: counters move, print-complete messages go out
            elif name == "select_job":
                await b.op(name, lambda: driver.select_job("JOB1"))
            else:
                await b.op(name, getattr(driver, name))
        if link == "tcp":  # the device turns honest and cuts the link: the driver must come back on its own
            device.script.used = len(actions)
            device.cut()
            for _ in range(RECOVER_TRIES):
                if not connected:  # as agent/line/printing.py does: connect again until it succeeds
                    await b.op("reconnect", driver.connect)
                    connected = b.last_error is None
                if connected and await b.op("recover", driver.status) is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"{target.name}: no status after the device turned honest: {b.last_error!r}")
    finally:
        await b.quiet("close", driver.close)
        await device.close()
        await sim.close()
    b.check_loop()
    return b


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@budget(4)
@given(link=st.sampled_from(["tcp", "pty"]), actions=scripts(),
       ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=4))
def test_hostile_answers_end_in_a_result_or_a_printer_error(target: Target, link: str, actions: list[Action],
                                                             ops: list[str]) -> None:
    run(exercise(target, link, actions, ops))


def test_every_protocol_file_is_fuzzed() -> None:
    shipped = {p.stem for p in (ROOT / "config" / "printers").glob("*.yaml")}
    assert shipped == {"example_stx", "hitachi_rx", "leibinger", "markem_ngpcl", "videojet_wsi"}
    assert {t.protocol for t in TARGETS if t.name.startswith("generic+")} == shipped
