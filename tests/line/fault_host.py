"""A daemon on a simulated line in a process of its own, for the resource-fault tests.

`python -m tests.line.fault_host CONFIG PLANT_LOG`: the simulated plant (coder on a pty, pymodbus PLC,
plant-fed camera) and `LineRuntime` in this process, served exactly as `lineagent run` serves it
(SIGTERM/SIGINT end it). The camera is an in-process object fed by the plant, so the plant cannot live
in the test's process. Two test-only signals reach the ledger's own writer connection, where a
per-connection limit has to be set: SIGUSR1 caps the file at its current size (`PRAGMA max_page_count`:
every write that needs a new page fails SQLITE_FULL, a real SQLite error on the real file), SIGUSR2 lifts
the cap. At exit the plant's own record goes to PLANT_LOG: every text the coder accepted into its FIFO
and every text it printed, in order.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import sys
from pathlib import Path

from agent.config import load_config
from agent.ledger import Ledger
from agent.line.runtime import LineRuntime
from agent.line.simulated import SimSettings, SimulatedLine


def _cap(ledger: Ledger, on: bool) -> None:
    with ledger.lock:
        pages = int(ledger.conn.execute("PRAGMA page_count").fetchone()[0])
        ledger.conn.execute(f"PRAGMA max_page_count = {pages if on else 1_073_741_823}")


def main(config: Path, plant_log: Path) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(config)
    sim = SimulatedLine(cfg, config.parent, SimSettings(rate_per_min=600, receiver=False))
    received: list[str] = []
    printed: list[str] = []
    try:
        live = sim.start()
        coder = next(iter(sim.coders.values()))
        printed = coder.printed  # the simulator's own list, appended to as it prints
        store = coder.store

        def logged_store(text: str, tag: int = 0) -> bool:
            ok = bool(store(text, tag))
            if ok:
                received.append(text)
            return ok

        coder.store = logged_store
        ledger = Ledger(live.resolve(live.storage.ledger))
        try:
            runtime = LineRuntime(live, ledger, overrides=sim.overrides(), status_every_s=0.2)

            async def serve() -> None:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, stop.set)
                for sig, on in ((signal.SIGUSR1, True), (signal.SIGUSR2, False)):
                    loop.add_signal_handler(sig, functools.partial(loop.run_in_executor, None, _cap, ledger, on))
                print("serving", flush=True)
                await runtime.run(stop)

            asyncio.run(serve())
        finally:
            ledger.close()
    finally:
        sim.stop()
        plant_log.write_text(json.dumps({"received": received, "printed": printed}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
