"""Verdicts on simulated camera images: the sim camera renders what was printed (with seeded defects),
the real decoder and grader read it, the station judges it and rejects through the PLC simulator.

The suite runs a few hundred images; the 10,000-image run is soak-marked (the 10,000-item run with
reader strings is in test_station_10k.py and always runs).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from agent.ledger import CodeState
from agent.verify.decode import Decoder, DecoderSettings
from agent.verify.grade import Grader
from agent.verify.regions import Region
from agent.verify.station import VerifySettings, observe_image
from agent.verify.verdict import Observation, Verdict
from drivers.sim.camera import Defect, Defects, SimCameraSettings, render
from tests.verify.test_station import Item, close_line, open_line

CAM = SimCameraSettings()
MILD = [d for d in Defect if d not in (Defect.MISSING, Defect.WRONG_CODE)]
SETTINGS = VerifySettings(camera_at=3, read_window=1, gate_at=7, max_consecutive_rejects=50)


def mild(rng: random.Random) -> Defects:
    """A print of grade C or better: up to two defects at no more than half the readable limit."""
    d = Defects()
    for kind in rng.sample(MILD, rng.randint(0, 2)):
        d = d.merge(Defects.of(kind, rng.uniform(0.0, 0.5)))
    return d


# kind -> (the defects on the print, the verdict it must get); texts for mismatch etc. set per item
KINDS: dict[str, tuple[Defects | None, Verdict]] = {
    "good": (None, Verdict.GOOD),
    "mismatch": (Defects(), Verdict.MISMATCH),
    "duplicate": (Defects(), Verdict.DUPLICATE),
    "foreign": (Defects(), Verdict.FOREIGN),
    "low_grade": (Defects(contrast=0.3), Verdict.LOW_GRADE),
    "unreadable": (Defects(blur=2.5), Verdict.NO_READ),
    "not_printed": (Defects(), Verdict.MISSING_PRINT),  # the coder reported no print
    "blank": (Defects(missing=True), Verdict.MISSING_PRINT),  # reported printed, no ink on the item
}


async def run_images(tmp: Path, n: int, seed: int, share_defective: float) -> None:
    rng = random.Random(seed)
    decoder = Decoder(DecoderSettings(region=Region.of(CAM.region)))
    grader = Grader()
    line, plc = await open_line(tmp, n, SETTINGS, spare=20)
    spares = [r[0] for r in line.ledger.conn.execute(
        "SELECT code FROM codes WHERE state = 'printed' ORDER BY id DESC LIMIT 20")]
    kinds: dict[int, str] = {}
    prints: dict[int, tuple[str | None, Defects]] = {}
    plan: dict[int, Item] = {}
    defective = [k for k in KINDS if k != "good"]
    for seq in range(1, n + 1):
        kind = "good" if seq == 1 or rng.random() >= share_defective else defective[seq % len(defective)]
        kinds[seq] = kind
        code = line.codes[seq - 1]
        defects, _ = KINDS[kind]
        text: str | None = {"mismatch": spares[seq % len(spares)], "duplicate": line.codes[0],
                            "foreign": f"FOREIGN-{seq:06d}", "not_printed": None}.get(kind, code)
        prints[seq] = (text, defects if defects is not None else mild(rng))
        plan[seq] = Item(printed=kind != "not_printed")

    def camera(seq: int, item: Item) -> Observation:
        text, defects = prints[seq]
        image = render(text, defects, seed * 100_000 + seq, CAM).image
        return observe_image(seq, image, decoder, grader)

    await line.run(plan, n + SETTINGS.gate_at + SETTINGS.confirm_margin + 2, source=camera)
    verdicts = {s: j.verdict for s, j in line.verdicts.items() if s <= n}
    wrong = {s: (kinds[s], v) for s, v in verdicts.items() if kinds[s] != "good" and v is not KINDS[kinds[s]][1]}
    assert wrong == {}
    removed = {s for s in line.sim.model.rejected if s <= n}
    assert {s for s, k in kinds.items() if k != "good"} <= removed  # no false accept
    good = [s for s, k in kinds.items() if k == "good"]
    # Read = the printed text decoded. Some of these mild prints the grader scores below C (they are
    # then rejected as low grade, never accepted); the read rate is about the decoder, not the grader.
    read = sum(line.verdicts[s].read == prints[s][0] for s in good)
    assert read / len(good) >= 0.99, f"read rate on grade C-or-better prints: {read}/{len(good)}"
    assert all(line.ledger.state_of(line.codes[s - 1]) is CodeState.VERIFIED
               for s in line.sim.model.passed if s <= n)
    assert set(kinds.values()) == set(KINDS)
    await close_line(line, plc)


def test_every_verdict_on_simulated_images(tmp_path: Path) -> None:
    asyncio.run(run_images(tmp_path, 300, seed=7, share_defective=0.3))


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_no_false_accept_over_10000_simulated_images(tmp_path: Path) -> None:
    asyncio.run(run_images(tmp_path, 10_000, seed=11, share_defective=0.15))
