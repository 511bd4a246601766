"""Hitachi communication buffer: byte tables from the RX manual rev D and the C# client, random bytes, and
the simulator's answers as the manual states them. The driver against the simulator: test_hitachi_driver.py."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.printers.base import (
    Fault,
    PrinterState,
    ProtocolError,
)
from drivers.printers.hitachi_codec import (
    STATUS_QUERY,
    Bcc,
    Commands,
    Model,
    Remote,
    Status,
    frame,
    item_code,
    parse_answer,
    parse_print_contents,
    parse_status,
    parse_time,
    print_contents,
    recall,
    split_items,
)
from drivers.sim.coder_model import CoderModel
from drivers.sim.faults import SimFault
from drivers.sim.hitachi import HitachiSimProtocol

H = bytes.fromhex
ENQ, ACK, NAK, DC2 = b"\x05", b"\x06", b"\x15", b"\x12"
RX, PX = Commands.for_model(Model.RX), Commands.for_model(Model.PX)


# ---- byte tables: the manual's own examples ----------------------------------------------------
@pytest.mark.parametrize(
    ("built", "wire"),
    [
        # 5.3.3-3 (1): call up print data message number 12
        (frame(recall(12)), H("02 1F 20 31 30 30 31 32 03")),
        # 5.3.2-5 (1): print item 1 "ABC" (the calendar characters of item 2 are 2-byte codes: left out)
        (frame(print_contents([(1, "ABC")])), H("02 10 31 41 42 43 03")),
        # 5.6 communication monitor, line 3: items 1 "ABCDE" and 2 "12345"
        (frame(print_contents([(1, "ABCDE"), (2, "12345")])), H("02 10 31 41 42 43 44 45 10 32 31 32 33 34 35 03")),
        # 5.9.3-2: clear buffer / restart printing, ESC2 and the existing machine's ESC clear
        (frame(RX.clear_buffer), H("02 1F 76 03")),
        (frame(RX.restart_printing), H("02 1F 77 03")),
        (frame(PX.clear_buffer), H("02 1B 2D 03")),
        # 5.3.9-1: remote operation, fault clear 34H; existing machine ESC 71H
        (frame(RX.remote(Remote.FAULT_CLEAR)), H("02 1F 72 34 03")),
        (frame(PX.remote(Remote.FAULT_CLEAR)), H("02 1B 71 34 03")),
        # 5.3.10-1 (2) / 5.4.2: current time inquiry, no STX/ETX
        (RX.time_query, H("1F 75")),
        (PX.time_query, H("1B 7B")),
    ],
)
def test_manual_examples(built: bytes, wire: bytes) -> None:
    assert built == wire


@pytest.mark.parametrize(("item", "code"), [(1, 0x31), (10, 0x3A), (11, 0x3B), (50, 0x62), (91, 0x8B), (100, 0x94)])
def test_item_number_table_5_3_2_2(item: int, code: int) -> None:
    assert item_code(item) == code


@pytest.mark.parametrize(
    ("built", "wire"),
    [
        (STATUS_QUERY, b"\x1b\x23"),  # BuildFetchString FetchOps.Status: sESC + (char)0x23
        (frame(PX.restart_printing), H("02 1B 5A 03")),  # BuildSOP16Command eRestartPrinting = 0x5A
        (frame(RX.remote(Remote.START)), b"\x02\x1f\x72\x30\x03"),  # HPTest.cs: "\x02\x1F\x72\x30\x03"
        (frame(RX.remote(Remote.READY)), b"\x02\x1fr2\x03"),  # ControlOps.Ready: sSTX + sESC2 + "r2" + sETX
        (frame(RX.remote(Remote.STANDBY)), b"\x02\x1fr3\x03"),
        (frame(PX.remote(Remote.READY)), b"\x02\x1bq2\x03"),  # sSTX + sESC + "q2" + sETX
    ],
)
def test_csharp_client_constants(built: bytes, wire: bytes) -> None:
    assert built == wire


def test_status_replies_as_the_csharp_client_reads_them() -> None:
    # HPStatus.cs simulated status {STX,'1','0','0','2','0',ETX}: off-line, no reception, Ready, no alarm
    s = parse_status(b"\x021002" + b"0\x03")
    assert s == Status(online=False, reception=False, operation=0x32, alarm=0x30)
    assert s.encode() == b"\x0210020\x03"
    assert s.state is PrinterState.PRINTING
    assert parse_status(b"\x0211100\x03").state is PrinterState.IDLE  # paused (ink stopped)
    assert parse_status(b"\x0211110\x03").state is PrinterState.IDLE  # running, not ready (standby)
    buffer_fault = parse_status(b"\x02111\x661\x03")
    assert (buffer_fault.state, buffer_fault.faults) == (PrinterState.FAULT, {Fault.BUFFER_EMPTY, Fault.INK_LOW})
    assert parse_status(b"\x02111\x380\x03").faults == {Fault.COVER_OPEN}
    assert "Communication Buffer Fault" in buffer_fault.detail


def test_time_reply_5_3_10() -> None:
    assert parse_time(b"\x02\x1f\x7f20150707124500\x03") == "2015-07-07 12:45:00"
    assert parse_time(b"\x02\x1b\x7c20150707124500\x03", esc2=False) == "2015-07-07 12:45:00"


def test_limits_of_a_text() -> None:
    assert len(frame(b"x" * 2998)) == 3000  # 5.3.1 (8): 3000 bytes including STX and ETX
    with pytest.raises(ValueError, match="3000"):
        frame(b"x" * 2999)
    assert frame(b"\x101A", Bcc.XOR) == b"\x02\x101A\x03" + bytes([0x10 ^ 0x31 ^ 0x41 ^ 0x03])
    with pytest.raises(ValueError, match="8 items"):
        print_contents([(i, "A") for i in range(1, 10)])  # 5.9.3-1 (2): 8 items, 80 characters
    with pytest.raises(ValueError, match="80 characters"):
        print_contents([(1, "A" * 81)])
    assert split_items("ABCDEFGHIJKL", 1, 10) == [(1, "ABCDEFGHIJ"), (2, "KL")]
    with pytest.raises(ValueError, match="printable ASCII"):
        print_contents([(1, "é")])
    with pytest.raises(ValueError, match=r"1\.\.2000"):
        recall(2001)


@given(st.binary(max_size=40))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    for parse in (parse_status, parse_print_contents, parse_time):
        with contextlib.suppress(ProtocolError):
            parse(data)  # type: ignore[operator]
    for b in data[:4]:
        with contextlib.suppress(ProtocolError):
            parse_answer(b)


# ---- the simulator, as the manual says it answers ----------------------------------------------
def sim(**kw: Any) -> HitachiSimProtocol:
    kw.setdefault("restart_delay_s", 0.0)
    return HitachiSimProtocol(CoderModel(capacity=100), **kw)


def data_set(text: str, item: int = 1) -> bytes:
    return frame(print_contents([(item, text)]))


def test_sim_transmission_sequences_5_3_1_and_monitor_example_5_6() -> None:
    s = sim()
    assert s.receive(ENQ) == ACK
    assert s.receive(H("02 10 31 41 42 43 44 45 10 32 31 32 33 34 35 03")) == ACK
    assert s.receive(ENQ) == ACK
    assert s.receive(H("02 10 31 41 42 43 44 45 10 32 31 32 33 34 7F 03")) == NAK  # 5.6 line 8
    assert s.receive(data_set("B")) == ACK  # ENQ omitted
    assert s.receive(b"\x1f\x73") == ACK  # 5.3.8-2: ESC2 73H, no ENQ/STX/ETX
    assert s.receive(frame(recall(12))) == ACK and s.job == "12"
    s.go_offline()
    assert s.receive(ENQ + DC2 + data_set("C")) == NAK + NAK + NAK  # 5.3.1 (3)
    assert s.receive(STATUS_QUERY) == b"\x0210010\x03"  # '1', off-line, no reception, standby, no alarm


def test_sim_buffer_holds_100_items_and_1000_characters() -> None:
    s = sim()
    assert all(s.receive(data_set(f"{i:03d}")) == ACK for i in range(100))
    assert s.receive(data_set("X")) == NAK  # 5.9.4 (1): capacity exceeded -> NAK
    s = sim()
    assert all(s.receive(data_set("C" * 80)) == ACK for _ in range(12))  # 960 characters
    assert s.receive(data_set("C" * 80)) == NAK
    assert s.receive(frame(print_contents([(1, "A")]) + b"\x10\x32B" * 8)) == NAK  # 9 items at once
    assert s.receive(b"\x02\x10\x31" + b"A" * 2998 + b"\x03") == NAK  # 3001 bytes (5.3.1 (8))


def test_sim_prints_one_set_per_print_and_faults_when_empty() -> None:
    s = sim()
    s.receive(data_set("A") + data_set("B"))
    assert s.fire() is None  # standby: a miss
    assert s.receive(frame(RX.remote(Remote.READY))) == ACK
    assert [s.fire(), s.fire(), s.fire()] == ["A", "B", None]  # example 6: buffer fault at print start
    assert s.status_reply()[4] == 0x66
    assert s.receive(frame(RX.remote(Remote.FAULT_CLEAR))) == ACK and s.status_reply()[4] == 0x31


def test_sim_offline_repeats_the_current_content_example_3() -> None:
    s = sim()
    s.receive(frame(RX.remote(Remote.READY)))
    s.receive(data_set("A") + data_set("B") + data_set("C") + data_set("D"))
    assert s.fire() == "A"
    s.go_offline()
    assert [s.fire(), s.fire()] == ["B", "B"]
    s.go_online()
    assert s.fire() == "B"  # standard mode until the buffer function is set up again
    assert s.receive(data_set("E")) == ACK and [s.fire(), s.fire()] == ["E", "E"]
    s.rearm()
    s.receive(data_set("F"))
    assert [s.fire(), s.fire()] == ["F", None]


def test_sim_clear_and_restart_rules_5_9_3_2() -> None:
    s = sim(print_s=60.0, restart_delay_s=60.0)
    s.receive(frame(RX.remote(Remote.READY)) + data_set("A") + data_set("B") + data_set("C"))
    assert s.receive(frame(RX.clear_buffer)) == ACK
    assert s.fire() == "A"  # the set fetched before the clear still prints ("may be printed")
    assert s.receive(frame(RX.clear_buffer)) == NAK  # a print is in progress
    s.print_s = 0.0
    s.receive(data_set("D"))
    assert s.receive(frame(RX.restart_printing)) == ACK
    assert s.fire() is None and s.status_reply()[4] == 0x69  # print start within 500 ms of restart
    s = sim()
    s.receive(frame(RX.remote(Remote.READY)) + data_set("A") + data_set("B"))
    s.receive(frame(RX.remote(Remote.STANDBY)))  # a stop keeps the buffer (5.9.2 (2))
    s.receive(frame(RX.remote(Remote.READY)))
    assert [s.fire(), s.fire()] == ["A", "B"]


def test_sim_existing_machine_messages() -> None:
    s = sim()
    assert s.receive(H("02 1B 2D 03") + H("02 1B 77 03")) == ACK + ACK  # 5.9.3-2 existing machine message
    assert s.receive(H("02 1B 5A 03")) == NAK  # the C# client's PX/PXR restart is not an RX text
    assert s.receive(H("02 1B 71 34 03")) == ACK  # 5.3.9-1 existing machine fault clear
    assert s.receive(b"\x02\x1bU012\x03") == ACK and s.job == "12"  # 5.3.3-1 ESC 55H + 3 digits
    assert s.receive(b"\x1b\x7b")[:3] == b"\x02\x1b\x7c"  # 5.3.10 existing machine time output


def test_sim_bcc_and_injections() -> None:
    s = sim(bcc=True)
    assert s.receive(frame(b"\x101A", Bcc.XOR)) == ACK
    assert s.receive(b"\x02\x101B\x03\x00") == NAK
    s.inject.armed.extend([SimFault.NAK, SimFault.SILENCE])
    assert s.receive(DC2 + DC2 + DC2) == NAK + ACK
