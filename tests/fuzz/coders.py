"""The coder targets of the fuzz: each driver (and the generic driver with each protocol file) with the
real simulator of its device behind the hostile device, and how to re-frame that device's answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from drivers.framing import Deframer, Frame, FrameSpec, encode
from drivers.printers.base import Printer
from drivers.printers.generic import GenericPrinter, GenericSettings
from drivers.printers.generic_spec import load_protocol
from drivers.printers.hitachi import HitachiBuffer, HitachiSettings
from drivers.printers.leibinger import Leibinger, LeibingerSettings
from drivers.printers.markem import MarkemNgpcl, MarkemSettings
from drivers.printers.videojet import VideojetSettings, VideojetWsi
from drivers.printers.videojet_codec import VideojetModel
from drivers.sim.generic import GenericSim
from drivers.sim.hitachi import HitachiSim
from drivers.sim.leibinger import LeibingerSim
from drivers.sim.markem import MarkemSim
from drivers.sim.videojet import VideojetSim

TIMEOUT_S = 0.1  # per answer: the simulator answers in well under a millisecond
RETRIES = 1


class Served(Protocol):
    async def serve_tcp(self, port: int) -> int: ...
    async def close(self) -> None: ...
    def trigger(self, products: int = 1) -> int: ...


@dataclass(frozen=True)
class Target:
    name: str
    make_sim: Callable[[], Served]
    make_driver: Callable[[str], Printer]
    protocol: str  # config/printers/<protocol>.yaml describes the wire format (for re-framing)

    def reframer(self) -> Callable[[bytes, Callable[[bytes], bytes]], bytes]:
        return spec_reframer(load_protocol(self.protocol).framing.spec())


def spec_reframer(spec: FrameSpec) -> Callable[[bytes, Callable[[bytes], bytes]], bytes]:
    """Edit every frame's payload and frame it again by `spec`: checksum, escapes and length stay right."""

    def reframe(chunk: bytes, edit: Callable[[bytes], bytes]) -> bytes:
        deframer = Deframer(spec)
        out = bytearray()
        for item in deframer.feed(chunk):
            if isinstance(item, Frame) and not item.token:
                try:
                    out += encode(spec, edit(item.payload))
                except ValueError:  # the edit cannot be framed (a delimiter where no escape exists)
                    out += item.raw
            else:
                out += item.raw
        return bytes(out + deframer.pending)

    return reframe


def _generic(protocol: str) -> Callable[[str], Printer]:
    def make(url: str) -> Printer:
        return GenericPrinter(GenericSettings(url=url, protocol_file=protocol, capacity=8, timeout_s=TIMEOUT_S,
                                              retries=RETRIES, reconnect_max_s=0.2, connect_timeout_s=1.0))

    return make


TARGETS = [
    Target("leibinger", lambda: LeibingerSim(capacity=8),
           lambda url: Leibinger(LeibingerSettings(url=url, capacity=8, timeout_s=TIMEOUT_S, retries=RETRIES,
                                                   reconnect_max_s=0.2, confirm_s=0.3, connect_timeout_s=1.0)),
           "leibinger"),
    Target("videojet_wsi", VideojetSim,
           lambda url: VideojetWsi(VideojetSettings(url=url, model=VideojetModel.V1620, timeout_s=TIMEOUT_S,
                                                    retries=RETRIES)),
           "videojet_wsi"),
    Target("markem_ngpcl", MarkemSim,
           lambda url: MarkemNgpcl(MarkemSettings(url=url, timeout_s=TIMEOUT_S, retries=RETRIES, imaging_s=0.05)),
           "markem_ngpcl"),
    Target("hitachi", lambda: HitachiSim(capacity=8, restart_delay_s=0.02),
           lambda url: HitachiBuffer(HitachiSettings(url=url, buffer_size=8, timeout_s=TIMEOUT_S, retries=RETRIES,
                                                     restart_settle_s=0.02)),
           "hitachi_rx"),
    Target("generic+example_stx", lambda: GenericSim(protocol="example_stx", capacity=8), _generic("example_stx"),
           "example_stx"),
    Target("generic+leibinger", lambda: LeibingerSim(capacity=8), _generic("leibinger"), "leibinger"),
    Target("generic+videojet_wsi", VideojetSim, _generic("videojet_wsi"), "videojet_wsi"),
    Target("generic+hitachi_rx", lambda: HitachiSim(capacity=8, restart_delay_s=0.02), _generic("hitachi_rx"),
           "hitachi_rx"),
    Target("generic+markem_ngpcl", MarkemSim, _generic("markem_ngpcl"), "markem_ngpcl"),
]
