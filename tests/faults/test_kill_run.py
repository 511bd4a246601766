"""The fault run (tests/faults/harness.py): the agent SIGKILLed and restarted while the plant runs on in
its own process, the broker killed, the link to it dropped, stalled and reordered; then the audit from
outside the agent. Short in every `scripts/test` (10 kills); the long run (500 kills) with
LINEAGENT_SOAK=1. Every check must hold; the report (also saved as report.json) names each figure."""

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
    _run(RunSpec(kills=10, target=300, seed=11, broker_kills=2), tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(6 * 3600)
def test_five_hundred_kills(tmp_path: Path) -> None:
    _run(RunSpec(kills=500, target=12000, seed=23, broker_kills=25, finish_timeout_s=1800), tmp_path)
