"""Coder benchmarks: link utilisation per protocol, a long run that must never run dry, a fault run.

Why these three (issue 3): at line speed the serial link, not Python, is what limits a coder, so
each protocol's push rate is set beside the link's theoretical frame rate for its own frame size
(bytes measured on the wire in the same run); the feeder must keep a FIFO full for 100,000 items at
2,000 items/min; and faults must never cost a duplicate.

Time is compressed for the long runs: the simulator's conveyor runs on TCP (no baud pacing) at
`SPEEDUP` times the line rate, so if the FIFO never runs dry there, it cannot at the real rate.
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import tempfile
import time
import tty
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.feeder import Feeder
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import Ledger
from bench import Figure
from drivers.printers.base import Printer, Record
from drivers.printers.fifo import CoderKind
from drivers.sim.base import BITS_PER_BYTE

BAUD = 115_200
LINE_RATE_PER_MIN = 2_000
# The long runs' conveyor runs this many times faster than the line: 2,000/min x15 = 500 products/s,
# with simulator, driver, feeder and ledger sharing one process. At 100,000 items the feeder's confirm
# query (agent/feeder_store.confirm_upto) scans the coder's whole feed history, ~43 ms a call by the end,
# so the compression, not the refill logic, is what can leave a few products unmarked.
SPEEDUP = 15


@dataclass(frozen=True)
class Protocol:
    name: str
    capacity: int
    make_sim: Callable[[int], Any]  # a drivers.sim simulator: serve_pty(), trigger(), printed
    make_driver: Callable[[str, int], Printer]


def _protocols() -> list[Protocol]:
    """Every coder protocol with a pty simulator that imports in this tree."""
    out: list[Protocol] = []
    with suppress(ImportError):
        from drivers.printers.leibinger import Leibinger, LeibingerSettings
        from drivers.sim.leibinger import LeibingerSim

        out.append(Protocol("leibinger", 256, lambda c: LeibingerSim(capacity=c, baud=BAUD),
                            lambda u, c: Leibinger(LeibingerSettings(url=u, capacity=c, baud=BAUD))))
    with suppress(ImportError):
        from drivers.printers.videojet import VideojetSettings, VideojetWsi
        from drivers.printers.videojet_codec import VideojetModel
        from drivers.sim.videojet import VideojetSim

        # One user field, no queue (WSI Rev AD 3.6): one code per push, each proven by the print counter.
        out.append(Protocol("videojet_wsi", 1, lambda c: VideojetSim(baud=BAUD),
                            lambda u, c: VideojetWsi(VideojetSettings(url=u, model=VideojetModel.V1620,
                                                                      baud=BAUD))))
    with suppress(ImportError):
        from drivers.printers.markem import MarkemNgpcl, MarkemSettings
        from drivers.sim.markem import MarkemSim

        # A single slot (NGPCL Usage Guide v25, 10.2): one code in the coder at a time.
        out.append(Protocol("markem_ngpcl", 1, lambda c: MarkemSim(baud=BAUD),
                            lambda u, c: MarkemNgpcl(MarkemSettings(url=u, baud=BAUD))))
    with suppress(ImportError):
        from drivers.printers.hitachi import HitachiBuffer, HitachiSettings
        from drivers.sim.hitachi import HitachiSim

        # the buffer holds 100 items / 1,000 characters (RX manual 5.9.2): 32 of the 31-character codes
        out.append(Protocol("hitachi", 32, lambda c: HitachiSim(capacity=c, refill_n=0, baud=BAUD),
                            lambda u, c: HitachiBuffer(HitachiSettings(url=u, buffer_size=c, baud=BAUD))))
    return out


# ---- 1. link utilisation --------------------------------------------------------------------------

class _Tap:
    """A byte-counting relay between the driver and the simulator's pty: the driver opens our pty,
    we pass every byte on to the simulator's and back. Counting here needs nothing from either side."""

    def __init__(self, sim_path: str) -> None:
        self.rx = 0  # driver -> coder
        self.tx = 0  # coder -> driver
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._sim = os.open(sim_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._sim)
        os.set_blocking(self._master, False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._master, self._pass, self._master, self._sim, "rx")
        loop.add_reader(self._sim, self._pass, self._sim, self._master, "tx")

    def _pass(self, src: int, dst: int, way: str) -> None:
        with suppress(BlockingIOError):
            data = os.read(src, 65536)
            setattr(self, way, getattr(self, way) + len(data))
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(dst, view):]
                except BlockingIOError:
                    select.select([], [dst], [], 0.01)  # a pty buffer is full: the bench waits

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self._master, self._sim):
            loop.remove_reader(fd)
        for fd in (self._master, self._slave, self._sim):
            os.close(fd)


async def _link_rate(proto: Protocol, codes: int) -> tuple[float, float, float | None]:
    """(codes/s achieved, codes/s the link could carry at this protocol's bytes per code, and the
    driver's own highest safe line rate in items/min where its coder is a single slot).

    The driver follows its protocol's real rules here: an indexed FIFO takes pipelined batches of what
    the feeder may keep in it, a single slot one code per print, each proven by the coder's counter
    before the next goes out, a handshaken link an ENQ/ACK per record."""
    sim = proto.make_sim(proto.capacity)
    tap = _Tap(await sim.serve_pty())
    driver = proto.make_driver(tap.path, proto.capacity)
    await driver.connect()
    try:
        await driver.start()
        rx0, tx0 = tap.rx, tap.tx
        seq = 0
        t0 = time.perf_counter()
        while seq < codes:
            batch = [Record(seq + i + 1, f"0104012345678901921BENCH{seq + i + 1:07d}")
                     for i in range(min(driver.capabilities.fifo_capacity, codes - seq))]
            await driver.push(batch)
            seq += len(batch)
            sim.trigger(len(batch))  # the products pass: the FIFO is free for the next batch
        elapsed = time.perf_counter() - t0
        rx, tx = tap.rx - rx0, tap.tx - tx0
    finally:
        await driver.close()
        tap.close()
        await sim.close()
    per_code = max(rx, tx) / codes  # the busier direction limits a full-duplex link
    theoretical = (BAUD / BITS_PER_BYTE) / per_code
    safe = driver.capabilities.max_items_per_min if driver.capabilities.kind is CoderKind.SINGLE_SLOT else None
    return codes / elapsed, theoretical, safe


# ---- 2 + 3. long runs through the feeder ------------------------------------------------------------

def _seed(ledger: Ledger, n: int) -> int:
    with ledger.atomic(durable=True) as conn:
        cur = conn.execute(
            "INSERT INTO packages(package_id, issuer, level, count, code_format, body_sha256, source, signed,"
            " imported_at) VALUES ('bench', 'bench', 'item', ?, 'raw', '-', 'txt', 0, 0)", (n,))
        conn.executemany("INSERT INTO codes(code, level, package) VALUES (?, 'item', ?)",
                         ((f"B{i:09d}", cur.lastrowid) for i in range(n)))
    job = create_job(ledger, JobSpec(name="bench", gtin="09506000134352", product_name="Bench", lot="L1",
                                     target_qty=n))
    start_job(ledger, job)
    return job


async def _feeder_run(items: int, *, line_per_min: float, speedup: float, faults: str | None) -> dict[str, Any]:
    """`items` through the feeder on a conveyor running at `line_per_min` x `speedup` products a minute.

    Why two arguments: a single rate argument was once passed an already compressed rate and compressed
    again; the simulator's conveyor rate is computed here, once, and returned as measured.
    """
    from drivers.printers.leibinger import Leibinger, LeibingerSettings
    from drivers.sim.leibinger import LeibingerSim

    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "ledger.db")
        # Each fault may put a whole FIFO in doubt (never reused), so the pool holds plenty more.
        job = _seed(ledger, items + (items if faults else items // 5) + 2_000)
        ledger.conn.execute("UPDATE jobs SET target_qty = ? WHERE id = ?", (items, job))
        conveyor_per_min = line_per_min * speedup
        sim = LeibingerSim(capacity=256, rate_per_min=conveyor_per_min, faults=faults)
        port = await sim.serve_tcp(0)
        printer = Leibinger(LeibingerSettings(url=f"tcp://127.0.0.1:{port}", capacity=256, timeout_s=0.2,
                                              retries=1, reconnect_min_s=0.01, reconnect_max_s=0.1))
        await printer.connect()
        feeder = Feeder(ledger, printer, coder="bench", job=job, level="item", render=lambda c: c,
                        target_depth=128, poll_s=0.01, retry_s=0.01, max_retry_s=0.1)
        run = asyncio.create_task(feeder.run())
        started = False
        dry_while_printing = 0

        async def operator() -> None:
            nonlocal started, dry_while_printing
            missed = 0
            while True:
                await asyncio.sleep(0.002)
                if sim.powered and not sim.running and len(sim.fifo) > 0:
                    sim.start_printing()  # start (again) once primed, as a line does
                    started = True
                    missed = sim.missed
                elif sim.running and sim.missed > missed:
                    if len(sim.printed) < items:  # once the job is printed, an empty FIFO is right
                        dry_while_printing += sim.missed - missed  # printing and nothing to print
                    missed = sim.missed

        op = asyncio.create_task(operator())
        t0 = time.perf_counter()
        try:
            # A run that cannot finish (codes short, a coder that never comes back) is stopped, and
            # the figures then show it rather than the bench hanging.
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(run), timeout=items / (conveyor_per_min / 60) * 4 + 30)
            feeder.stop()
            await run
        finally:
            op.cancel()
            with suppress(asyncio.CancelledError):
                await op
            elapsed = time.perf_counter() - t0
            await printer.close()
            await sim.close()
        with ledger.lock:
            states = dict(ledger.conn.execute(
                "SELECT state, COUNT(*) FROM codes WHERE job = ? GROUP BY state", (job,)).fetchall())
            printed_codes = {r[0] for r in ledger.conn.execute(
                "SELECT code FROM codes WHERE job = ? AND state = 'printed'", (job,))}
        ledger.close()
    dupes = sum(n - 1 for n in Counter(sim.printed).values() if n > 1)
    return {
        "elapsed": elapsed,
        "conveyor_per_min": conveyor_per_min,
        # Products that reached the head (printed or passed unmarked): checks the compression itself.
        "products_per_min": (len(sim.printed) + sim.missed) / elapsed * 60,
        "printed_sim": len(sim.printed),
        "printed_ledger": int(states.get("printed", 0)),
        "in_doubt": int(states.get("in_doubt", 0)),
        "duplicates": dupes,
        "misattributed": len(printed_codes - set(sim.printed)),
        "dry": dry_while_printing,
        "reconciles": len(feeder.reports),
    }


def _fault_spec(items: int, faults: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    kinds = ["nak", "garbage", "silence", "buffer_full", "stop", "power_loss"]
    at = sorted(rng.sample(range(50, items - 200), faults))
    return ",".join([f"{rng.choice(kinds)}@{n}" for n in at] + [f"seed={seed}", "down=0.05"])


def run(quick: bool) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    for proto in _protocols():
        n = (512 if quick else 2048) if proto.capacity > 1 else (150 if quick else 600)
        achieved, theoretical, safe = asyncio.run(_link_rate(proto, n))
        figures[f"coder.{proto.name}.link_utilisation"] = Figure(
            achieved / theoretical, "of link", 1.0, 0.9,
            note=f"{achieved:,.0f} codes/s pushed over a {BAUD}-baud pty ({n} codes, the simulator answers at "
            f"once); the link carries {theoretical:,.0f}/s at this protocol's bytes per code (both ways, "
            "10 bits a byte)",
        )
        if safe is not None:
            figures[f"coder.{proto.name}.max_safe_items_per_min"] = Figure(
                safe, "items/min", theoretical * 60, LINE_RATE_PER_MIN,
                note=f"the highest line rate the driver allows for this single-slot coder at {BAUD} baud: one "
                "code per print, the next only after the counter shows the last printed, with the coder's "
                "turnaround per exchange (a setting: the manual gives none); baseline: the link's byte "
                "limit per minute with no turnaround",
            )
    items = 10_000 if quick else 100_000
    rate = LINE_RATE_PER_MIN * SPEEDUP  # the compressed conveyor, products/min
    long = asyncio.run(_feeder_run(items, line_per_min=LINE_RATE_PER_MIN, speedup=SPEEDUP, faults=None))
    figures["coder.feeder.dry_items"] = Figure(
        long["dry"], "items", None, 0, higher_is_better=False,
        note=f"{items:,} items at {LINE_RATE_PER_MIN:,}/min x{SPEEDUP} (TCP); products that passed a "
        f"printing coder with an empty FIFO; {long['printed_ledger']:,} printed in {long['elapsed']:.1f} s",
    )
    figures["coder.feeder.items_per_min"] = Figure(
        long["printed_sim"] / long["elapsed"] * 60, "items/min", rate, None,
        note=f"sustained print rate through the feeder; baseline = the compressed conveyor rate "
        f"(measured at the head: {long['products_per_min']:,.0f} products/min)",
    )
    n_fault = 2_000 if quick else 10_000
    faults = 10 if quick else 50
    fr = asyncio.run(_feeder_run(n_fault, line_per_min=LINE_RATE_PER_MIN, speedup=SPEEDUP,
                                 faults=_fault_spec(n_fault, faults)))
    figures["coder.faults.duplicates"] = Figure(
        fr["duplicates"], "codes", None, 0, higher_is_better=False,
        note=f"{n_fault:,} items, {faults} random faults (nak, garbage, silence, buffer_full, stop, "
        f"power loss); {fr['reconciles']} reconciles, {fr['in_doubt']} codes in doubt",
    )
    figures["coder.faults.misattributed"] = Figure(
        fr["misattributed"], "codes", None, 0, higher_is_better=False,
        note="codes the ledger calls printed that the simulator never printed",
    )
    return figures
