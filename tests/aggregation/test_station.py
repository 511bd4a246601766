"""Stations end to end on real parts: pack-top images through the real decoder, case labels printed
by the ZPL driver to its simulator over TCP and read back, SSCCs minted once, rejects fired."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zxingcpp

from agent.aggregation.model import Reason
from agent.aggregation.parents import ParentCodes, mint_sscc
from agent.aggregation.setup import print_with
from agent.aggregation.station import AggregationStation, PackOutcome, StreamBatcher, codes_in_image
from agent.codes.gs1 import make_sscc
from agent.config.model import SsccConfig
from agent.jobs import get_job
from agent.ledger import Ledger
from agent.verify.decode import Decoder, DecoderSettings
from drivers.labels.zpl import ZplLabelPrinter
from drivers.sim.zpl import ZplSimulator
from tests.aggregation.conftest import Floor, make_floor

LABELS = Path(__file__).resolve().parents[2] / "config" / "labels"
SSCC = SsccConfig(extension_digit=0, company_prefix="0614141", serial_from=1, serial_to=999)


def pack_top(codes: Sequence[str]) -> np.ndarray:
    """A case seen from above: one QR per bottle cap on a grey tray."""
    img = np.full((260, 130 * max(len(codes), 1) + 20), 200, dtype=np.uint8)
    for i, code in enumerate(codes):
        sym = np.asarray(zxingcpp.create_barcode(code, zxingcpp.BarcodeFormat.QRCode).to_image(scale=4))
        img[20: 20 + sym.shape[0], 20 + 130 * i: 20 + 130 * i + sym.shape[1]] = sym
    return img


class Gate:
    """Stands in for the PLC's reject output: records which pack was rejected and why."""

    def __init__(self) -> None:
        self.fired: list[tuple[str, list[Reason]]] = []

    async def __call__(self, pack: str, reasons: Sequence[Reason]) -> None:
        self.fired.append((pack, list(reasons)))


def test_box_from_a_pack_top_image_and_the_reject_for_a_short_box(tmp_path: Path) -> None:
    floor = make_floor(tmp_path / "l.db")
    gate, seen = Gate(), list[PackOutcome]()
    plan = floor.agg.plan("box")
    station = AggregationStation(floor.agg, plan, ParentCodes(floor.ledger, plan, floor.job), gate, floor.job,
                                 notify=seen.append)
    decoder = Decoder(DecoderSettings(expect=2))

    async def main() -> None:
        kids = codes_in_image(decoder, pack_top(floor.items[:2]), plan.count)
        assert sorted(kids) == floor.items[:2]
        ok = await station.handle(kids, scanned_parent="B00000")
        assert ok.accepted and ok.parent == "B00000"
        short = codes_in_image(decoder, pack_top(floor.items[2:3]), plan.count)
        bad = await station.handle(short, scanned_parent="B00001")
        assert bad.reasons == (Reason.TOO_FEW,)
        assert "1 item codes, a box holds 2" in bad.message

    asyncio.run(asyncio.wait_for(main(), 30))
    assert gate.fired == [("B00001", [Reason.TOO_FEW])]
    assert [o.accepted for o in seen] == [True, False]
    assert floor.agg.children_of("B00001") == []
    floor.ledger.close()


def _packed_boxes(floor: Floor, n: int) -> list[str]:
    for i in range(n):
        floor.agg.pack("box", floor.boxes[i], floor.items[2 * i: 2 * i + 2])
    return floor.boxes[:n]


def test_case_label_printed_read_back_and_a_smudged_one_voided_for_a_fresh_code(tmp_path: Path) -> None:
    floor = make_floor(tmp_path / "l.db")
    boxes = _packed_boxes(floor, 6)
    gate = Gate()
    sim = ZplSimulator(smudge_next=1)

    async def main() -> None:
        port = await sim.serve_tcp()
        printer = ZplLabelPrinter(ZplLabelPrinter.Settings(url=f"tcp://127.0.0.1:{port}",
                                                           template=LABELS / "case.zpl"))

        send = print_with(printer, get_job(floor.ledger, floor.job))

        async def print_label(code: str, level: str) -> None:
            sim.printed.clear()
            await send(code, level)
            await asyncio.wait_for(sim.printed.wait(), 5)

        async def read_label() -> str | None:
            found = [b.text for b in zxingcpp.read_barcodes(sim.labels[-1])
                     if b.format == zxingcpp.BarcodeFormat.DataMatrix]
            return found[0] if found else None

        plan = floor.agg.plan("case")
        parents = ParentCodes(floor.ledger, plan, floor.job, print_label=print_label, read_label=read_label)
        station = AggregationStation(floor.agg, plan, parents, gate, floor.job)
        try:
            first = await station.handle(boxes[:3])
            second = await station.handle(boxes[3:5])  # too few: rejected before any label is printed
        finally:
            await printer.close()
            await sim.close()
        assert first.accepted and first.parent == "C00001"
        assert second.reasons == (Reason.TOO_FEW,)

    asyncio.run(asyncio.wait_for(main(), 30))
    assert len(sim.formats) == 2  # the smudged label and its fresh replacement; none for the short case
    assert "Lot LOT1  case" in [f.data for f in sim.formats[1].fields]
    assert floor.ledger.state_of("C00000") == "voided"  # never reprinted: C00001 went on the case
    assert floor.agg.children_of("C00001") == boxes[:3]
    assert gate.fired == [("case#2", [Reason.TOO_FEW])]
    floor.ledger.close()


def test_sscc_minted_once_even_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    floor = make_floor(path)
    first = [mint_sscc(floor.ledger, SSCC, floor.job) for _ in range(3)]
    floor.ledger.close()
    with Ledger(path) as ledger:
        again = mint_sscc(ledger, SSCC, None)
        pkg = ledger.conn.execute(
            "SELECT p.source, p.count, COUNT(c.id) FROM packages p JOIN codes c ON c.package = p.id"
            " WHERE p.source = 'minted'").fetchone()
    assert first == [make_sscc(0, "0614141", n) for n in (1, 2, 3)]
    assert again == make_sscc(0, "0614141", 4)
    assert tuple(pkg) == ("minted", 4, 4)


def test_pallet_from_minted_sscc_and_stream_batching(tmp_path: Path) -> None:
    floor = make_floor(tmp_path / "l.db")
    batcher = StreamBatcher(2)
    packs = [b for code in floor.items[:12] if (b := batcher.push(code)) is not None]
    assert len(packs) == 6 and batcher.remainder() == []
    for i, kids in enumerate(packs):
        floor.agg.pack("box", floor.boxes[i], kids)
    floor.agg.pack("case", "C00000", floor.boxes[:3])
    floor.agg.pack("case", "C00001", floor.boxes[3:6])
    plan = floor.agg.plan("pallet")
    gate = Gate()
    station = AggregationStation(floor.agg, plan, ParentCodes(floor.ledger, plan, floor.job, sscc=SSCC), gate,
                                 floor.job)
    out = asyncio.run(station.handle(["C00000", "C00001"]))
    assert out.accepted and out.parent == make_sscc(0, "0614141", 1)
    assert floor.ledger.state_of(out.parent) == "verified"
    assert gate.fired == []
    floor.ledger.close()
