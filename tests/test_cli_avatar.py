"""The command line with an avatar: fit, render in a pose and through a motion, export a posed
splat and the skinned body; bad pose files are one-line errors (exit status 2)."""
import json

import imageio.v3 as iio
import numpy as np
import pytest

from render3d.apps.cli import main
from tests.methods.avatar_data import write_avatar_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = write_avatar_folder(tmp_path_factory.mktemp("avatar_cli"))
    out = tmp_path_factory.mktemp("avatar_cli_run") / "run"
    assert main(["fit", str(data), "--method", "avatar", "--out", str(out), "--steps", "20", "--quiet"]) == 0
    return out


def test_fit_reports_the_held_out_mask_iou(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval"]["split"] == "test" and 0.0 < metrics["eval"]["mean"]["mask_iou"] <= 1.0


def test_render_in_a_pose_and_through_a_motion(run, tmp_path):
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"left_elbow": [0.0, 0.0, 1.5], "transl": [0.0, 0.1, 0.0]}))
    rest, posed = tmp_path / "rest", tmp_path / "posed"
    assert main(["render", str(run), "--out", str(rest), "--quiet"]) == 0
    assert main(["render", str(run), "--pose", str(pose), "--out", str(posed), "--quiet"]) == 0
    first = sorted(posed.iterdir())[0].name
    assert not np.array_equal(iio.imread(rest / first), iio.imread(posed / first))

    motion = tmp_path / "motion.json"
    bends = [{"left_knee": [0.3 * t, 0.0, 0.0]} for t in range(4)]
    motion.write_text(json.dumps({"fps": 12, "frames": bends}))
    frames, video = tmp_path / "motion", tmp_path / "walk.gif"
    assert main(["render", str(run), "--motion", str(motion), "--orbit", "8", "--out", str(frames),
                 "--video", str(video), "--quiet"]) == 0
    names = sorted(path.name for path in frames.iterdir())
    assert names == [f"motion_{index:04d}.png" for index in range(4)]
    assert video.is_file() and len(iio.imread(video, index=None)) == 4


def test_rendering_the_test_split_fits_held_out_poses_as_evaluation_does(tmp_path):
    """Held-out frames of keypoint data are fitted to the test images' keypoints and masks and
    refined against the images: ``render`` loads them, so it renders what ``fit`` scored."""
    data = write_avatar_folder(tmp_path / "data", keypoints=True)
    run, renders = tmp_path / "run", tmp_path / "renders"
    assert main(["fit", str(data), "--method", "avatar", "--out", str(run), "--steps", "20", "--config",
                 "test_pose_steps=40", "--quiet"]) == 0
    assert main(["render", str(run), "--out", str(renders), "--quiet"]) == 0
    frames = json.loads((data / "transforms_test.json").read_text())["frames"]
    errors = []
    for index, frame in enumerate(frames):
        rgba = iio.imread(data / f"{frame['file_path']}.png").astype(np.float64) / 255
        truth = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]
        rendered = iio.imread(renders / f"test_{index:04d}.png").astype(np.float64)[..., :3] / 255
        errors.append(-10 * np.log10(np.mean((rendered - truth) ** 2)))
    scored = json.loads((run / "metrics.json").read_text())["eval"]["mean"]["psnr"]
    assert np.mean(errors) == pytest.approx(scored, abs=0.1)


def test_export_posed_splat_and_skinned_body(run, tmp_path):
    from render3d.io.splat_ply import load_splat_ply

    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"right_elbow": [0.0, 0.0, -1.5]}))
    rest, posed, body = tmp_path / "rest.ply", tmp_path / "posed.ply", tmp_path / "body.glb"
    assert main(["export", str(run), "--splat", str(rest)]) == 0
    assert main(["export", str(run), "--splat", str(posed), "--pose", str(pose), "--body", str(body)]) == 0
    assert not np.allclose(load_splat_ply(rest)["means"], load_splat_ply(posed)["means"])
    assert body.read_bytes()[:4] == b"glTF"
    canonical = load_splat_ply(tmp_path / "body.gaussians.ply")
    assert canonical["means"].shape == load_splat_ply(rest)["means"].shape


def test_bad_pose_input_is_one_line(run, tmp_path, capsys):
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"left_tail": [0.0, 0.0, 1.0]}))
    assert main(["render", str(run), "--pose", str(pose), "--quiet"]) == 2
    assert "unknown joint 'left_tail'" in capsys.readouterr().err
    motion = tmp_path / "motion.json"
    motion.write_text(json.dumps({"frames": []}))
    assert main(["render", str(run), "--motion", str(motion), "--quiet"]) == 2
    assert "non-empty 'frames'" in capsys.readouterr().err
    assert main(["export", str(run), "--body", str(tmp_path / "body.obj")]) == 2
    assert "must end in .glb" in capsys.readouterr().err
