"""Framing byte tables, stream splitting, and random bytes raising only our typed errors."""

from __future__ import annotations

from contextlib import suppress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.framing import (
    GARBAGE,
    ChecksumEncoding,
    ChecksumKind,
    ChecksumPlace,
    ChecksumSpec,
    Deframer,
    EscapeMode,
    Frame,
    FrameError,
    FrameSpec,
    LengthSpec,
    checksum_value,
    decode,
    encode,
)
from drivers.printers.base import ProtocolError
from drivers.printers.generic_spec import load_protocol

STX, ETX, ESC, ACK, NAK = b"\x02", b"\x03", b"\x1b", b"\x06", b"\x15"
HITACHI_LIKE = FrameSpec(
    start=STX, end=ETX, checksum=ChecksumSpec(ChecksumKind.XOR, place=ChecksumPlace.AFTER_END, covers_end=True),
    tokens=(ACK, NAK),
)
PANASONIC_LIKE = FrameSpec(
    start=STX, end=b"\r", checksum=ChecksumSpec(ChecksumKind.SUM8, ChecksumEncoding.HEX, covers_start=True)
)
LINX_LIKE = FrameSpec(start=ESC + STX, end=ESC + ETX, escape=ESC, escape_mode=EscapeMode.DOUBLE)
IMAJE_LIKE = FrameSpec(
    start=b"\x55", length=LengthSpec(2), checksum=ChecksumSpec(ChecksumKind.TWOS_COMPLEMENT)
)
SLIP_LIKE = FrameSpec(
    start=STX, end=ETX, escape=b"\x10", escape_mode=EscapeMode.PREFIX_XOR,
    checksum=ChecksumSpec(ChecksumKind.SUM8),
)
NGPCL_LIKE = FrameSpec(start=b"{", end=b"}")
LEIBINGER = FrameSpec(start=b"^0", end=b"\r", escape=b"\\", escape_mode=EscapeMode.PREFIX, escaped=b"^\\")
WSI_LIKE = FrameSpec(start=STX, end=ETX, tagged=((b"$", 3), (b"!", 3)))
NGPCL_CRLF = FrameSpec(start=b"{", end=b"}", filler=b"\r\n")
SPECS = {
    "leibinger": LEIBINGER,
    "hitachi": HITACHI_LIKE,
    "panasonic": PANASONIC_LIKE,
    "linx": LINX_LIKE,
    "imaje": IMAJE_LIKE,
    "slip": SLIP_LIKE,
    "ngpcl": NGPCL_LIKE,
    "wsi": WSI_LIKE,
    "ngpcl-crlf": NGPCL_CRLF,
    **{f"file-{name}": load_protocol(name).framing.spec()
       for name in ("leibinger", "videojet_wsi", "hitachi_rx", "markem_ngpcl", "example_stx")},
}


@pytest.mark.parametrize(
    ("kind", "data", "value"),
    [
        (ChecksumKind.XOR, b"\x01\x02\x04", 0x07),
        (ChecksumKind.XOR, b"AA", 0x00),
        (ChecksumKind.SUM8, b"\xff\x02", 0x01),
        (ChecksumKind.SUM8, b"STS", (0x53 + 0x54 + 0x53) & 0xFF),
        (ChecksumKind.TWOS_COMPLEMENT, b"\x01\x02", 0xFD),
        (ChecksumKind.TWOS_COMPLEMENT, b"", 0x00),
    ],
)
def test_checksum_values(kind: ChecksumKind, data: bytes, value: int) -> None:
    assert checksum_value(kind, data) == value


@pytest.mark.parametrize(
    ("spec", "payload", "wire"),
    [
        (LEIBINGER, b"?SM", b"^0?SM\r"),
        (LEIBINGER, b"=MR7\tA^B\\C", b"^0=MR7\tA\\^B\\\\C\r"),
        (HITACHI_LIKE, b"AB", STX + b"AB" + ETX + bytes([0x41 ^ 0x42 ^ 0x03])),
        (PANASONIC_LIKE, b"STSR", STX + b"STSR" + f"{(2 + sum(b'STSR')) & 0xFF:02X}".encode() + b"\r"),
        (LINX_LIKE, b"a\x1bb", ESC + STX + b"a\x1b\x1bb" + ESC + ETX),
        (IMAJE_LIKE, b"\x01\x02", b"\x55\x00\x02\x01\x02\xfd"),
        (SLIP_LIKE, b"\x02\x10", STX + b"\x10\x22\x10\x30" + b"\x12" + ETX),
        (NGPCL_LIKE, b"~DR", b"{~DR}"),
    ],
    ids=["leibinger-query", "leibinger-escapes", "bcc-after-etx", "hex-sum-with-stx", "esc-doubling",
         "length-twos-complement", "prefix-xor", "braces"],
)
def test_encode_decode_byte_table(spec: FrameSpec, payload: bytes, wire: bytes) -> None:
    assert encode(spec, payload) == wire
    assert decode(spec, wire) == payload


@pytest.mark.parametrize(
    ("spec", "wire", "reason"),
    [
        (HITACHI_LIKE, STX + b"AB" + ETX + b"\x01", "checksum mismatch"),
        (PANASONIC_LIKE, STX + b"STSRzz\r", "checksum is not two hex digits"),
        (LEIBINGER, b"^0=MR\\x\r", "invalid escape"),
        (LEIBINGER, b"^0?S^0?SM\r", "not terminated"),
        (LINX_LIKE, ESC + STX + b"a\x1bzb" + ESC + ETX, "escape byte not followed"),
        (IMAJE_LIKE, b"\x55\x00\x01\x01\x00", "checksum mismatch"),
        (NGPCL_LIKE, b"xx{~DR}", GARBAGE),
    ],
)
def test_malformed_frames_are_reported(spec: FrameSpec, wire: bytes, reason: str) -> None:
    items = Deframer(spec).feed(wire)
    errors = [i for i in items if isinstance(i, FrameError)]
    assert errors and reason in errors[0].reason
    assert isinstance(errors[0], ProtocolError)


def test_good_frames_survive_garbage_between_and_any_split() -> None:
    wire = b"noise" + encode(HITACHI_LIKE, b"one") + ACK + b"\xff\xfe" + encode(HITACHI_LIKE, b"two") + NAK
    for cut in range(len(wire) + 1):
        deframer = Deframer(HITACHI_LIKE)
        items = deframer.feed(wire[:cut]) + deframer.feed(wire[cut:])
        frames = [(i.payload, i.token) for i in items if isinstance(i, Frame)]
        assert frames == [(b"one", False), (ACK, True), (b"two", False), (NAK, True)], cut
        assert all(e.reason == GARBAGE for e in items if isinstance(e, FrameError))
        assert deframer.pending == b""


def test_payload_holding_an_unescaped_delimiter_is_refused() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        encode(LEIBINGER, b"=MR1\tA\rB")
    with pytest.raises(ValueError, match="delimiter"):
        encode(NGPCL_LIKE, b"a}b")


def test_over_long_frame_is_cut_and_scanning_resumes() -> None:
    spec = FrameSpec(start=b"{", end=b"}", max_payload=8)
    items = Deframer(spec).feed(b"{" + b"x" * 20 + b"}{ok}")
    assert isinstance(items[0], FrameError) and "longer than 8" in items[0].reason
    assert [i.payload for i in items if isinstance(i, Frame)] == [b"ok"]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"start": b"{"}, "end delimiter or a length field"),
        ({"end": ETX, "escape_mode": EscapeMode.PREFIX}, "exactly one escape byte"),
        ({"start": STX, "end": ETX, "escape": ESC, "escape_mode": EscapeMode.DOUBLE}, "escape byte \\+ one more"),
        ({"end": ETX, "checksum": ChecksumSpec(ChecksumKind.XOR)}, "binary checksum before a delimiter"),
        ({"start": STX, "end": ETX, "tokens": (STX,)}, "overlaps the start"),
    ],
)
def test_ambiguous_specs_are_refused(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FrameSpec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=80, deadline=None)
@given(payloads=st.lists(st.binary(max_size=40), max_size=4), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_round_trip_any_payload_any_split(name: str, payloads: list[bytes], cuts: list[int]) -> None:
    spec = SPECS[name]
    carried = []
    for p in payloads:
        with suppress(ValueError):  # a payload holding an unescaped delimiter is refused, not sent
            encode(spec, p)
            carried.append(p)
    payloads = carried
    wire = b"".join(encode(spec, p) for p in payloads)
    deframer = Deframer(spec)
    items: list[Frame | FrameError] = []
    last = 0
    for cut in [*sorted(c for c in cuts if c <= len(wire)), len(wire)]:
        items += deframer.feed(wire[last:cut])
        last = cut
    assert [i.payload for i in items if isinstance(i, Frame)] == payloads
    assert not [i for i in items if isinstance(i, FrameError)]


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_raise_only_typed_errors(name: str, chunks: list[bytes]) -> None:
    deframer = Deframer(SPECS[name])
    for chunk in chunks:
        for item in deframer.feed(chunk):  # reports, never raises
            assert isinstance(item, Frame | FrameError)
    with suppress(ProtocolError):
        decode(SPECS[name], b"".join(chunks))


def test_tagged_replies_and_filler_survive_any_split() -> None:
    """WSI answers `$XX`/`!XX` outside frames (Rev AD section 3); NGPCL replies are followed by CR LF."""
    wsi = b"$93" + STX + b"00000678" + ETX + b"!94" + b"\xff" + b"$8D"
    for cut in range(len(wsi) + 1):
        deframer = Deframer(WSI_LIKE)
        items = deframer.feed(wsi[:cut]) + deframer.feed(wsi[cut:])
        frames = [(i.payload, i.token) for i in items if isinstance(i, Frame)]
        assert frames == [(b"$93", True), (b"00000678", False), (b"!94", True), (b"$8D", True)], cut
        assert [e.reason for e in items if isinstance(e, FrameError)] == [GARBAGE]
    ngpcl = b"{~JS0|}\r\n{~JU0|}\r\n\r\n{~DS0|0|06|1|}\r\n"
    for cut in range(len(ngpcl) + 1):
        deframer = Deframer(NGPCL_CRLF)
        items = deframer.feed(ngpcl[:cut]) + deframer.feed(ngpcl[cut:])
        assert [i.payload for i in items if isinstance(i, Frame)] == [b"~JS0|", b"~JU0|", b"~DS0|0|06|1|"], cut
        assert not [i for i in items if isinstance(i, FrameError)]
        assert deframer.pending == b""


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"start": b"$", "end": b"\x03", "tagged": ((b"$", 3),)}, "overlaps the start"),
        ({"start": STX, "end": ETX, "tagged": ((b"$", 1),)}, "size longer than it"),
        ({"start": b"{", "end": b"}", "filler": b"{"}, "starts a frame"),
    ],
)
def test_tagged_and_filler_that_cannot_work_are_refused(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FrameSpec(**kwargs)  # type: ignore[arg-type]
