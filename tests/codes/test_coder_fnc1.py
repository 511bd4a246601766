"""FNC1 reaches each coder exactly as its `gs1_fnc1` setting says: the record text (a table written out
by hand), the bytes on the wire (a TCP relay between driver and simulator keeps what the host sent),
what the simulated coder stored and printed, and the print station's refusal when the setting is unset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.codes.gs1 import GS1Error
from agent.codes.templates import Fnc1NotSet, coder_renderer, renderer
from agent.config.model import LineConfig, TemplateConfig, TemplateKind
from agent.config.stations import StationConfig
from agent.jobs import JobSpec, create_job, get_job, start_job
from agent.ledger import Ledger
from agent.line.alarms import AlarmBoard
from agent.line.printing import PrintState, PrintStation
from confkit.loader import ConfigError
from drivers.printers.base import Printer, Record
from drivers.printers.hitachi import HitachiBuffer, HitachiSettings
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.printers.markem import MarkemNgpcl, MarkemSettings
from drivers.printers.modbus_marker import ModbusMarker, ModbusMarkerSettings
from drivers.printers.videojet import VideojetSettings, VideojetWsi
from drivers.printers.videojet_codec import VideojetModel
from drivers.sim.hitachi import HitachiSim
from drivers.sim.leibinger import LeibingerSim
from drivers.sim.markem import MarkemSim
from drivers.sim.modbus_marker import ModbusMarkerSim
from drivers.sim.videojet import VideojetSim
from tests.helpers import make_line, seed_codes

GS = "\x1d"
EL = TemplateConfig(kind=TemplateKind.ELEMENT_STRING)
PRINTED = renderer(EL, gtin="09506000134352", lot="LOT42", expiry=date(2026, 12, 31))

# spelling, FNC1 first -> the record text for code C1, written out by hand
TABLE: list[tuple[str, bool, str]] = [
    (GS, False, "0109506000134352" "17261231" "10LOT42\x1d" "21C1"),
    ("~1", False, "0109506000134352" "17261231" "10LOT42~1" "21C1"),
    ("{FNC1}", False, "0109506000134352" "17261231" "10LOT42{FNC1}" "21C1"),
    ("<FNC1>", True, "<FNC1>0109506000134352" "17261231" "10LOT42<FNC1>" "21C1"),
    (GS, True, "\x1d0109506000134352" "17261231" "10LOT42\x1d" "21C1"),
]


@pytest.mark.parametrize(("spelling", "first", "expected"), TABLE)
def test_the_record_text_puts_fnc1_where_the_coder_expects_it(spelling: str, first: bool, expected: str) -> None:
    assert PRINTED("C1") == "0109506000134352" "17261231" "10LOT42\x1d" "21C1"  # what the camera compares
    assert coder_renderer(EL, PRINTED, coder="c1", fnc1=spelling, fnc1_first=first)("C1") == expected


def test_other_templates_go_to_the_coder_as_printed() -> None:
    dl = TemplateConfig(kind=TemplateKind.DIGITAL_LINK, domain="id.example.com")
    printed = renderer(dl, gtin="09506000134352", lot=None, expiry=None)
    assert coder_renderer(dl, printed, coder="c1", fnc1=None)("C1") == "https://id.example.com/01/09506000134352/21/C1"


def test_a_gs1_job_on_a_coder_without_the_setting_is_refused_naming_the_key() -> None:
    with pytest.raises(Fnc1NotSet, match=r"devices\.coders\.c1\.gs1_fnc1"):
        coder_renderer(EL, PRINTED, coder="c1", fnc1=None)


def test_data_holding_the_spelling_is_refused_not_sent() -> None:
    odd = renderer(EL, gtin="09506000134352", lot="A<FNC1>", expiry=None)  # < > are GS1 set 82 characters
    with pytest.raises(GS1Error, match="FNC1 spelling"):
        coder_renderer(EL, odd, coder="c1", fnc1="<FNC1>")("C1")


# ---- the wire ---------------------------------------------------------------------------------------


class Tap:
    """A TCP relay between a driver and its simulator that keeps every byte the host sent."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.sent = bytearray()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(4096):
                    if keep:
                        self.sent += data
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for task in (pump(reader, up_w, True), pump(up_r, writer, False)):
            t = asyncio.create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@asynccontextmanager
async def tapped(sim: Any, make: Callable[[int], Printer]) -> AsyncIterator[tuple[Printer, Tap]]:
    port = await sim.serve_tcp(0)
    tap = Tap(port)
    driver = make(await tap.start())
    try:
        await driver.connect()
        yield driver, tap
    finally:
        await driver.close()
        await tap.close()
        await sim.close()


URL = "tcp://127.0.0.1:{}"
S: dict[str, Any] = {"timeout_s": 1.0, "retries": 1}
# coder -> (simulator, driver on a port, the spelling set, the bytes that must be on the wire): the
# bytes are the code's data as each protocol carries a record's text, written out by hand.
WIRE: dict[str, tuple[Callable[[], Any], Callable[[str | None, int], Printer], str, bytes]] = {
    "videojet": (VideojetSim, lambda f, p: VideojetWsi(VideojetSettings(
        url=URL.format(p), model=VideojetModel.V1620, gs1_fnc1=f, **S)), "~1",
        b"10LOT42~121C1"),
    "markem": (MarkemSim, lambda f, p: MarkemNgpcl(MarkemSettings(url=URL.format(p), gs1_fnc1=f, **S)),
               "<FNC1>", b"|SERIAL|010950600013435217261231" b"10LOT42<FNC1>21C1|"),
    "leibinger": (lambda: LeibingerSim(capacity=16), lambda f, p: Leibinger(LeibingerSettings(
        url=URL.format(p), capacity=16, confirm_s=0.5, gs1_fnc1=f, **S)), GS,
        b"\t010950600013435217261231" b"10LOT42\x1d21C1\r"),  # =MR<index><TAB><text><CR>; GS is not escaped
    "hitachi": (lambda: HitachiSim(capacity=8, restart_delay_s=0.05), lambda f, p: HitachiBuffer(HitachiSettings(
        url=URL.format(p), restart_settle_s=0.05, gs1_fnc1=f, **S)), "{FNC1}",
        b"\x10\x31" b"010950600013435217261231" b"10LOT42{FNC1}21C1"),  # DLE + item 1 (31H) + text
    # Two ASCII characters per holding register, high byte first: the text's bytes in order on the wire.
    "modbus_marker": (lambda: ModbusMarkerSim(ModbusMarkerSettings(text_registers=24)),
                      lambda f, p: ModbusMarker(ModbusMarkerSettings(port=p, text_registers=24, timeout_s=1.0)),
                      GS, b"010950600013435217261231" b"10LOT42\x1d21C1"),
}


@pytest.mark.parametrize("coder", WIRE)
def test_the_bytes_sent_carry_fnc1_as_the_setting_says(coder: str) -> None:
    make_sim, make_driver, spelling, on_wire = WIRE[coder]

    async def scenario() -> None:
        sim = make_sim()
        async with tapped(sim, lambda port: make_driver(spelling, port)) as (driver, tap):
            settings: Any = getattr(driver, "settings", None) or driver.cfg
            assert settings.gs1_fnc1 == spelling  # the modbus marker's default (our map: GS)
            text = coder_renderer(EL, PRINTED, coder=coder, fnc1=settings.gs1_fnc1)("C1")
            await driver.push([Record(1, text)])
            await driver.start()
            assert sim.trigger(1) == 1
            assert sim.printed == [text]
        assert on_wire in bytes(tap.sent)
        if spelling != GS:
            assert GS.encode() not in bytes(tap.sent)

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.parametrize(("model", "options", "phrase"), [
    (VideojetSettings, {"url": "x", "model": "1620", "gs1_fnc1": GS}, "20h-7Fh"),
    (MarkemSettings, {"url": "x", "gs1_fnc1": "~1"}, "NGPCL control characters"),
    (MarkemSettings, {"url": "x", "gs1_fnc1": "{FNC1}"}, "NGPCL control characters"),
    (HitachiSettings, {"url": "x", "gs1_fnc1": GS}, "printable ASCII"),
    (LeibingerSettings, {"url": "x", "gs1_fnc1": "\t"}, "TAB, CR or LF"),
])
def test_a_spelling_the_protocol_cannot_carry_is_refused(model: Any, options: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ValidationError, match=phrase):
        model.model_validate(options)


def test_config_check_names_the_coder_and_the_key(tmp_path: Path) -> None:
    from agent.config.load import load_config

    cfg = make_line(tmp_path)
    cfg.write_text(cfg.read_text() + 'devices:\n  coders:\n    cij1: {type: videojet_wsi, url: "tcp://127.0.0.1:1", '
                   'model: "1620", gs1_fnc1: "\\x1d"}\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "devices.coders.cij1.gs1_fnc1" in str(err.value) and "20h-7Fh" in str(err.value)


# ---- the print station ------------------------------------------------------------------------------


def test_the_print_station_refuses_a_gs1_job_without_the_setting_and_feeds_it_with_one(tmp_path: Path) -> None:
    cfg = LineConfig.model_validate({"site": {"id": "s"}, "line": {"id": "L1"},
                                     "security": {"cloud_public_key": "k.pem"},
                                     "templates": {"gs1dm": {"kind": "element_string"}}})
    st = StationConfig.model_validate({"type": "print", "coder": "c1", "feed": {"target_depth": 3, "poll_ms": 10}})
    ledger = Ledger(tmp_path / "ledger.db")
    seed_codes(ledger, [f"C{i}" for i in range(1, 11)])
    job_id = create_job(ledger, JobSpec(name="WO-1", gtin="09506000134352", product_name="Water", lot="LOT42",
                                        target_qty=10, template="gs1dm", expiry=date(2026, 12, 31)))
    start_job(ledger, job_id)
    job = get_job(ledger, job_id)

    async def run(spelling: str | None) -> tuple[PrintStation, list[str], int]:
        sim = LeibingerSim(capacity=16)
        port = await sim.serve_tcp(0)
        printer = Leibinger(LeibingerSettings(url=URL.format(port), capacity=16, confirm_s=0.5, gs1_fnc1=spelling,
                                              timeout_s=1.0, retries=1))
        board = AlarmBoard()
        station = PrintStation("printer", st, cfg, ledger, board, printer)
        stop = asyncio.Event()
        task = asyncio.create_task(station.run(job, stop))
        for _ in range(1000):  # up to 20 s on a loaded machine: a hang detector, not a timing assertion
            if any(a.key == "gs1_fnc1" for a in board.active) or station.primed.is_set():
                break
            await asyncio.sleep(0.02)
        held = [r.text for r in sim.fifo]  # before the stop: a stop flushes the coder's FIFO
        stop.set()
        await asyncio.wait_for(task, 60)
        await printer.close()
        await sim.close()
        return station, held, sim.requests

    async def scenario() -> None:
        refused, held, requests = await run(None)
        assert refused.state is PrintState.STOPPED and not refused.primed.is_set()
        assert requests == 0 and held == []  # nothing was sent: the coder was not even opened
        assert [(a.source, a.key) for a in refused.board.active] == [("c1", "gs1_fnc1")]
        fed, held, _ = await run("{FNC1}")
        assert fed.primed.is_set()
        assert held and all(t.startswith("0109506000134352" "17261231" "10LOT42{FNC1}21C") for t in held)

    try:
        asyncio.run(scenario())
    finally:
        ledger.close()
