"""The smart camera's TCP image export (drivers/cameras/banner_export.py) against a hostile camera.

The hostile device sits between the driver and the image export simulator; every grab must end with a
frame or a CameraError (NoFrame when nothing came), never another exception or a hang, and a frame
that does come out is an image no larger than the export header and the settings allow.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from drivers.cameras.banner_export import HEADER, BannerExportSettings, BannerImageExport
from drivers.cameras.base import CameraError, CameraState, Frame
from drivers.sim.banner_export import ImageExportServer
from tests.fuzz.harness import Bounded, run
from tests.fuzz.hostile import Action, Edit, HostileDevice, Overwrite, Script
from tests.fuzz.strategies import budget, edits, scripts

IMAGE = np.arange(64, dtype=np.uint8).reshape(8, 8)


def export_reframe(chunk: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """Edit each image after its 64-byte header and give the header the new size: a well-formed export
    record whose image lies (VE Series Instruction Manual 12.1.4: size at offset 20, UInt32 LE)."""
    out, i = bytearray(), 0
    while i + HEADER.size <= len(chunk):
        size = int.from_bytes(chunk[i + 20 : i + 24], "little")
        if i + HEADER.size + size > len(chunk):
            break
        body = edit(chunk[i + HEADER.size : i + HEADER.size + size])
        out += chunk[i : i + 20] + len(body).to_bytes(4, "little") + chunk[i + 24 : i + HEADER.size] + body
        i += HEADER.size + size
    return bytes(out + chunk[i:])


# Image edits that know the formats: a BMP's own width and height (BITMAPINFOHEADER at 18, int32 LE),
# a JPEG's SOF0 height and width, and the export header's own fields (applied to the whole record).
DIMENSIONS = st.sampled_from([0, 1, 8, 30000, 70000, 2**31 - 1, -8, -(2**31)])
IMAGE_EDITS: st.SearchStrategy[tuple[Edit, ...]] = st.one_of(
    st.tuples(DIMENSIONS, DIMENSIONS).map(lambda wh: (Overwrite(18, struct.pack("<ii", *wh)),)),
    edits(),
)


async def exercise(actions: list[Action], grabs: int) -> None:
    server = ImageExportServer()
    port = await server.start()
    device = HostileDevice(port, Script(actions, export_reframe))
    settings = BannerExportSettings(url=await device.serve_tcp(), frame_timeout_s=0.2, connect_timeout_s=1.0,
                                    max_image_mb=1.0)
    camera = BannerImageExport(settings)
    b = Bounded((CameraError,), "banner image export")
    b.watch_loop()
    try:
        await b.op("open", camera.open)
        for n in range(grabs):
            if camera.state is CameraState.FAILED:
                await b.op("close", camera.close)  # as the station does: reopen a failed stream
                await b.op("open", camera.open)
            for _ in range(30):  # the device connects to the camera once the driver connected to it
                if server.clients:
                    break
                await asyncio.sleep(0.01)
            server.publish(n + 1, IMAGE)
            frame = await b.op("grab", camera.grab)
            if isinstance(frame, Frame):
                assert frame.image.ndim == 2 and frame.image.size <= 2**20, frame.image.shape
    finally:
        await b.quiet("close", camera.close)
        await device.close()
        await server.close()
    b.check_loop()


@budget(5)
@given(actions=scripts(fields=IMAGE_EDITS), grabs=st.integers(1, 4))
def test_hostile_image_exports_end_in_frames_or_camera_errors(actions: list[Action], grabs: int) -> None:
    run(exercise(actions, grabs))
