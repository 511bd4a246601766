"""The generic driver's protocol files: validation with file/line/key, handshake details, events."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable
from pathlib import Path

import pytest
import yaml

from agent.config import ConfigError, load_config
from drivers.framing import Deframer, Frame
from drivers.printers.base import (
    BadRecord,
    BufferFull,
    Capabilities,
    Fault,
    Nak,
    PrinterState,
    PrintEventKind,
    ProtocolError,
    Record,
    Settlement,
)
from drivers.printers.fifo import CoderKind
from drivers.printers.generic import GenericPrinter, GenericSettings
from drivers.printers.generic_codec import GenericCodec
from drivers.printers.generic_spec import PROTOCOL_DIR, load_protocol, request_regex
from drivers.sim.generic import GenericSim

ROOT = Path(__file__).resolve().parents[3]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (PROTOCOL_DIR / "example_stx.yaml").read_text()
    assert old in text
    path = tmp_path / "site.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("  mode: lockstep", "  mode: lockstep\n  speed: 3", "handshake.speed", "unknown key"),
        ('{send: "S",', '{send: "S{colour}",', "commands.status.send", "unknown template field"),
        ("expect: '^c(?P<count>\\d+)$'", "expect: '^c(?P<count>\\d+'", "commands.counters.expect", "bad regex"),
        ("kind: xor", "kind: crc99", "framing.checksum.kind", "Input should be"),
        ("  capacity: 64", "  capacity: 0", "coder.capacity", "greater than or equal to 1"),
    ],
)
def test_protocol_file_errors_name_file_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    path = broken(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_protocol(str(path))
    issue = info.value.issues[0]
    assert (issue.file, issue.key) == (str(path), key)
    assert message in issue.message
    assert issue.line == line_of(path, new.rsplit("\n", maxsplit=1)[-1].strip())


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('  tokens: ["\\x05", "\\x06", "\\x15", "\\x12"]', '  tokens: ["\\x06", "\\x15", "\\x12"]',
         "handshake.enq must also be listed in framing.tokens"),
        ('"B{index:03d}{text}"', '"B{text}"', "coder.kind is indexed_fifo but commands.push.send has no {index}"),
        ("match: '^p(?P<index>\\d{3})$'", "match: '^p\\d{3}$'", "needs a named group 'index'"),
        ('  end: "\\x03"', '  end: ""', "end delimiter or a length field"),
    ],
)
def test_protocol_files_that_cannot_work_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_protocol(str(broken(tmp_path, old, new)))


def test_line_config_validates_coder_sections_and_their_protocol_files(tmp_path: Path) -> None:
    example = (ROOT / "config" / "line.example.yaml").read_text()
    devices = (
        "devices:\n  coders:\n"
        "    cij1: {type: leibinger, url: 'tcp://10.0.0.21:3000', capacity: 256, trace: true}\n"
        "    cij2: {type: generic, url: /dev/ttyUSB0, baud: 38400, protocol_file: example_stx}\n"
    )
    shutil.copytree(ROOT / "config", tmp_path, dirs_exist_ok=True)  # keys etc. resolve beside the file
    good = tmp_path / "line.yaml"
    good.write_text(example.replace("devices: {}\n", devices))
    load_config(good)
    bad = tmp_path / "bad.yaml"
    bad.write_text(example.replace("devices: {}\n", devices.replace("example_stx", "nosuch").replace(
        "capacity: 256", "capacity: 1")))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    text = str(info.value)
    assert "devices.coders.cij1.capacity: Input should be greater than or equal to 2" in text
    assert "devices.coders.cij2.protocol_file" in text and "nosuch.yaml" in text


def test_request_templates_become_exact_request_patterns() -> None:
    rx = request_regex("=MR{index}\t{text}")
    m = rx.fullmatch("=MR12\tAB^C")
    assert m is not None and m.group("index") == "12" and m.group("text") == "AB^C"
    assert rx.fullmatch("=MRx\tAB") is None


class AsksAgain(GenericSim):
    """Answers DC2 ("send again") to the next `times` framed requests."""

    times = 0

    def handle(self, frame: Frame) -> bytes | None:
        if not frame.token and self.times:
            self.times -= 1
            return b"\x12"
        return super().handle(frame)


def test_retransmit_request_resends_then_gives_up_with_nak() -> None:
    async def main() -> None:
        sim = AsksAgain(protocol="example_stx")
        url = f"tcp://127.0.0.1:{await sim.serve_tcp(0)}"
        driver = GenericPrinter(GenericSettings(url=url, protocol_file="example_stx", timeout_s=0.3, retries=2))
        await driver.connect()
        try:
            sim.times = 2
            await driver.start()  # two DC2s, then the third send is taken
            assert sim.running
            sim.times = 3
            with pytest.raises(Nak, match="retransmit 3 times"):
                await driver.stop()
        finally:
            await driver.close()
            await sim.close()

    run(main())


def test_print_complete_messages_become_printed_events_without_polling() -> None:
    async def main() -> None:
        sim = GenericSim(protocol="example_stx", capacity=8)
        driver = GenericPrinter(GenericSettings(url=await sim.serve_pty(), protocol_file="example_stx", capacity=8))
        await driver.connect()
        try:
            events = aiter(driver.events())
            await driver.push([Record(s, f"T{s}") for s in (41, 42, 43)])
            await driver.start()
            sim.trigger(3)
            seqs = []
            while len(seqs) < 3:
                event = await asyncio.wait_for(anext(events), 5)
                if event.kind is PrintEventKind.PRINTED:
                    seqs.append(event.seq)
            assert seqs == [41, 42, 43]
            assert driver.capabilities.print_complete_events
        finally:
            await driver.close()
            await sim.close()

    run(main())


# --- the sources' own examples through the shipped protocol files ---------------------------------


def codec(name: str) -> GenericCodec:
    return GenericCodec(load_protocol(name))


def answer(c: GenericCodec, wire: bytes) -> Frame:
    items = Deframer(c.frame_spec).feed(wire)
    assert len(items) == 1 and isinstance(items[0], Frame), items
    return items[0]


def reply_to(c: GenericCodec, name: str, wire: bytes, **values: object) -> dict[str, str]:
    cmd = c.protocol.commands_by_name()[name]
    return c.parse(name, cmd, c.payload(name, cmd, values), answer(c, wire))


@pytest.mark.parametrize(
    ("payload", "check"),
    [(b"RA", b"93"), (b"RB", b"94"), (b"GA", b"88"), (b"Q", b"51")],  # Rev AD 3.16 examples; 4.5
)
def test_wsi_check_sequence_is_the_sum_of_the_hosts_packet(payload: bytes, check: bytes) -> None:
    cs = load_protocol("videojet_wsi").check_sequence
    assert cs is not None and cs.of(payload) == check


def test_wsi_commands_are_answered_by_their_own_check_sequence() -> None:
    c = codec("videojet_wsi")
    assert c.wire("start") == b"\x02O1\x03"
    assert c.wire("push", text="AB12") == b"\x02USERIAL\nAB12\x03"
    assert reply_to(c, "start", b"$80") == {}  # "O1" = 4F + 31
    with pytest.raises(Nak):
        reply_to(c, "start", b"!80")
    with pytest.raises(ProtocolError, match="line error"):
        reply_to(c, "start", b"$8D")  # the old driver's constant: not this packet's sum
    with pytest.raises(ProtocolError):
        reply_to(c, "counters", b"$88")  # a query answers with data, not a check


def test_wsi_queries_answer_a_packet_without_a_type_letter() -> None:
    c = codec("videojet_wsi")
    assert c.wire("counters") == b"\x02GA\x03"
    assert reply_to(c, "counters", b"\x0200000678\x03") == {"count": "00000678"}  # Rev AD 3.15 example 1
    assert reply_to(c, "identity", b"\x021.0.385W        \x03")["part_number"] == "1.0.385W"  # 3.10
    values = reply_to(c, "status", b"\x020000001\x03")  # 3.11: six hex error characters + alarm
    assert values == {"error": "000000", "state": "1"}
    assert c.read_status(values) == (PrinterState.PRINTING, frozenset())  # alarm bit 0: green
    assert c.read_status(reply_to(c, "status", b"\x020000002\x03"))[0] is PrinterState.IDLE  # amber
    assert c.read_status(reply_to(c, "status", b"\x028000004\x03"))[0] is PrinterState.FAULT


def test_wsi_record_text_is_printable_ascii_of_at_most_50_characters() -> None:
    c = codec("videojet_wsi")
    for text in ("A\nB", "A\x01B", "X" * 51, "Ä"):  # 3: 20h-7Fh, 0Ah separates fields; 3.6: 1-50 characters
        with pytest.raises(BadRecord):
            c.record_payload(Record(1, text), None)
    assert c.record_payload(Record(1, "X" * 50), None) == b"USERIAL\n" + b"X" * 50


@pytest.mark.parametrize(
    ("name", "values", "wire"),
    [
        ("select_job", {"job": "0012"}, "02 1f 20 31 30 30 31 32 03"),  # RX manual rev D 5.3.3-3
        ("push", {"text": "ABC"}, "02 10 31 41 42 43 03"),  # 5.3.2-5 (1), print item 1
        ("clear_fifo", {}, "02 1f 76 03"),  # 5.9.3-2 clear buffer
        ("restart", {}, "02 1f 77 03"),  # 5.9.3-2 restart printing
        ("start", {}, "02 1f 72 32 03"),  # 5.3.9 deflection voltage control (ON): ready
        ("stop", {}, "02 1f 72 33 03"),  # 5.3.9 deflection voltage control (OFF): standby
        ("clear_fault", {}, "02 1f 72 34 03"),  # 5.3.9 fault clear
        ("status", {}, "1b 23"),  # HitachiProtocol.cs BuildFetchString: ESC # sent bare
    ],
)
def test_hitachi_requests_match_the_manual(name: str, values: dict[str, object], wire: str) -> None:
    assert codec("hitachi_rx").wire(name, **values) == bytes.fromhex(wire)


def test_hitachi_answers_are_ack_nak_and_the_status_frame() -> None:
    c = codec("hitachi_rx")
    assert reply_to(c, "push", b"\x06", text="A") == {}
    with pytest.raises(BufferFull):  # 5.9.4: NAK = the buffer could not hold it
        reply_to(c, "push", b"\x15", text="A")
    values = reply_to(c, "status", b"\x0211120\x03")  # HPStatus.cs: online, receiving, ready, no alarm
    assert c.read_status(values) == (PrinterState.PRINTING, frozenset())
    assert c.read_status(reply_to(c, "status", b"\x0210120\x03"))[0] is PrinterState.FAULT  # off-line
    assert c.read_status(reply_to(c, "status", b"\x0211180\x03"))[0] is PrinterState.FAULT  # cover open


def test_leibinger_public_captures() -> None:
    c = codec("leibinger")
    values = reply_to(c, "status", b"^0=RS2\t6\t0\t0\t80\t0\r\n")  # serialine.py capture while printing
    assert c.read_status(values) == (PrinterState.PRINTING, frozenset())
    flagged = str((1 << 25) | 1015)  # bits 25-31 are flags: the error is 1015, buffer full
    assert c.read_status({"state": "5", "error": flagged}) == (PrinterState.IDLE, frozenset({Fault.BUFFER_FULL}))
    assert reply_to(c, "fifo", b"^0=SM256\t3\t12\t0\t0\t7\r") == {"capacity": "256", "depth": "3", "last_index": "12"}
    assert c.record_payload(Record(5, "A^B\\C"), 12) == b"=MR12\tA^B\\C"
    assert c.wire("push", index=12, text="A^B") == b"^0=MR12\tA\\^B\r"
    assert c.wire("select_job", job="LOT") == b"^0=JL\\FFSDISK\\JOBS\\LOT\r"  # Leibinger.cs jobLoadCMD


def test_markem_captures_with_trailing_cr_lf() -> None:
    c = codec("markem_ngpcl")
    assert c.wire("push", text="X1") == b"{~JU0||0|SERIAL|X1|}"
    assert c.wire("select_job", job="JOB.job") == b"{~JS0|JOB.job|0|}"
    stream = b"{~JS0|}\r\n{~JU0|}\r\n{~DS0|0|1|0|0|0|2|0|000000000|06|1|}\r\n"
    items = Deframer(c.frame_spec).feed(stream)
    assert all(isinstance(i, Frame) for i in items)
    payloads = [i.payload for i in items if isinstance(i, Frame)]
    assert payloads == [b"~JS0|", b"~JU0|", b"~DS0|0|1|0|0|0|2|0|000000000|06|1|"]
    assert c.read_status(reply_to(c, "status", b"{~DS0|0|1|0|0|0|2|0|000000000|06|1|}\r\n"))[0] is PrinterState.PRINTING
    assert c.read_status(reply_to(c, "status", b"{~DS0|0|0|0|0|0|2|0|000000000|11|1|}"))[0] is PrinterState.IDLE
    with pytest.raises(Nak):
        reply_to(c, "select_job", b"{~JS1|}\r\n", job="NOPE")
    guide = reply_to(c, "status", b"{~DS0|1|0|0|0|0|1|000000005|06|1|}")  # Usage Guide v25 5.11 example
    assert guide["state"] == "06"
    assert reply_to(c, "counters", b"{~CV0|TOTAL|000000123|BATCH|000000005|}\r\n") == {"count": "000000123"}
    assert c.wire("start") == b"{~ST|06|}" and c.wire("stop") == b"{~ST|04|}"  # 5.22
    with pytest.raises(BadRecord):
        c.record_payload(Record(1, "A|B"), None)


def test_each_file_states_what_its_coder_can_do() -> None:
    def caps(name: str) -> Capabilities:
        return GenericPrinter(GenericSettings(url="loop://", protocol_file=name)).capabilities

    wsi, hitachi, leibinger, markem = (caps(n) for n in ("videojet_wsi", "hitachi_rx", "leibinger", "markem_ngpcl"))
    assert (wsi.kind, wsi.fifo_capacity, wsi.counters, wsi.max_items_per_min) == (CoderKind.SINGLE_SLOT, 1, True, 120)
    assert (hitachi.kind, hitachi.fifo_capacity, hitachi.counters, hitachi.proves_flush) == (
        CoderKind.COUNTED_FIFO, 100, False, False)
    assert (leibinger.kind, leibinger.fifo_capacity, leibinger.indexed, leibinger.proves_flush) == (
        CoderKind.INDEXED_FIFO, 255, True, True)
    assert (markem.kind, markem.counters, markem.status) == (CoderKind.SINGLE_SLOT, True, True)


# --- settle(): what the driver can prove after emptying the coder's queue ---------------------------


async def settled(protocol: str, pushed: int, printed: int) -> tuple[Settlement, GenericSim]:
    sim = GenericSim(protocol=protocol, capacity=16)
    driver = GenericPrinter(GenericSettings(url=f"tcp://127.0.0.1:{await sim.serve_tcp(0)}", protocol_file=protocol,
                                            capacity=16, timeout_s=0.3))
    await driver.connect()
    try:
        for seq in range(1, pushed + 1):  # one by one: a single slot takes the next only after a print
            await driver.push([Record(seq, f"S{seq}")])
            if seq <= printed:
                await driver.start()
                sim.trigger(1)
                await driver.status()
        return await driver.settle(), sim
    finally:
        await driver.close()
        await sim.close()


def test_settle_proves_a_flush_where_the_file_says_the_coder_can() -> None:
    async def main() -> None:
        # example_stx: X empties the queue, Q's last printed index proves the rest never printed.
        result, sim = await settled("example_stx", pushed=5, printed=2)
        assert (result.status.last_printed, result.fates.flushed, result.fates.unknown) == (2, (3, 4, 5), ())
        assert sim.printed == ["S1", "S2"] and not sim.fifo
        # leibinger: !FF may keep the record loaded for the next print: that one stays in doubt.
        result, _ = await settled("leibinger", pushed=5, printed=2)
        assert (result.status.last_printed, result.fates.flushed, result.fates.unknown) == (2, (4, 5), (3,))
        # videojet_wsi: a user field cannot be emptied; what it holds is in doubt.
        result, _ = await settled("videojet_wsi", pushed=3, printed=2)
        assert (result.status.last_printed, result.fates.flushed, result.fates.unknown) == (2, (), (3,))

    run(main())


def variant(tmp_path: Path, base: str, old: str, new: str) -> Path:
    text = (PROTOCOL_DIR / f"{base}.yaml").read_text()
    assert old in text, old
    path = tmp_path / f"{base}-variant.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("base", "old", "new", "key", "message"),
    [
        ("videojet_wsi", "  capacity: 1\n", "  capacity: 4\n", "coder", "a single_slot coder has capacity 1"),
        ("videojet_wsi", "  kind: single_slot", "  kind: ring", "coder.kind", "Input should be"),
        ("videojet_wsi", "  encoding: hex\n", "  encoding: hex\n  colour: red\n", "check_sequence.colour",
         "unknown key"),
        ("videojet_wsi", '{send: "O1", reply: check}', '{send: "O1", reply: frame}', "commands.start",
         "needs `expect`"),
        ("markem_ngpcl", "{send: \"~ST|06|\", expect:", "{send: \"~ST|06|\", reply: none, expect:", "commands.start",
         "`expect` is for reply: frame"),
        ("leibinger", "  depth_excludes_next: true", "  depth_excludes_next: maybe", "coder.depth_excludes_next",
         "valid boolean"),
    ],
)
def test_new_keys_are_checked_with_file_line_and_key(
    tmp_path: Path, base: str, old: str, new: str, key: str, message: str
) -> None:
    path = variant(tmp_path, base, old, new)
    with pytest.raises(ConfigError) as info:
        load_protocol(str(path))
    issue = info.value.issues[0]
    assert (issue.file, issue.key) == (str(path), key)
    assert message in issue.message
    assert issue.line is not None


@pytest.mark.parametrize(
    ("base", "old", "new", "message"),
    [
        ("videojet_wsi", "check_sequence:", "unused_check_sequence:", "unknown key"),
        ("videojet_wsi", '    - {prefix: "!", size: 3}\n', "", "must be a framing.tagged prefix"),
    ],
)
def test_files_that_cannot_work_with_the_new_keys_are_refused(
    tmp_path: Path, base: str, old: str, new: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_protocol(str(variant(tmp_path, base, old, new)))


def test_a_push_nobody_answers_needs_a_fifo_query(tmp_path: Path) -> None:
    data = yaml.safe_load((PROTOCOL_DIR / "leibinger.yaml").read_text())
    del data["commands"]["fifo"]
    path = tmp_path / "no-sm.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"needs commands\.fifo to confirm"):
        load_protocol(str(path))
