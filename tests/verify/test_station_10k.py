"""No false accept over 10,000 items with mixed defects (reader strings), PLC over Modbus/TCP, real ledger.

Seeded, so a failure replays exactly. Every item with a defect must be rejected (and removed by the
gate, by the simulator's own record), every item that passes the gate must be good and verified in
the ledger, and the verdict must be the defect's own.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from agent.ledger import CodeState
from agent.verify.grade import Grade
from agent.verify.station import VerifySettings
from agent.verify.verdict import Verdict
from tests.verify.test_station import Item, close_line, open_line

N = 10_000
# defect -> (share of items, the verdict it must get)
MIX: dict[str, tuple[float, Verdict]] = {
    "mismatch": (0.02, Verdict.MISMATCH),
    "duplicate": (0.02, Verdict.DUPLICATE),
    "foreign": (0.02, Verdict.FOREIGN),
    "missing": (0.02, Verdict.MISSING_PRINT),
    "no_read": (0.02, Verdict.NO_READ),
    "never": (0.01, Verdict.NO_READ),
    "too_late": (0.01, Verdict.NO_READ),
    "low_grade": (0.02, Verdict.LOW_GRADE),
    "late_ok": (0.03, Verdict.GOOD),
}


def plan(rng: random.Random, codes: list[str], spares: list[str]) -> tuple[dict[int, Item], dict[int, str]]:
    items: dict[int, Item] = {}
    kinds: dict[int, str] = {}
    verified: list[str] = []  # codes already read good, for duplicates
    for seq in range(1, N + 1):
        r, kind = rng.random(), "good"
        for name, (share, _) in MIX.items():
            if r < share:
                kind = name
                break
            r -= share
        if kind == "duplicate" and not verified:
            kind = "good"
        kinds[seq] = kind
        items[seq] = {
            "good": Item(grade=rng.choice([Grade.A, Grade.B, Grade.C, None])),
            "mismatch": Item(texts=(spares[seq % len(spares)],)),
            "duplicate": Item(texts=(rng.choice(verified),) if verified else None),
            "foreign": Item(texts=(f"FOREIGN{seq:08d}",)),
            "missing": Item(printed=False, texts=(), blank=True),
            "no_read": Item(texts=()),
            "never": Item(delay=None),
            "too_late": Item(delay=3),
            "low_grade": Item(grade=rng.choice([Grade.D, Grade.F])),
            "late_ok": Item(delay=rng.choice([1, 2])),
        }[kind]
        if kind in ("good", "late_ok"):
            verified.append(codes[seq - 1])
    return items, kinds


def test_no_false_accept_over_10000_items(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=3, read_window=2, gate_at=8, max_consecutive_rejects=50)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, N, settings, spare=50)
        spares = [r[0] for r in line.ledger.conn.execute(
            "SELECT code FROM codes WHERE state = 'printed' ORDER BY id DESC LIMIT 50")]
        items, kinds = plan(random.Random(20261123), line.codes, spares)
        await line.run(items, N + settings.gate_at + settings.confirm_margin + 2)
        line.ledger.commit()

        assert line.station.alarms == [] and line.sim.model.running
        verdicts = {seq: j.verdict for seq, j in line.verdicts.items() if seq <= N}
        assert len(verdicts) == N
        wrong = {seq: (kinds[seq], v) for seq, v in verdicts.items()
                 if v is not (MIX[kinds[seq]][1] if kinds[seq] in MIX else Verdict.GOOD)}
        assert wrong == {}
        removed = {s for s in line.sim.model.rejected if s <= N}
        passed = {s for s in line.sim.model.passed if s <= N}
        defective = {s for s, k in kinds.items() if MIX.get(k, (0, Verdict.GOOD))[1] is not Verdict.GOOD}
        assert defective <= removed  # no false accept: every defect left at the gate
        assert passed == set(range(1, N + 1)) - removed
        assert all(verdicts[s] is Verdict.GOOD for s in passed)
        states = dict(line.ledger.conn.execute("SELECT code, state FROM codes").fetchall())
        assert all(states[line.codes[s - 1]] == CodeState.VERIFIED for s in passed)
        good_prints = [s for s, k in kinds.items() if k in ("good", "late_ok")]
        read_rate = sum(verdicts[s] is Verdict.GOOD for s in good_prints) / len(good_prints)
        assert read_rate >= 0.99
        assert set(kinds.values()) >= set(MIX)  # every defect kind really occurred
        await close_line(line, plc)

    asyncio.run(scenario())
