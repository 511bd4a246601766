"""`lineagent camera test|snap` through typer's CliRunner on real image files and configured cameras."""

from __future__ import annotations

from pathlib import Path

import cv2
from typer.testing import CliRunner

from agent.cli.main import app
from drivers.sim.camera import Defects, SimCameraSettings, render
from tests.helpers import make_line

runner = CliRunner()
SIM = SimCameraSettings()
REGION = ",".join(str(v) for v in SIM.region)


def write(path: Path, text: str, defects: Defects | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), render(text, defects or Defects(), 0, SIM).image)
    return path


def test_camera_test_on_a_good_image_shows_code_grade_and_disclaimer(tmp_path: Path) -> None:
    img = write(tmp_path / "one.png", "QR-OK-1")
    result = runner.invoke(app, ["camera", "test", str(img), "--region", REGION])
    assert result.exit_code == 0, result.output
    assert "QR-OK-1" in result.output and "crop" in result.output
    assert "not certified verification" in result.output and "1 of 1 image(s) read" in result.output


def test_camera_test_on_a_folder_exits_1_when_any_image_has_no_read(tmp_path: Path) -> None:
    write(tmp_path / "imgs" / "a.png", "QR-A")
    write(tmp_path / "imgs" / "b.png", "QR-B", Defects(missing=True))
    result = runner.invoke(app, ["camera", "test", str(tmp_path / "imgs"), "--region", REGION])
    assert result.exit_code == 1
    assert "QR-A" in result.output and "no read" in result.output and "1 of 2 image(s) read" in result.output


def test_camera_test_refuses_bad_input_with_the_reason(tmp_path: Path) -> None:
    assert runner.invoke(app, ["camera", "test", str(tmp_path / "none.png")]).exit_code == 4
    img = write(tmp_path / "x.png", "X")
    bad = runner.invoke(app, ["camera", "test", str(img), "--region", "1,2,3"])
    assert bad.exit_code == 2 and "x,y,width,height" in bad.output
    dm = runner.invoke(app, ["camera", "test", str(img), "--backend", "pyzbar", "--format", "datamatrix"])
    assert dm.exit_code == 2 and "cannot read DataMatrix" in dm.output


def test_camera_snap_grabs_from_a_configured_folder_camera(tmp_path: Path) -> None:
    cfg = make_line(tmp_path)
    write(tmp_path / "replay" / "0001.png", "SNAP-1")
    with cfg.open("a") as f:
        f.write(f"devices:\n  cameras:\n    cam1: {{type: folder, path: {tmp_path / 'replay'}}}\n"
                "    cam2: {type: sim}\n")
    ok = runner.invoke(app, ["camera", "snap", "cam1", "-c", str(cfg), "--region", REGION,
                             "--save", str(tmp_path / "snap.png")])
    assert ok.exit_code == 0, ok.output
    assert "SNAP-1" in ok.output and (tmp_path / "snap.png").exists()
    empty = runner.invoke(app, ["camera", "snap", "cam2", "-c", str(cfg)])  # nothing shown to the sim: no read
    assert empty.exit_code == 1 and "no read" in empty.output
    missing = runner.invoke(app, ["camera", "snap", "cam9", "-c", str(cfg)])
    assert missing.exit_code == 4 and "cam1, cam2" in missing.output
