"""DMCC byte tables from Cognex's own examples, for the driver's codec and for the simulator.

Sources: "DataMan Communications and Programming Guide" 5.7.0.37 / DMST 23.1 on-line edition, "DMCC
Overview" > "Command Syntax" (`||>trigger on\\CR\\LF`; header examples `||>`, `||0:123>`, `||1>`; the
escaped characters) and "Reader Response" (status table); "DataMan Control Commands Documentation"
3.5, "DMCC Overview" > "Examples" (`||>TRIGGER ON\\r\\n`; `||[0]ON\\r\\n`; `||[0]\\r\\n`).
"""

from __future__ import annotations

import pytest

from drivers.readers.base import ACK, Ack, ReaderProtocolError, ReaderStatusError
from drivers.readers.dataman import (
    STATUS,
    DataMan,
    DataManSettings,
    Reply,
    encode_command,
    escape_argument,
    parse_reply,
    take_line,
)
from drivers.sim.readers import DmccSim, Outcome

GUIDE_STATUS = {0: "no error", 1: "reader initiated read-string", 100: "unidentified error",
                101: "command invalid", 102: "parameter invalid", 103: "checksum incorrect",
                104: "parameter rejected/altered due to reader state", 105: "reader unavailable"}


def reader(**kw: object) -> DataMan:
    return DataMan(DataManSettings(url="tcp://127.0.0.1:1", **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(("command", "cmd_id", "wire"), [
    ("TRIGGER ON", None, b"||>TRIGGER ON\r\n"),  # Control Commands 3.5, Examples
    ("trigger on", None, b"||>trigger on\r\n"),  # Guide, Command Syntax: ||>trigger on\CR\LF
    ("TRIGGER ON", 123, b"||0:123>TRIGGER ON\r\n"),  # Guide, Header Examples: ||0:123>
    ("GET SYMBOL.DATAMATRIX", None, b"||>GET SYMBOL.DATAMATRIX\r\n"),  # Control Commands 3.5, Examples
    ("SET SYMBOL.DATAMATRIX ON", None, b"||>SET SYMBOL.DATAMATRIX ON\r\n"),
])
def test_commands_encode_as_in_the_guide(command: str, cmd_id: int | None, wire: bytes) -> None:
    assert encode_command(command, cmd_id) == wire


def test_the_driver_triggers_with_the_default_header_or_a_running_command_id() -> None:
    assert reader(command_ids=False).encode_trigger() == b"||>TRIGGER ON\r\n"
    dm = reader()
    assert [dm.encode_trigger() for _ in range(2)] == [b"||0:1>TRIGGER ON\r\n", b"||0:2>TRIGGER ON\r\n"]


def test_string_arguments_escape_the_six_characters_the_guide_lists() -> None:
    assert escape_argument('a"b\\c|d\te\rf\ng') == '"a\\"b\\\\c\\|d\\te\\rf\\ng"'
    assert escape_argument("\x1d01") == '"\x1d01"'  # nothing else is escaped


@pytest.mark.parametrize(("line", "reply"), [
    (b"||[0]ON", Reply(None, None, 0, b"ON")),  # Control Commands 3.5: GET answer, Extended
    (b"||[0]", Reply(None, None, 0, b"")),  # Control Commands 3.5: SET answer, Extended
    (b"||0:123[0]", Reply(0, 123, 0, b"")),  # the id of ||0:123> comes back
    (b"||0:7[105]", Reply(0, 7, 105, b"")),
    (b"||:::2[0]", Reply(None, None, 0, b"")),  # field reports of newer firmware; id unchecked
    (b"C0001", None),  # a plain line is a read string
])
def test_replies_parse(line: bytes, reply: Reply | None) -> None:
    assert parse_reply(line) == reply


def test_the_status_table_is_the_guides() -> None:
    assert STATUS == GUIDE_STATUS


@pytest.mark.parametrize("status", [100, 101, 102, 103, 104, 105])
def test_error_statuses_are_status_errors_with_the_guides_words(status: int) -> None:
    with pytest.raises(ReaderStatusError, match=f"status {status}: {GUIDE_STATUS[status]}") as err:
        reader(command_ids=False).interpret(b"||[%d]" % status)
    assert err.value.code == status


@pytest.mark.parametrize(("frame", "meaning"), [
    (b"||[0]", ACK),  # the trigger's acknowledgement
    (b"||[1]C0001", "C0001"),  # status 1: a read string
    (b"||[12]anything", ACK),  # events the reader pushes are skipped
    (b"C0001", "C0001"),
    (b"NOREAD", None),
    (b"a\\\\b\\x1D", "a\\\\b\\x1D"),  # results are not unescaped: the guide escapes arguments only
    (b"0109506000134352\x1d21ABC", "0109506000134352\x1d21ABC"),  # GS arrives as the raw byte
])
def test_frames_mean_what_the_guide_says(frame: bytes, meaning: str | Ack | None) -> None:
    assert reader(command_ids=False).interpret(frame) == meaning


@pytest.mark.parametrize("frame", [b"||", b"||0:1[", b"||[x]", b"||1:1[0]\xaa", b"||0:1>TRIGGER ON"])
def test_malformed_or_checksummed_replies_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ReaderProtocolError):
        reader(command_ids=False).interpret(frame)


def test_a_reply_to_another_command_id_is_refused() -> None:
    dm = reader()
    assert dm.encode_trigger() == b"||0:1>TRIGGER ON\r\n"
    assert dm.interpret(b"||0:1[0]") is ACK
    with pytest.raises(ReaderProtocolError, match="reply for command 7, expected 1"):
        dm.interpret(b"||0:7[0]")


def xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


SILENT, EXTENDED = DmccSim.SILENT, DmccSim.EXTENDED


@pytest.mark.parametrize(("mode", "results", "sent", "answer"), [
    (SILENT, ["C1"], b"||>TRIGGER ON\r\n", b"C1\r\n"),  # decoded data only
    (SILENT, [Outcome.NO_READ], b"||>trigger on\r\n", b"NOREAD\r\n"),  # case insensitive; no-read string
    (EXTENDED, ["C1"], b"||>TRIGGER ON\r\n", b"||[0]\r\nC1\r\n"),
    (EXTENDED, ["C1"], b"||0:123>TRIGGER ON\r\n", b"||0:123[0]\r\nC1\r\n"),
    (EXTENDED, [Outcome.ERROR], b"||0:5>TRIGGER ON\r\n", b"||0:5[105]\r\n"),
    (SILENT, [Outcome.ERROR], b"||0:5>TRIGGER ON\r\n", b""),  # Silent: errors are not reported
    (EXTENDED, [], b"||>TRIGGER OFF\r\n", b"||[0]\r\n"),
    (EXTENDED, [], b"||>GET COM.DMCC-RESPONSE\r\n", b"||[0]1\r\n"),
    (SILENT, [], b"||>SET COM.DMCC-RESPONSE 1\r\n||>GET COM.DMCC-RESPONSE\r\n", b"||[0]1\r\n"),
    (EXTENDED, [], b"||>SET COM.DMCC-RESPONSE 7\r\n", b"||[102]\r\n"),
    (SILENT, [], b"||>GET SYMBOL.DATAMATRIX\r\n", b"ON"),  # Control Commands 3.5, Examples
    (EXTENDED, [], b"||>GET SYMBOL.DATAMATRIX\r\n", b"||[0]ON\r\n"),  # idem
    (SILENT, [], b"||>SET SYMBOL.DATAMATRIX ON\r\n", b""),  # idem: no response
    (EXTENDED, [], b"||>SET SYMBOL.DATAMATRIX ON\r\n", b"||[0]\r\n"),  # idem
    (EXTENDED, [], b"||>SET SYMBOL.DATAMATRIX MAYBE\r\n", b"||[102]\r\n"),
    (EXTENDED, [], b"||>GET NO.SUCH-PARAMETER\r\n", b"||[102]\r\n"),
    (EXTENDED, [], b"||>FROBNICATE\r\n", b"||[101]\r\n"),
    (SILENT, [], b"||>FROBNICATE\r\n", b""),  # Silent: invalid commands are ignored
    (EXTENDED, ["C1"], b"TRIGGER ON\r\n", b""),  # no || header: not a command
])
def test_the_simulator_answers_as_the_guide_says(mode: int, results: list[str | Outcome], sent: bytes,
                                                 answer: bytes) -> None:
    sim = DmccSim(response=mode)
    sim.results.extend(results)
    assert sim.feed(sent) == answer


def test_the_simulator_checks_checksum_mode_1_and_answers_in_it() -> None:
    sim = DmccSim(response=EXTENDED)
    sim.results.append("C1")
    block = b"||1>TRIGGER ON"
    ack = b"||1[0]"
    assert sim.feed(block + bytes([xor(block)]) + b"\r\n") == ack + bytes([xor(ack)]) + b"\r\nC1\r\n"
    bad = b"||1[103]"
    assert sim.feed(block + bytes([xor(block) ^ 1]) + b"\r\n") == bad + bytes([xor(bad)]) + b"\r\n"
    assert sim.triggers == 1


def test_the_simulator_takes_commands_split_across_reads() -> None:
    sim = DmccSim()
    sim.results.append("C1")
    assert sim.feed(b"||>TRIG") == b""
    assert sim.feed(b"GER ON\r") == b""
    assert sim.feed(b"\n") == b"C1\r\n"


@pytest.mark.parametrize(("stream", "lines", "rest"), [
    (b"||0:1[0]\r\nC1\r\n", [b"||0:1[0]", b"C1"], b""),
    (b"C1\rC2\nC3\r\n\r\nC4", [b"C1", b"C2", b"C3"], b"C4"),  # any trailer; empty lines skipped
    (b"C1\r", [b"C1"], b""),
])
def test_lines_end_at_the_footer_or_any_trailer(stream: bytes, lines: list[bytes], rest: bytes) -> None:
    buf = bytearray(stream)
    got = []
    while (line := take_line(buf)) is not None:
        got.append(line)
    assert got == lines
    assert bytes(buf) == rest
