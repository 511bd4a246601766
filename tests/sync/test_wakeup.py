"""The uplink's wake-up: raised only by the rows that matter, counted from the uplink's last look."""

from __future__ import annotations

import select

from agent.sync.wakeup import NEVER, Wakeup


def _raised(w: Wakeup) -> bool:
    return bool(select.select([w], [], [], 0)[0])


def test_rows_wake_only_once_they_reach_what_was_asked() -> None:
    w = Wakeup()
    w.look()
    w.expect(3)  # a partial batch of 197 waits: 3 more fill it
    w.added(2)
    assert not _raised(w)
    w.added(1)
    assert _raised(w)
    w.clear()
    assert not _raised(w)
    w.close()


def test_rows_committed_between_look_and_expect_count() -> None:
    w = Wakeup()
    w.look()
    w.added(1)  # committed while the uplink ran its queries
    assert not _raised(w)  # nothing asked yet
    w.expect(1)
    assert _raised(w)
    w.close()


def test_a_full_window_ignores_rows_but_not_a_stop() -> None:
    w = Wakeup()
    w.look()
    w.expect(NEVER)
    w.added(10_000)
    assert not _raised(w)
    w.wake()
    assert _raised(w)
    w.close()
    w.added(1)  # after close: the ledger's listener must not fail
