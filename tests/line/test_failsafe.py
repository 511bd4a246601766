"""Fail-safe, as the plant sees it: the PLC's heartbeat watchdog, and a crash inside the runtime
stopping the conveyor before the coder (the order a real line needs: no product may pass a coder that
no longer prints while the belt still runs)."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from agent.demo import prepare
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import Ledger
from agent.line.printing import PrintStation
from agent.line.runtime import LineRuntime
from agent.line.simulated import SimSettings, SimulatedLine
from drivers.plc import LinePlc
from drivers.plc.plc import PlcSettings, Signal
from drivers.sim.plc import ConveyorModel, PlcSim, example_map
from tests.conftest import free_port


def task_stacks() -> str:
    """Where each task of the loop waits: what a hang detector reports instead of a bare timeout."""
    out = io.StringIO()
    for t in asyncio.all_tasks():
        print(f"-- task {t.get_name()}", file=out)
        t.print_stack(limit=6, file=out)
    return out.getvalue()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_watchdog_arms_on_the_first_beat_trips_and_holds_until_beats_resume() -> None:
    clock = Clock()
    m = ConveyorModel(example_map(), watchdog_s=1.0, clock=clock)
    m.write(Signal.LINE_RUN, 1)
    clock.t += 60
    assert m.step() is not None or m.counter == 1  # not armed: no heartbeat was ever written
    m.write(Signal.HEARTBEAT, 1)
    clock.t += 0.9
    m.write(Signal.HEARTBEAT, 2)
    clock.t += 0.9
    m.step()
    assert m.running and m.watchdog_trips == 0
    clock.t += 0.2  # 1.1 s since the last change
    assert m.step() is None
    assert not m.running and m.watchdog_trips == 1
    m.write(Signal.HEARTBEAT, 2)  # the same value again is no beat
    m.write(Signal.LINE_RUN, 1)
    assert not m.running
    m.write(Signal.HEARTBEAT, 3)
    m.write(Signal.LINE_RUN, 1)
    assert m.running


def test_the_plc_stops_the_conveyor_when_heartbeats_over_modbus_stop() -> None:
    async def main() -> None:
        async with PlcSim(example_map(), port=free_port(), watchdog_s=0.3) as sim:
            settings = PlcSettings.model_validate({"url": sim.url, "registers": example_map().model_dump()})
            async with LinePlc(settings) as plc:
                for _ in range(5):
                    await plc.heartbeat()
                    await asyncio.sleep(0.05)
                await plc.run_line(True)
                assert sim.model.running
                # The agent goes silent: the PLC's own scan (a pitch here) finds the beat too old.
                for _ in range(400):  # a hang detector: up to 20 s on a loaded machine
                    sim.model.step()
                    if not sim.model.running:
                        break
                    await asyncio.sleep(0.05)
                assert not sim.model.running and sim.model.watchdog_trips == 1
                await plc.run_line(True)  # refused by the PLC until the agent beats again
                assert not sim.model.running
                await plc.heartbeat()
                await plc.run_line(True)
                assert sim.model.running

    asyncio.run(main())


class CrashLine:
    """The simulated line both crash tests run: a job of 400 on the demo's config, MQTT off, and a record
    of whether the belt ran at each moment a coder was told to stop."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        with Path(os.devnull).open("w") as sink:
            cfg = prepare(tmp_path, 400, Console(file=sink))
        self.sim = SimulatedLine(cfg, tmp_path, SimSettings(rate_per_min=600, receiver=False))
        self.live = self.sim.start()
        self.ledger = Ledger(self.live.resolve(self.live.storage.ledger))
        self.model = next(iter(self.sim.plcs.values())).model
        self.belt_when_coder_stopped: list[bool] = []
        halt = PrintStation.halt
        model, seen = self.model, self.belt_when_coder_stopped

        async def observed_halt(station: PrintStation) -> None:
            seen.append(model.running)  # what the plant shows at that moment
            await halt(station)

        monkeypatch.setattr(PrintStation, "halt", observed_halt)

    def runtime_with_a_job(self) -> LineRuntime:
        job = create_job(self.ledger, JobSpec(name="WO-1", gtin="09506000134352", product_name="water", lot="L1",
                                              target_qty=400, template="dl", packing_spec="6x4x40"))
        start_job(self.ledger, job)
        return LineRuntime(self.live.model_copy(update={"mqtt": None}), self.ledger,
                           overrides=self.sim.overrides(), status_every_s=0.05)

    async def running(self) -> None:
        for _ in range(1200):  # up to 60 s for the line to run on a loaded machine
            if self.model.running and self.model.counter > 5:
                return
            await asyncio.sleep(0.05)


def test_a_crash_inside_the_runtime_stops_the_conveyor_before_the_coder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = CrashLine(tmp_path, monkeypatch)
    sim, ledger, model, belt_when_coder_stopped = line.sim, line.ledger, line.model, line.belt_when_coder_stopped
    try:
        runtime = line.runtime_with_a_job()

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            await line.running()
            assert model.running, "the line never started; the runtime's tasks:\n" + task_stacks()

            def crash() -> None:
                raise RuntimeError("a bug in the runtime")

            monkeypatch.setattr(runtime, "snapshot", crash)
            done, _ = await asyncio.wait({task}, timeout=45)  # a hang detector
            assert done, "the runtime did not end after the crash; its tasks:\n" + task_stacks()
            try:
                await task
            except BaseExceptionGroup as group:
                assert group.subgroup(RuntimeError) is not None
            else:
                raise AssertionError("the runtime swallowed the crash")

        asyncio.run(scenario())
        assert not model.running
        assert belt_when_coder_stopped and not any(belt_when_coder_stopped)
    finally:
        ledger.close()
        sim.stop()


def test_a_crash_ends_the_runtime_even_when_plc_calls_lose_their_cancellation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 asyncio.wait_for returns the answer and drops a cancellation that lands as the
    answer arrives (CPython gh-86296), and pymodbus awaits every PLC answer with it: the PLC-cycle task
    and a verify station, each inside a PLC call when a crash cancels them, go on running. They still end,
    and the belt still stops before the coders."""
    line = CrashLine(tmp_path, monkeypatch)
    sim, ledger, model, belt_when_coder_stopped = line.sim, line.ledger, line.model, line.belt_when_coder_stopped
    parked: dict[str, str] = {}  # PLC method -> the task parked in it
    lost: list[str] = []  # tasks whose cancellation the PLC call dropped
    armed: list[asyncio.Event] = []

    def lossy(method: str) -> None:
        real = getattr(LinePlc, method)

        async def call(self: LinePlc, *args: object) -> object:
            task = asyncio.current_task()
            if armed and method not in parked and task is not None:
                parked[method] = task.get_name()
                try:
                    await armed[0].wait()  # never set: the answer comes with the cancellation
                except asyncio.CancelledError:
                    lost.append(task.get_name())  # what wait_for does when the answer is there too
            return await real(self, *args)

        monkeypatch.setattr(LinePlc, method, call)

    lossy("heartbeat")  # the PLC-cycle task
    lossy("read_many")  # the verify station's counter poll
    try:
        runtime = line.runtime_with_a_job()

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            await line.running()
            assert model.running, "the line never started"
            armed.append(asyncio.Event())
            for _ in range(600):  # a hang detector: both calls come within a PLC cycle
                if len(parked) == 2:
                    break
                await asyncio.sleep(0.05)
            assert parked == {"heartbeat": "plc-cycle", "read_many": "verify:camera"}, parked

            def crash() -> None:
                raise RuntimeError("a bug in the runtime")

            monkeypatch.setattr(runtime, "snapshot", crash)
            done, _ = await asyncio.wait({task}, timeout=60)  # a hang detector
            assert done, "the runtime did not end after the crash; its tasks:\n" + task_stacks()
            with pytest.raises(BaseExceptionGroup) as group:
                task.result()
            assert group.value.subgroup(RuntimeError) is not None

        asyncio.run(scenario())
        assert sorted(lost) == ["plc-cycle", "verify:camera"]
        assert not model.running
        assert belt_when_coder_stopped and not any(belt_when_coder_stopped)
    finally:
        ledger.close()
        sim.stop()
