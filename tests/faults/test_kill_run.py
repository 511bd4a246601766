"""The fault run (tests/faults/harness.py): the agent SIGKILLed and restarted while the plant runs on in
its own process, the broker killed, the link to it dropped, stalled and reordered; then the audit from
outside the agent. Short in every `scripts/test`; the long run (500 kills) with LINEAGENT_SOAK=1.
Every check must hold; the report (also saved as report.json, beside each life's log) names each figure.

Two plants: one whose PLC watchdog stops the belt before the coder has printed its FIFO out (1 s at
900/min: 15 items, the FIFO holds 24), and one where the belt runs on long enough after a kill for the
coder to run dry (3 s at 1,200/min: 60 items): a real coder then stops with its own error (Leibinger
5043, mailing buffer empty), which the restarted agent must get past on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import FaultRun, RunSpec


def _run(spec: RunSpec, workdir: Path) -> None:
    report = FaultRun(spec, workdir).run()
    report.save(workdir / "report.json")
    print(report.text())  # shown by pytest -s, and with the failure below
    assert report.ok, "\n" + report.text()


@pytest.mark.timeout(900)
def test_ten_kills_broker_kills_and_a_bad_link(tmp_path: Path) -> None:
    _run(RunSpec(kills=10, target=200, rate=900, watchdog_s=1.0, seed=11, broker_kills=2), tmp_path)


@pytest.mark.timeout(900)
def test_kills_that_leave_the_coder_to_run_dry(tmp_path: Path) -> None:
    _run(RunSpec(kills=3, target=120, rate=1200, watchdog_s=3.0, seed=12, broker_kills=0, proxy_faults=False,
                 startup_kill_share=0.0), tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(6 * 3600)
def test_five_hundred_kills(tmp_path: Path) -> None:
    _run(RunSpec(kills=500, target=8000, rate=900, watchdog_s=1.0, seed=23, broker_kills=25,
                 finish_timeout_s=1800), tmp_path)
