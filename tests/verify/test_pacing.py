"""The counter's pace (agent/verify/pacing.py): read once per pitch where the positions leave room, twice
where they do not, every poll_ms while the pitch is unknown; never fooled by reads that straddle a move
or by a stop. Times are given, not measured: no test here waits on a clock."""

from __future__ import annotations

import asyncio

import pytest

from agent.config.verify import VerifySettings
from agent.verify.pacing import MIN_SPAN, Pacer, Wake, reads_per_stretch

PITCH = 0.030  # 2,000 items/min


def settings(**kw: object) -> VerifySettings:
    base: dict[str, object] = {"camera_at": 3, "read_window": 1, "gate_at": 8, "poll_ms": 5, "poll_max_ms": 100}
    base.update(kw)
    return VerifySettings.model_validate(base)


def run_line(pacer: Pacer, *, pitch: float, until: float, start: float = 0.0, phase: float = 0.013) -> list[float]:
    """Reads as the station makes them (each after pacer.interval_s()) on a line whose counter moves
    every `pitch` from `start` (+ `phase`); returns the read times."""
    t, reads = 0.0, []
    while t < until:
        counter = 0 if t < start + phase else int((t - start - phase) / pitch) + 1
        pacer.saw(t, counter)
        reads.append(t)
        t += pacer.interval_s()
    return reads


def test_stretch_is_the_shorter_of_window_and_way_to_gate() -> None:
    assert reads_per_stretch(settings()) == 2  # window 1: 2 pitches; gate 8 - 3 - 1 - 1 = 3
    assert reads_per_stretch(settings(read_window=0, gate_at=8)) == 1
    assert reads_per_stretch(settings(read_window=12, gate_at=18)) == 2  # the bench line: 18 - 3 - 12 - 1
    assert reads_per_stretch(settings(read_window=4, gate_at=8)) == 0  # the gate right after the window


def test_unknown_pitch_reads_every_poll_ms() -> None:
    pacer = Pacer.for_station(settings())
    assert pacer.interval_s() == pytest.approx(0.005)
    pacer.saw(0.0, 0)
    pacer.saw(0.005, 0)  # a belt running empty: no move, no pitch
    assert pacer.pitch_s is None and pacer.interval_s() == pytest.approx(0.005)


def test_once_per_pitch_on_a_steady_line() -> None:
    pacer = Pacer.for_station(settings())
    reads = run_line(pacer, pitch=PITCH, until=3.0)
    assert pacer.pitch_s == pytest.approx(PITCH, rel=0.1)
    late = [t for t in reads if t > 1.0]  # past the start, where the pitch is known
    assert len(late) / 2.0 == pytest.approx(1 / PITCH, rel=0.15)  # ~33 reads/s, not 200


def test_two_reads_per_pitch_when_the_window_is_one_pitch() -> None:
    pacer = Pacer.for_station(settings(read_window=0))
    run_line(pacer, pitch=PITCH, until=2.0)
    assert pacer.interval_s() == pytest.approx(PITCH / 2, rel=0.1)


def test_no_room_keeps_poll_ms() -> None:
    pacer = Pacer.for_station(settings(read_window=4, gate_at=8))
    run_line(pacer, pitch=PITCH, until=1.0)
    assert pacer.interval_s() == pytest.approx(0.005)


def test_every_item_is_read_twice_in_its_window() -> None:
    """The safety property: every counter value an item's window spans is seen by some read; with the
    default positions (window of two positions) each window holds two reads."""
    pacer = Pacer.for_station(settings())
    reads = run_line(pacer, pitch=PITCH, until=3.0)
    phase = 0.013
    for seq in range(40, 90):  # items well past the start
        opens = phase + (seq + 3 - 1) * PITCH  # the counter reaches seq + camera_at
        closes = phase + (seq + 3 + 1) * PITCH  # ... and seq + camera_at + window + 1
        assert sum(opens <= t < closes for t in reads) >= 2, seq


def test_straddling_reads_do_not_fake_a_short_pitch() -> None:
    """A read right after another that saw the move (a frame woke the station) is not a pitch."""
    pacer = Pacer.for_station(settings())
    t = 0.0
    for i in range(1, 12):
        pacer.saw(t, i)
        pacer.saw(t + 0.001, i + 1 if i % 3 == 0 else i)  # now and then a move seen 1 ms after a read
        t += PITCH
    pitch = pacer.pitch_s
    assert pitch is not None and pitch > PITCH * 0.6


def test_a_stop_starts_a_new_span_and_polls_until_known() -> None:
    pacer = Pacer.for_station(settings())
    run_line(pacer, pitch=PITCH, until=1.0)
    assert pacer.pitch_s == pytest.approx(PITCH, rel=0.1)
    last = pacer._last
    assert last is not None
    # the belt stands for 5 s, then runs again at the same pitch
    pacer.saw(last[0] + 5.0, last[1] + 1)
    assert pacer.pitch_s is None and pacer.interval_s() == pytest.approx(0.005)  # not 5 s per item
    for k in range(1, MIN_SPAN + 1):
        pacer.saw(last[0] + 5.0 + k * PITCH, last[1] + 1 + k)
    assert pacer.pitch_s == pytest.approx(PITCH, rel=0.1)


def test_a_read_that_missed_a_pitch_reads_sooner() -> None:
    pacer = Pacer.for_station(settings(read_window=5, gate_at=12))  # room: one read per pitch
    for k in range(10):
        pacer.saw(k * PITCH, k)
    assert pacer.interval_s() == pytest.approx(PITCH, rel=0.05)
    pacer.saw(9 * PITCH + 0.100, 9 + 4)  # a busy loop: 100 ms late, four moves seen at once
    assert pacer.interval_s() <= 0.100 / 4 + 1e-9


def test_declared_rate_paces_from_the_first_read_and_caps_at_poll_max() -> None:
    pacer = Pacer.for_station(settings(), line_rate_per_min=2000)
    assert pacer.interval_s() == pytest.approx(PITCH)
    slow = Pacer.for_station(settings(), line_rate_per_min=60)  # a 1 s pitch
    assert slow.interval_s() == pytest.approx(0.100)


def test_pace_off_reads_every_poll_ms() -> None:
    pacer = Pacer.for_station(settings(pace=False))
    run_line(pacer, pitch=PITCH, until=1.0)
    assert pacer.interval_s() == pytest.approx(0.005)


def test_wake_returns_on_set_and_on_stop() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        wake = Wake(stop)
        waiting = asyncio.create_task(wake.sleep(60))
        await asyncio.sleep(0)
        wake.set()
        await asyncio.wait_for(waiting, 30)  # a hang detector, not a timing assert
        wake.clear()
        waiting = asyncio.create_task(wake.sleep(60))
        await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(waiting, 30)
        wake.close()

    asyncio.run(scenario())


def test_deadlines_use_the_shorter_pitch_after_a_speed_up() -> None:
    pacer = Pacer.for_station(settings(read_window=5, gate_at=12))
    for k in range(10):
        pacer.saw(k * PITCH, k)
    pacer.saw(10 * PITCH, 11)  # two moves in one pitch: the line runs twice as fast now
    assert pacer.shortest_pitch_s == pytest.approx(PITCH / 2)
    pitch = pacer.pitch_s
    assert pitch is not None and pitch > PITCH / 2  # the average lags; deadlines do not wait for it
