"""Every contract check for every driver+simulator pair (pairs.py), over a pty and over TCP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.drivers.printers.contract import CHECKS, LINKS, Bench, run_check
from tests.drivers.printers.pairs import PAIRS, Pair


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_contract(pair: Pair, link: str, check: Callable[[Bench], Awaitable[None]]) -> None:
    run_check(pair, link, check)
