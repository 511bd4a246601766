"""Image sources through the one Camera interface: a real folder of PNGs, a real video file through
OpenCV's VideoCapture, and the simulated camera; frames decoded by the real decoder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import pytest
from pydantic import ValidationError

from agent.verify.decode import Decoder, DecoderSettings
from agent.verify.regions import Region
from drivers import registry
from drivers.cameras.base import CameraClosed, CameraError, CameraState, NoFrame
from drivers.cameras.folder import FolderCamera, FolderSettings
from drivers.cameras.opencv import OpenCVCamera, OpenCVSettings
from drivers.sim.camera import Defects, SimCamera, SimCameraSettings, render

SIM = SimCameraSettings()
DECODER = Decoder(DecoderSettings(region=Region.of(SIM.region), deadline_ms=None))


def write_prints(folder: Path, texts: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        assert cv2.imwrite(str(folder / f"item-{i:03d}.png"), render(text, Defects(), i, SIM).image)


def test_folder_replays_images_in_name_order_then_reports_exhaustion(tmp_path: Path) -> None:
    write_prints(tmp_path, ["A-1", "A-2", "A-3"])
    (tmp_path / "notes.txt").write_text("not an image")

    async def run() -> tuple[list[str | None], list[int], CameraState]:
        cam = FolderCamera(FolderSettings(path=tmp_path), name="replay")
        await cam.open()
        frames = [await cam.grab() for _ in range(3)]
        with pytest.raises(NoFrame, match="all 3 images"):
            await cam.grab()
        state = cam.state
        await cam.close()
        return [DECODER.decode(f.image).text for f in frames], [f.seq for f in frames], state

    texts, seqs, state = asyncio.run(run())
    assert texts == ["A-1", "A-2", "A-3"] and seqs == [0, 1, 2] and state is CameraState.EXHAUSTED


def test_folder_loop_starts_again(tmp_path: Path) -> None:
    write_prints(tmp_path, ["L-1", "L-2"])

    async def run() -> list[str]:
        async with FolderCamera(FolderSettings(path=tmp_path, loop=True)) as cam:
            return [(await cam.grab()).source for _ in range(5)]

    assert asyncio.run(run()) == ["item-000.png", "item-001.png", "item-000.png", "item-001.png", "item-000.png"]


def test_folder_errors_name_the_folder(tmp_path: Path) -> None:
    async def open_(path: Path) -> None:
        await FolderCamera(FolderSettings(path=path), name="cam1").open()

    with pytest.raises(CameraError, match=r"cam1.*no images"):
        asyncio.run(open_(tmp_path))
    with pytest.raises(CameraError, match="is not a folder"):
        asyncio.run(open_(tmp_path / "nope"))


def test_grab_before_open_is_refused() -> None:
    async def run() -> None:
        await SimCamera(name="s1").grab()

    with pytest.raises(CameraClosed, match="'s1' is closed"):
        asyncio.run(run())


def test_opencv_camera_reads_a_real_video_stream(tmp_path: Path) -> None:
    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (SIM.width, SIM.height), False)
    assert writer.isOpened()
    for i in range(3):
        writer.write(render(f"V-{i}", Defects(), i, SIM).image)
    writer.release()

    async def run() -> list[str | None]:
        async with OpenCVCamera(OpenCVSettings(url=str(video)), name="usb0") as cam:
            texts = [DECODER.decode((await cam.grab()).image).text for _ in range(3)]
            with pytest.raises(NoFrame, match="usb0"):
                await cam.grab()
            return texts

    assert asyncio.run(run()) == ["V-0", "V-1", "V-2"]


def test_opencv_settings_need_exactly_one_source_and_a_known_backend() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        OpenCVSettings(device=0, url="rtsp://cam/stream")
    with pytest.raises(ValidationError, match="unknown OpenCV capture backend"):
        OpenCVSettings(device=0, backend="NOPE")
    with pytest.raises(ValidationError):
        OpenCVSettings(device=0, colour="yes")  # type: ignore[call-arg]


def test_opencv_camera_that_cannot_open_says_where(tmp_path: Path) -> None:
    async def run() -> None:
        await OpenCVCamera(OpenCVSettings(url=str(tmp_path / "missing.avi")), name="gige1").open()

    with pytest.raises(CameraError, match=r"gige1.*cannot open"):
        asyncio.run(run())


def test_sim_camera_shows_what_was_queued_and_an_empty_label_otherwise() -> None:
    async def run() -> list[str | None]:
        async with SimCamera(SIM) as cam:
            cam.show("POS-1")
            cam.show("POS-2", Defects(wrong_text="POS-9"))
            cam.show(None)
            frames = [await cam.grab() for _ in range(4)]
        assert [f.source for f in frames] == ["sim:POS-1", "sim:POS-9", "sim:None", "sim:None"]
        return [DECODER.decode(f.image).text for f in frames]

    assert asyncio.run(run()) == ["POS-1", "POS-9", None, None]


def test_sim_render_is_reproducible_from_its_seed() -> None:
    d = Defects(noise=0.05, perspective=0.08, rotation=12)
    assert (render("S", d, 5, SIM).image == render("S", d, 5, SIM).image).all()
    assert (render("S", d, 5, SIM).image != render("S", d, 6, SIM).image).any()


@pytest.mark.parametrize("name", ["opencv", "folder", "sim"])
def test_cameras_are_registered_with_strict_settings(name: str) -> None:
    cls = registry.load(registry.DeviceKind.CAMERA, name)
    model = registry.settings_model(registry.DeviceKind.CAMERA, name)
    assert cls.Settings is model
    with pytest.raises(ValidationError):
        model.model_validate({"not_a_key": 1})


def test_sim_print_region_must_lie_inside_the_frame() -> None:
    with pytest.raises(ValidationError, match=r"not inside the 640x480 frame"):
        SimCameraSettings(region=(600, 100, 100, 100))
