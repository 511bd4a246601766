"""Verification figures: image arrival -> verdict at 2,000 items/min, beside decode alone.

The line runs for real: the PLC simulator over Modbus/TCP, a ledger file (WAL, synchronous=FULL,
10 ms group commit), the station polling the counter every pitch. Each item's image is rendered before
the clock starts (the sim camera's rendering is not the line's cost); the clock runs from the image in
hand through decode, grade, ink check, verdict and, for a reject, the fire written to the PLC; the
ledger transaction with its EPCIS event follows on the station's writer thread and is timed apart,
until the verdict is committed and reported. Items are paced at 2,000/min (30 ms apart) so group commits,
polls and fires interleave as on a line. Baseline: the decode-only p99 on the same images, and raw
pyzbar on the same crops.

The machine these run on is shared, so beside wall-clock latencies each figure notes CPU time per item
(time.process_time, the whole process, cv2 worker threads included), which load barely moves. The grader
is also timed alone on the decoded symbols (verify.grade_p50_ms), against decode alone.
"""

from __future__ import annotations

import asyncio
import random
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
from pyzbar import pyzbar

from agent.config.regions import Region
from agent.config.verify import DecoderSettings, VerifySettings
from agent.epcis import LineContext
from agent.jobs import JobSpec, create_job, start_job
from agent.ledger import CodeState, Ledger
from agent.verify.decode import Decoder
from agent.verify.grade import Grader
from agent.verify.station import VerifyStation, observe_image
from bench import Figure
from drivers.cameras.base import Image
from drivers.plc import GateMode, LinePlc, PlcSettings
from drivers.sim.camera import Defect, Defects, SimCameraSettings, render
from drivers.sim.plc import PlcSim, example_map

RATE_PER_MIN = 2000
CAM = SimCameraSettings()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _images(codes: list[str], seed: int) -> list[Image]:
    rng = random.Random(seed)
    kinds = [d for d in Defect if d not in (Defect.MISSING, Defect.WRONG_CODE)]
    out = []
    for i, code in enumerate(codes):
        if rng.random() < 0.05:
            d = Defects(missing=True)
        elif rng.random() < 0.05:
            d = Defects(wrong_text=f"FOREIGN-{i:06d}")
        else:
            d = Defects.of(rng.choice(kinds), rng.uniform(0.0, 0.5)) if rng.random() < 0.5 else Defects()
        out.append(render(code, d, seed + i, CAM).image)
    return out


def _ledger(path: Path, n: int) -> tuple[Ledger, list[str]]:
    ledger = Ledger(path)
    with ledger.atomic(durable=True) as conn:
        cur = conn.execute(
            "INSERT INTO packages(package_id, issuer, level, count, code_format, body_sha256, source, signed,"
            " imported_at) VALUES ('bench', 'bench', 'item', ?, 'raw', '-', 'txt', 0, 0)", (n,))
        conn.executemany("INSERT INTO codes(code, level, package) VALUES (?, 'item', ?)",
                         [(f"HTTPS://QR.EXAMPLE.CN/Q/{i:08d}", cur.lastrowid) for i in range(n)])
    job = create_job(ledger, JobSpec(name="bench", gtin="09506000134352", product_name="Water", lot="L1",
                                     target_qty=n))
    start_job(ledger, job)
    codes = ledger.allocate(job, "item", n)
    ledger.transition_many(codes, CodeState.SENT, expect=CodeState.ALLOCATED)
    ledger.transition_many(codes, CodeState.PRINTED, expect=CodeState.SENT)
    ledger.commit()
    return ledger, codes


async def _line(
    images: list[Image], codes: list[str], ledger: Ledger, grader: Grader | None
) -> tuple[list[float], list[float], list[float]]:
    """Per item: ms to the verdict (decided, reject fired), ms until it was committed and reported
    (on_verdict), and CPU ms the process spent from the image to the verdict."""
    settings = VerifySettings(camera_at=3, read_window=1, gate_at=8, max_consecutive_rejects=1000)
    sim = PlcSim(example_map(), port=_port(), camera_at=3, gate_at=8)
    await sim.start()
    plc = LinePlc(PlcSettings(url=sim.url, timeout_s=1.0, registers=example_map(), gate=GateMode.REJECT))
    await plc.open()
    await plc.run_line(True)
    station = VerifyStation(ledger, plc, settings, line=LineContext("urn:epc:id:sgln:0614141.00777.L1", None))
    await station.start()
    decoder = Decoder(DecoderSettings(region=Region.of(CAM.region)))
    loop = asyncio.get_running_loop()
    period = 60.0 / RATE_PER_MIN
    next_at = loop.time()
    latencies: list[float] = []
    cpu: list[float] = []
    started: dict[int, float] = {}
    reported: dict[int, float] = {}
    station.on_verdict.append(lambda item, _j: reported.__setitem__(item.seq, time.perf_counter()))
    n = len(images)
    for step in range(1, n + settings.camera_at + 1):
        next_at += period
        await asyncio.sleep(max(0.0, next_at - loop.time()))  # the line's pace
        sim.model.step()
        if step <= n:
            station.printed(step, codes[step - 1])
        await station.tick()
        seq = step - settings.camera_at
        if 1 <= seq <= n:
            c0 = time.process_time()
            started[seq] = t0 = time.perf_counter()  # the image is in hand
            obs = observe_image(seq, images[seq - 1], decoder, grader)
            await station.observe(obs)  # returns once judged and, for a reject, fired
            latencies.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    await station.flush()
    station.close()
    await plc.close()
    await sim.close()
    recorded = [(reported[seq] - t0) * 1000 for seq, t0 in started.items() if seq in reported]
    return latencies, recorded, cpu


def _grade_alone(images: list[Image], decoder: Decoder) -> tuple[list[float], list[float], list[float]]:
    """Wall ms and CPU ms of Grader.grade per decoded symbol, and decode wall ms per image, same images."""
    grader = Grader()
    wall, cpu, decode_ms = [], [], []
    for image in images:
        t0 = time.perf_counter()
        result = decoder.decode(image)
        decode_ms.append((time.perf_counter() - t0) * 1000)
        for symbol in result.symbols[:1]:
            c0, t0 = time.process_time(), time.perf_counter()
            grader.grade(image, symbol)
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu, decode_ms


def run(quick: bool) -> dict[str, Figure]:
    n = 400 if quick else 2000
    runs: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for name, grader in (("graded", Grader()), ("ungraded", None)):
        with tempfile.TemporaryDirectory() as tmp:
            ledger, codes = _ledger(Path(tmp) / "ledger.db", n)
            images = _images(codes, 2026)
            runs[name] = asyncio.run(_line(images, codes, ledger, grader))
            ledger.close()
    (latencies, recorded, cpu), (ungraded, _, ungraded_cpu) = runs["graded"], runs["ungraded"]
    decoder = Decoder(DecoderSettings(region=Region.of(CAM.region)))
    grade_ms, grade_cpu, grade_decode_ms = _grade_alone(images, decoder)
    decode_ms, zbar_ms = [], []
    region = Region.of(CAM.region)
    for image in images:
        t0 = time.perf_counter()
        decoder.decode(image)
        decode_ms.append((time.perf_counter() - t0) * 1000)
        crop = region.crop(image)
        t0 = time.perf_counter()
        pyzbar.decode(crop, symbols=[pyzbar.ZBarSymbol.QRCODE])
        zbar_ms.append((time.perf_counter() - t0) * 1000)
    p50, p99 = _p(latencies, 50), _p(latencies, 99)
    return {
        "verify.ungraded_p99_ms": Figure(
            _p(ungraded, 99), "ms", _p(decode_ms, 99), 5.0,
            f"as verify.p99_ms without the print-quality grader (decode, verdict, PLC fire); "
            f"p50 {_p(ungraded, 50):.2f} ms; CPU per item p50 {_p(ungraded_cpu, 50):.2f} ms "
            f"p99 {_p(ungraded_cpu, 99):.2f} ms; shows what the grader costs",
            higher_is_better=False,
        ),
        "verify.p99_ms": Figure(
            p99, "ms", _p(decode_ms, 99), 5.0,
            f"image in hand -> decoded, graded, judged, reject fired; {n} items at {RATE_PER_MIN}/min, "
            f"p50 {p50:.2f} ms, max {max(latencies):.2f} ms; CPU per item p50 {_p(cpu, 50):.2f} ms "
            f"p99 {_p(cpu, 99):.2f} ms; until committed and reported (writer thread, group commit): "
            f"p99 {_p(recorded, 99):.2f} ms; baseline: decode-only p99 on the same images",
            higher_is_better=False,
        ),
        "verify.cpu_ms_per_item": Figure(
            _p(cpu, 50), "ms", _p(ungraded_cpu, 50), None,
            f"CPU (process_time) per item, image in hand -> verdict, graded; p99 {_p(cpu, 99):.2f} ms; "
            "baseline: the same line ungraded; less noisy than wall time on a shared machine",
            higher_is_better=False,
        ),
        "verify.grade_p50_ms": Figure(
            _p(grade_ms, 50), "ms", _p(grade_decode_ms, 50), 1.0,
            f"Grader.grade alone on {len(grade_ms)} decoded QR symbols (640x480 frames, the verify mix); "
            f"p99 {_p(grade_ms, 99):.2f} ms; CPU p50 {_p(grade_cpu, 50):.3f} ms p99 {_p(grade_cpu, 99):.3f} ms; "
            "baseline: decode p50 on the same frames",
            higher_is_better=False,
        ),
        "verify.decode_p99_ms": Figure(
            _p(decode_ms, 99), "ms", _p(zbar_ms, 99), None,
            "zxing-cpp crop-first decoder with fallbacks on the same images; baseline: raw pyzbar QR on the crop",
            higher_is_better=False,
        ),
    }
