"""Suite-wide test set-up: the soak marker and small shared fixtures."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

SOAK = os.environ.get("LINEAGENT_SOAK") == "1"
# CLI tables are asserted on: give rich a wide terminal so cells are not cut.
os.environ["COLUMNS"] = "200"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SOAK:
        return
    skip = pytest.mark.skip(reason="long soak/fault run: run with LINEAGENT_SOAK=1 scripts/test")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"
