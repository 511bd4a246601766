"""Videojet WSI: packet byte tables, the de-framer on random bytes, and the simulator's protocol logic."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.printers.base import Fault, ProtocolError
from drivers.printers.videojet_codec import (
    Check,
    Packet,
    PacketType,
    WsiChecksum,
    WsiDeframer,
    encode_packet,
    int_field,
)
from drivers.sim.coder_model import CoderModel
from drivers.sim.faults import SimFault
from drivers.sim.videojet import VideojetSimProtocol

U = PacketType.UPDATE_USER_FIELD


@pytest.mark.parametrize(
    ("packet", "checksum", "wire"),
    [
        (Packet(PacketType.SELECT_MESSAGE, ("SERIAL",)), WsiChecksum.NONE, b"\x02MSERIAL\x03"),
        (Packet(U, ("SERIAL", "ABC123")), WsiChecksum.NONE, b"\x02USERIAL\nABC123\x03"),
        (Packet(PacketType.COUNTERS), WsiChecksum.NONE, b"\x02G\x03"),
        (Packet(PacketType.PRINT_ON_OFF, ("1",)), WsiChecksum.NONE, b"\x02O1\x03"),
        # sum of b"G" = 0x47; of b"O1" = 0x4F + 0x31 = 0x80
        (Packet(PacketType.COUNTERS), WsiChecksum.SUM_HEX, b"\x02G47\x03"),
        (Packet(PacketType.PRINT_ON_OFF, ("1",)), WsiChecksum.SUM_HEX, b"\x02O180\x03"),
    ],
)
def test_packets_encode_to_the_documented_bytes_and_back(
    packet: Packet, checksum: WsiChecksum, wire: bytes
) -> None:
    assert encode_packet(packet, checksum) == wire
    assert WsiDeframer(checksum).feed(wire) == [packet]


def test_check_sequences_and_packets_split_across_reads() -> None:
    d = WsiDeframer()
    stream = b"$8D!51\x02G42\n3\x03$8D"
    got = [item for b in stream for item in d.feed(bytes([b]))]
    assert got == [Check(True), Check(False), Packet(PacketType.COUNTERS, ("42", "3")), Check(True)]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"$9Z", "neither"),
        (b"X", "unexpected byte 0x58"),
        (b"\x02Z\x03", "unknown WSI packet type 'Z'"),
        (b"\x02\x03", "empty"),
    ],
)
def test_garbage_is_a_protocol_error_naming_the_bytes(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        WsiDeframer().feed(wire)


def test_bad_checksum_is_refused() -> None:
    with pytest.raises(ProtocolError, match="checksum"):
        WsiDeframer(WsiChecksum.SUM_HEX).feed(b"\x02G48\x03")


def test_fields_that_framing_cannot_carry_are_refused() -> None:
    with pytest.raises(ValueError, match="LF"):
        encode_packet(Packet(U, ("SERIAL", "A\nB")))


def test_number_fields_must_be_ascii_digits() -> None:
    with pytest.raises(ProtocolError, match="not a number"):
        int_field(Packet(PacketType.COUNTERS, ("\u00b2",)), 0, "product count")


@given(st.binary(max_size=64), st.sampled_from(list(WsiChecksum)))
def test_random_bytes_raise_only_protocol_errors(data: bytes, checksum: WsiChecksum) -> None:
    d = WsiDeframer(checksum)
    with contextlib.suppress(ProtocolError):
        d.feed(data)


def sim(capacity: int = 2) -> VideojetSimProtocol:
    return VideojetSimProtocol(CoderModel(capacity=capacity))


def test_sim_queues_updates_acks_them_and_naks_when_full() -> None:
    s = sim(capacity=2)
    wire = b"".join(encode_packet(Packet(U, ("SERIAL", t))) for t in ("A", "B", "C"))
    assert s.receive(wire) == b"$8D$8D!51"
    assert s.receive(encode_packet(Packet(U, ("OTHER", "X")))) == b"!51"
    assert s.receive(b"\x02O1\x03") == b"$8D"
    assert [s.model.fire(), s.model.fire(), s.model.fire()] == ["A", "B", None]
    assert s.receive(b"\x02G\x03") == b"\x02G2\n0\x03"


def test_sim_stop_clears_queue_but_keeps_counter_and_reports_faults() -> None:
    s = sim(capacity=4)
    s.receive(b"\x02O1\x03" + encode_packet(Packet(U, ("SERIAL", "A"))) + encode_packet(Packet(U, ("SERIAL", "B"))))
    s.model.fire()
    assert s.receive(b"\x02K\x03") == b"$8D"
    assert (list(s.model.queue), s.model.counter) == ([], 1)
    s.model.fault(Fault.INK_EMPTY)
    s.model.faults.add(Fault.INK_LOW)
    assert s.receive(b"\x02E\x03") == b"\x02E2\nIE,IL\x03"
    assert s.receive(b"\x02O1\x03") == b"!51"  # cannot start while the jet is faulted


def test_sim_injected_faults_replace_the_answer_and_skip_the_request() -> None:
    s = sim()
    s.inject.armed.append(SimFault.NAK)
    assert s.receive(b"\x02H\x03\x02H\x03") == b"!51\x02HVJ1620-SIM\x03"
    s.inject.armed.extend([SimFault.GARBAGE, SimFault.SILENCE, SimFault.BUFFER_FULL])
    garbage = s.receive(encode_packet(Packet(U, ("SERIAL", "A"))))
    with pytest.raises(ProtocolError):
        WsiDeframer().feed(garbage)
    assert s.receive(encode_packet(Packet(U, ("SERIAL", "B")))) == b""
    assert s.receive(encode_packet(Packet(U, ("SERIAL", "C")))) == b"!51"  # refused as if full
    assert list(s.model.queue) == []  # none of the faulted requests was executed
