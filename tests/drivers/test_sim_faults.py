"""Simulator faults: the SPEC language, the seeded schedule, and what each fault does to the coder model."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from drivers.framing import Deframer, Frame
from drivers.printers.base import Fault
from drivers.sim.faults import FaultPlan, FaultSpecError, SimFault
from drivers.sim.leibinger import LeibingerSim


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def test_spec_parses_rates_schedule_seed_and_down_time() -> None:
    plan = FaultPlan.parse("nak:0.01, garbage:0.005,power_loss@500,stop@500,seed=7,down=0.25")
    assert plan.rates == {SimFault.NAK: 0.01, SimFault.GARBAGE: 0.005}
    assert plan.at == {500: [SimFault.POWER_LOSS, SimFault.STOP]}
    assert (plan.seed, plan.down_s) == (7, 0.25)
    assert FaultPlan.parse(None).rates == {} and FaultPlan.parse("").at == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nak:1.5", "probability must be between 0 and 1"),
        ("fire:0.1", "unknown fault 'fire'"),
        ("stop@0", "starts at 1"),
        ("stop@x", "invalid literal"),
        ("down=0", "down must be > 0"),
        ("nak", "expected KIND:P, KIND@N"),
    ],
)
def test_bad_specs_name_the_item_and_the_rule(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message) as info:
        FaultPlan.parse(f"seed=1,{spec}")
    assert repr(spec) in str(info.value)


def test_the_same_seed_gives_the_same_faults() -> None:
    def draws(seed: int) -> list[SimFault | None]:
        plan = FaultPlan.parse(f"nak:0.2,silence:0.2,garbage:0.2,seed={seed}")
        return [plan.draw_request() for _ in range(200)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
    assert {SimFault.NAK, SimFault.SILENCE, SimFault.GARBAGE, None} == set(draws(5))


def test_a_scheduled_stop_clears_the_fifo_and_later_products_pass_unprinted() -> None:
    sim = LeibingerSim(capacity=8, faults="stop@3")
    for i in range(1, 6):
        assert sim.store(f"R{i}", i)
    sim.start_printing()
    assert sim.trigger(5) == 3
    assert (sim.printed, list(sim.fifo), sim.running, sim.missed) == (["R1", "R2", "R3"], [], False, 2)


def test_ink_low_is_a_warning_printing_goes_on() -> None:
    sim = LeibingerSim(capacity=8, faults="ink_low@1")
    sim.store("A", 1)
    sim.store("B", 2)
    sim.start_printing()
    assert sim.trigger(2) == 2 and sim.faults == {Fault.INK_LOW}


def test_power_loss_keeps_the_counter_and_loses_the_fifo() -> None:
    async def main() -> None:
        sim = LeibingerSim(capacity=8, faults="power_loss@1,down=0.05")
        port = await sim.serve_tcp(0)
        for i in (1, 2, 3):
            sim.store(f"R{i}", i)
        sim.start_printing()
        sim.trigger(1)
        await asyncio.sleep(0)  # let the scheduled power cut begin
        assert not sim.powered
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):
            if sim.powered:
                break
            await asyncio.sleep(0.01)
        assert (sim.powered, sim.counter, list(sim.fifo), sim.last_tag) == (True, 1, [], 0)
        _, writer = await asyncio.open_connection("127.0.0.1", port)  # the same port answers again
        writer.close()
        await sim.close()

    run(main())


@pytest.mark.parametrize("seed", range(20))
def test_injected_garbage_never_forms_a_frame(seed: int) -> None:
    sim = LeibingerSim(faults=f"seed={seed}")
    items = Deframer(sim.frame_spec).feed(sim.garbage(64))
    assert not [i for i in items if isinstance(i, Frame)]


def test_request_faults_hit_the_next_requests_in_order() -> None:
    sim = LeibingerSim()
    sim.inject(SimFault.NAK)
    sim.inject(SimFault.SILENCE)
    record, query = Frame(b"=MR1\tA", b"^0=MR1\tA\r"), Frame(b"?SM", b"^0?SM\r")
    assert not sim.dispatch(record)  # a Leibinger coder answers no record: the refusal shows in ?RS
    assert (sim.error, len(sim.fifo)) == (1018, 0)
    assert sim.dispatch(query) is None
    assert sim.dispatch(query) == b"^0=SM256\t0\t0\t0\t0\t0\r"
