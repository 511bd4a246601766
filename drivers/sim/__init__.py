"""Device simulators that speak the real wire protocols, with fault injection (tests, demo, bench).

`SIMULATORS` maps a coder protocol name to "module:Class" for `lineagent sim printer --protocol NAME`,
imported lazily like drivers/registry.py. A registered class must offer what `SimCoder`
(drivers/sim/base.py) offers to the CLI: a constructor taking keyword-only `rate_per_min`, `baud`
and `faults` (a FaultPlan or a SPEC string, drivers/sim/faults.py), `async serve_pty() -> str`,
`async serve_tcp(port) -> int`, `async close()`, and `printed: list[str]`.
"""

from __future__ import annotations

import importlib
from typing import Any

SIMULATORS: dict[str, str] = {
    "leibinger": "drivers.sim.leibinger:LeibingerSim",
    "generic": "drivers.sim.generic:GenericSim",  # needs protocol= (a config/printers/*.yaml name or path)
    "videojet_wsi": "drivers.sim.videojet:VideojetSim",
    "hitachi": "drivers.sim.hitachi:HitachiSim",
    "markem_ngpcl": "drivers.sim.markem:MarkemSim",
    "modbus_marker": "drivers.sim.modbus_marker:ModbusMarkerSim",
}


def load_simulator(protocol: str) -> Any:
    """The simulator class registered for `protocol`; LookupError names the known ones."""
    if protocol not in SIMULATORS:
        known = ", ".join(sorted(SIMULATORS)) or "none"
        raise LookupError(f"no simulator for protocol {protocol!r} (known: {known})")
    module, _, attr = SIMULATORS[protocol].partition(":")
    return getattr(importlib.import_module(module), attr)
