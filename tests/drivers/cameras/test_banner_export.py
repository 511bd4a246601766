"""The smart camera's TCP image export (drivers/cameras/banner_export.py) against the header layout of
Banner's manuals (iVu Plus BCR User's Manual rev. B, 6.1.6; VE Series manual 12.1.3), written out here
byte by byte, and against its simulator over real sockets: images through the real decoder, the frame
number as Frame.index, a late client, a stalled client, a dead or lying camera."""

from __future__ import annotations

import asyncio
import socket
import struct

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from agent.verify.decode import Decoder, DecoderSettings
from agent.verify.regions import Region
from drivers import registry
from drivers.cameras.banner_export import BannerExportSettings, BannerImageExport, encode_image
from drivers.cameras.base import CameraError, CameraState, NoFrame
from drivers.sim.banner_export import ImageExportServer
from drivers.sim.camera import Defects, SimCameraSettings, render

SIM = SimCameraSettings()
DECODER = Decoder(DecoderSettings(region=Region.of(SIM.region), deadline_ms=None))


def camera(port: int, **kw: float) -> BannerImageExport:
    return BannerImageExport(BannerExportSettings(url=f"tcp://127.0.0.1:{port}", **kw), name="cam1")


def test_the_header_is_the_manuals_layout_and_the_body_a_windows_bmp() -> None:
    image = np.full((3, 5), 200, dtype=np.uint8)
    wire = encode_image(image, 70000)
    body = wire[64:]
    expected = (b"IVU PLUS IMAGE\x00\x00"  # 0-15 prefix, NUL-padded
                + (1).to_bytes(4, "little")  # 16-19 header version
                + len(body).to_bytes(4, "little")  # 20-23 image size
                + (70000).to_bytes(4, "little")  # 24-27 frame number
                + (5).to_bytes(2, "little") + (3).to_bytes(2, "little")  # 28-31 width, height
                + (0).to_bytes(2, "little")  # 32-33 format: bitmap
                + bytes(30))  # 34-63 reserved
    assert wire[:64] == expected
    # Windows BMP: "BM", then the file size as a little-endian UInt32 (BITMAPFILEHEADER)
    assert body[:2] == b"BM" and int.from_bytes(body[2:6], "little") == len(body)


def test_images_arrive_with_their_frame_numbers_and_decode() -> None:
    async def run() -> list[tuple[int | None, str | None]]:
        server = ImageExportServer()
        port = await server.start()
        cam = camera(port)
        try:
            await cam.open()
            for _ in range(200):  # the server has seen the connection (a hang detector)
                if server.clients:
                    break
                await asyncio.sleep(0.01)
            for n, text in ((41, "ITEM-41"), (42, "ITEM-42"), (44, None)):
                server.publish(n, render(text, Defects(), n, SIM).image)
            frames = [await cam.grab() for _ in range(3)]
            return [(f.index, DECODER.decode(f.image).text) for f in frames]
        finally:
            await cam.close()
            await server.close()

    assert asyncio.run(run()) == [(41, "ITEM-41"), (42, "ITEM-42"), (44, None)]


def test_a_client_gets_only_images_snapped_after_it_connected() -> None:
    async def run() -> list[int | None]:
        server = ImageExportServer()
        port = await server.start()
        blank = render(None, Defects(), 0, SIM).image
        assert server.publish(1, blank) == 0  # nobody connected: the image is gone
        cam = camera(port)
        try:
            await cam.open()
            for _ in range(200):
                if server.clients:
                    break
                await asyncio.sleep(0.01)
            server.publish(2, blank)
            first = await cam.grab()
            await cam.close()  # the agent dies; the camera goes on snapping
            server.publish(3, blank)
            await cam.open()
            for _ in range(200):
                if server.clients:
                    break
                await asyncio.sleep(0.01)
            server.publish(4, blank)
            second = await cam.grab()
            return [first.index, second.index]
        finally:
            await cam.close()
            await server.close()

    assert asyncio.run(run()) == [2, 4]


def test_a_stalled_client_loses_images_instead_of_stalling_the_camera() -> None:
    async def run() -> tuple[int, int]:
        server = ImageExportServer(channel_images=2)
        port = await server.start()
        sock = socket.create_connection(("127.0.0.1", port))  # connects and never reads
        try:
            for _ in range(200):
                if server.clients:
                    break
                await asyncio.sleep(0.01)
            image = render("X", Defects(), 0, SIM).image
            for n in range(200):
                server.publish(n, image)
            return server.sent, server.dropped
        finally:
            sock.close()
            await server.close()

    sent, dropped = asyncio.run(run())
    assert dropped > 0 and sent + dropped == 200


async def _serve_bytes(data: bytes, *, close: bool) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        if close:
            writer.close()
        else:
            await reader.read()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


def test_a_ve_header_and_a_jpeg_body_are_read_too() -> None:
    ok, jpeg = cv2.imencode(".jpg", render("VE-7", Defects(), 7, SIM).image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    body = jpeg.tobytes()
    head = struct.pack("<16sIIIHHH30s", b"VE IMAGE", 2, len(body), 2**32 - 1, 640, 480, 1, b"")

    async def run() -> tuple[int | None, str | None]:
        server, port = await _serve_bytes(head + body, close=False)
        try:
            async with camera(port) as cam:
                frame = await cam.grab()
            return frame.index, DECODER.decode(frame.image).text
        finally:
            server.close()

    assert asyncio.run(run()) == (2**32 - 1, "VE-7")


@pytest.mark.parametrize(("data", "message"), [
    (b"HTTP/1.1 200 OK\r\n" + bytes(47), "not an image export header"),
    (struct.pack("<16sIIIHHH30s", b"IVU PLUS IMAGE", 1, 10, 5, 2, 2, 7, b""), "unknown image format 7"),
    (struct.pack("<16sIIIHHH30s", b"IVU PLUS IMAGE", 1, 2**31, 5, 2, 2, 0, b""), "outside 1.."),
    (struct.pack("<16sIIIHHH30s", b"IVU PLUS IMAGE", 1, 1000, 5, 2, 2, 0, b"") + b"BM" * 10, "cut short"),
    (struct.pack("<16sIIIHHH30s", b"IVU PLUS IMAGE", 1, 8, 5, 2, 2, 0, b"") + b"notanimg", "does not decode"),
])
def test_a_lying_or_dying_camera_is_a_camera_error_and_reopen_works(data: bytes, message: str) -> None:
    async def run() -> tuple[str, CameraState, int | None]:
        server, port = await _serve_bytes(data, close=True)
        good = ImageExportServer()
        try:
            cam = camera(port, frame_timeout_s=5)
            await cam.open()
            with pytest.raises(CameraError) as err:
                await cam.grab()
            state = cam.state
            # the camera is fixed: the station closes and opens again, on the same settings
            cam.settings = BannerExportSettings(url=f"tcp://127.0.0.1:{await good.start()}")
            await cam.close()
            await cam.open()
            for _ in range(200):
                if good.clients:
                    break
                await asyncio.sleep(0.01)
            good.publish(9, render("OK", Defects(), 9, SIM).image)
            frame = await cam.grab()
            await cam.close()
            return str(err.value), state, frame.index
        finally:
            server.close()
            await good.close()

    text, state, index = asyncio.run(run())
    assert message in text and "cam1" in text
    assert state is CameraState.FAILED and index == 9


def test_no_image_in_time_is_no_frame_and_the_stream_stays_in_step() -> None:
    async def run() -> tuple[CameraState, int | None]:
        server = ImageExportServer()
        port = await server.start()
        cam = camera(port, frame_timeout_s=0.2)
        try:
            await cam.open()
            with pytest.raises(NoFrame, match=r"no image in 0\.2 s"):
                await cam.grab()
            state = cam.state
            for _ in range(200):
                if server.clients:
                    break
                await asyncio.sleep(0.01)
            server.publish(5, render("LATE", Defects(), 5, SIM).image)
            return state, (await cam.grab()).index
        finally:
            await cam.close()
            await server.close()

    assert asyncio.run(run()) == (CameraState.OPEN, 5)


def test_nobody_listening_is_a_camera_error_naming_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused

        async def run() -> None:
            await camera(port).open()

        with pytest.raises(CameraError, match=rf"cam1.*127.0.0.1:{port}.*cannot connect"):
            asyncio.run(run())


def test_settings_want_a_tcp_url_and_default_to_the_export_port() -> None:
    assert BannerExportSettings(url="tcp://10.0.0.7").address == ("10.0.0.7", 32200)
    with pytest.raises(ValidationError, match="expected tcp://HOST"):
        BannerExportSettings(url="http://10.0.0.7")
    assert registry.load(registry.DeviceKind.CAMERA, "banner_export") is BannerImageExport
    with pytest.raises(ValidationError):
        registry.settings_model(registry.DeviceKind.CAMERA, "banner_export").model_validate(
            {"url": "tcp://a:1", "not_a_key": 1})
