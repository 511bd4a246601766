"""Keyence SR byte tables from the manuals' examples, for the driver's codec and for the simulator.

Sources: KEYENCE "SR-750 Series User's Manual" 8-1 (the `LON` -> `OK,LON` -> read data example;
none/CR and STX/ETX; ESC clears the receive buffer; LF not echoed; 10 s character interval) and 8-2
(`LON`/`LOFF`, `OK,...`/`ER,...,ee`); "N-410 User's Manual" 5-3 (`ERROR`, `OVER`); the SR-1000 error
table in brianteachman/mqtt_serial_scanner_nodes sr1000.py.
"""

from __future__ import annotations

import time

import pytest

from drivers.readers.base import ACK, Ack, ReaderProtocolError, ReaderStatusError
from drivers.readers.keyence import ERRORS, Framing, KeyenceSettings, KeyenceSR, encode_command, take_frame
from drivers.sim.readers import KeyenceSim, Outcome


def reader(**kw: object) -> KeyenceSR:
    return KeyenceSR(KeyenceSettings(url="tcp://127.0.0.1:1", **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(("framing", "clear", "wire"), [
    (Framing.CR, False, b"LON\r"),  # sr1000.py TRIGGER_INPUT_ON
    (Framing.CR, True, b"\x1bLON\r"),
    (Framing.STX_ETX, False, b"\x02LON\x03"),
    (Framing.STX_ETX, True, b"\x1b\x02LON\x03"),
])
def test_the_trigger_encodes_in_either_framing(framing: Framing, clear: bool, wire: bytes) -> None:
    assert encode_command("LON", framing, clear=clear) == wire
    assert reader(framing=framing, clear_with_esc=clear).encode_trigger() == wire


def test_loff_encodes_as_in_the_client() -> None:
    assert encode_command("LOFF", clear=False) == b"LOFF\r"  # sr1000.py TRIGGER_INPUT_OFF


@pytest.mark.parametrize(("text", "meaning"), [
    ("OK,LON", ACK),  # 8-1 example, step (2)
    ("OK,LOFF", ACK),
    ("C0001", "C0001"),  # step (4): the read data
    ("ERROR", None),  # the reading-error string (N-410 5-3: default, keep it)
    ("0109506000134352\x1d21ABC", "0109506000134352\x1d21ABC"),
])
def test_frames_mean_what_the_manual_says(text: str, meaning: str | Ack | None) -> None:
    assert reader().interpret(text.encode("latin-1")) == meaning


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_error_responses_name_the_code_from_the_table(code: int) -> None:
    with pytest.raises(ReaderStatusError, match="LON refused") as err:
        reader().interpret(b"ER,LON,%02d" % code)
    assert err.value.code == code
    assert ERRORS[code] in str(err.value)


@pytest.mark.parametrize("frame", [b"ER,LON,2", b"ER,LON", b"ER,LON,xx", b"OVER"])
def test_malformed_errors_and_overflow_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ReaderProtocolError):
        reader().interpret(frame)


@pytest.mark.parametrize(("stream", "frames", "rest"), [
    (b"OK,LON\rC1\r", [b"OK,LON", b"C1"], b""),
    (b"C1\r\nC2\r\n", [b"C1", b"C2"], b""),  # a CR LF data terminator still frames
    (b"C1", [], b"C1"),
    (b"\x02OK,LON\x03\x02C1\x03", [b"OK,LON", b"C1"], b""),
    (b"\x02OK,LON\x03C1\r", [b"OK,LON", b"C1"], b""),  # STX/ETX command, data setting none/CR
    (b"OK,LON\r\x02C1\x03", [b"OK,LON", b"C1"], b""),
    (b"\x02C1\rX\x03", [b"C1\rX"], b""),  # inside STX..ETX a CR is data
    (b"noise\x02C1\x03", [b"C1"], b""),  # bytes before STX are dropped
])
def test_frames_are_cut_at_either_terminator(stream: bytes, frames: list[bytes], rest: bytes) -> None:
    buf = bytearray(stream)
    got = []
    while (frame := take_frame(buf)) is not None:
        got.append(frame)
    assert got == frames
    assert bytes(buf) == rest


def test_an_etx_without_stx_is_a_protocol_error() -> None:
    with pytest.raises(ReaderProtocolError, match="without STX"):
        reader(framing=Framing.STX_ETX).next_frame(bytearray(b"C1\x03"))


@pytest.mark.parametrize(("sim_kw", "results", "sent", "answer"), [
    ({}, ["C1"], b"LON\r", b"OK,LON\rC1\r"),  # 8-1 example
    ({}, ["C1"], b"\x02LON\x03", b"\x02OK,LON\x03C1\r"),  # response framed like the command
    ({"stx_etx": True}, ["C1"], b"\x02LON\x03", b"\x02OK,LON\x03\x02C1\x03"),  # data header STX/ETX
    ({}, ["C1"], b"LON\r\n", b"OK,LON\rC1\r"),  # LF after the command is not echoed
    ({}, ["C1"], b"noise\x1bLON\r", b"OK,LON\rC1\r"),  # ESC clears the receive buffer
    ({}, [Outcome.NO_READ], b"LON\r", b"OK,LON\rERROR\r"),
    ({"no_read": "NG"}, [Outcome.NO_READ], b"LON\r", b"OK,LON\rNG\r"),
    ({"ack": False}, ["C1"], b"LON\r", b"C1\r"),  # SR-600 compatible: no response to LON
    ({}, [Outcome.ERROR], b"LON\r", b"ER,LON,20\r"),
    ({}, ["C1"], b"LON,01\r", b"OK,LON\rC1\r"),  # with a parameter bank number
    ({}, ["C1"], b"LON,99\r", b"ER,LON,02\r"),
    ({}, ["C1"], b"LON,01,02\r", b"ER,LON,01\r"),
    ({}, [], b"LOFF\r", b"OK,LOFF\r"),
    ({}, [], b"XYZ\r", b"ER,XYZ,00\r"),
    ({}, [Outcome.SILENCE], b"LON\r", b""),
])
def test_the_simulator_answers_as_the_manual_says(sim_kw: dict[str, object], results: list[str | Outcome],
                                                  sent: bytes, answer: bytes) -> None:
    sim = KeyenceSim(**sim_kw)  # type: ignore[arg-type]
    sim.results.extend(results)
    assert sim.feed(sent) == answer


def test_two_commands_in_one_chunk_are_both_answered_and_esc_only_clears_what_precedes_it() -> None:
    sim = KeyenceSim()
    sim.results.extend(["C1", "C2"])
    assert sim.feed(b"LON\r\x1bLON\r") == b"OK,LON\rC1\rOK,LON\rC2\r"
    assert sim.commands == [b"LON", b"LON"]


def test_characters_too_far_apart_are_dropped() -> None:
    sim = KeyenceSim(char_timeout_s=0.05)
    sim.results.append("C1")
    assert sim.feed(b"LO") == b""
    time.sleep(0.2)  # a gap longer than the character interval (10 s on the reader)
    assert sim.feed(b"N\r") == b"ER,N,00\r"
