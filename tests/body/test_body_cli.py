"""render3d pose-body / fit-body / export-body on the procedural body: outputs written and
readable; bad inputs give one line on stderr and exit status 2."""
import json
import math

import numpy as np
import pytest
import torch
import trimesh

from render3d.apps.cli import main
from render3d.body import procedural_body
from render3d.io.glb import read_glb
from tests.body.test_fitting import CAMERA, synthetic


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("body_cli")
    keypoints, _ = synthetic(procedural_body())
    triples = torch.cat([keypoints.points, keypoints.confidence[:, None]], 1)
    (folder / "coco.json").write_text(json.dumps({"keypoints": triples.reshape(-1).tolist()}))
    (folder / "camera.json").write_text(json.dumps({"fx": 500, "fy": 500, "cx": 320, "cy": 240,
                                                    "width": CAMERA.width, "height": CAMERA.height}))
    return folder


def _one_line_error(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err
    return err


def test_pose_body_writes_meshes(tmp_path):
    (tmp_path / "pose.json").write_text(json.dumps({"left_elbow": [0, -1.2, 0], "transl": [0, 0, 1]}))
    assert main(["pose-body", "--model", "procedural", "--pose", str(tmp_path / "pose.json"),
                 "--out", str(tmp_path / "posed.ply")]) == 0
    mesh = trimesh.load(tmp_path / "posed.ply", process=False)
    body = procedural_body()
    pose = torch.zeros(1, body.n_joints, 3)
    pose[0, 5] = torch.tensor([0, -1.2, 0])
    with torch.no_grad():
        expected = body(pose=pose, transl=torch.tensor([[0.0, 0, 1]])).vertices[0].numpy()
    np.testing.assert_allclose(mesh.vertices, expected, atol=1e-6)


@pytest.mark.slow  # a short fit (3 L-BFGS iterations per stage), a few seconds
def test_fit_then_export(tmp_path, files, capsys):
    run = tmp_path / "run"
    assert main(["fit-body", str(files / "coco.json"), "--model", "procedural", "--camera", str(files / "camera.json"),
                 "--out", str(run), "--iterations", "3"]) == 0
    params = json.loads((run / "params.json").read_text())
    assert params["convention"] == "coco17" and len(params["pose_axis_angle"]) == 16
    assert math.isfinite(params["reprojection_error_px"])
    assert trimesh.load(run / "body.obj", process=False).vertices.shape == (1530, 3)
    from PIL import Image

    assert Image.open(run / "overlay.png").size == (640, 480)
    assert main(["export-body", str(run), "--glb", str(tmp_path / "fit.glb")]) == 0
    document, _ = read_glb(tmp_path / "fit.glb")
    assert len(document["skins"][0]["joints"]) == 16


def test_bad_inputs_are_one_line(tmp_path, files, capsys):
    base = ["--model", "procedural", "--camera", str(files / "camera.json"), "--out", str(tmp_path / "run")]
    (tmp_path / "short.json").write_text(json.dumps({"keypoints": [1.0, 2.0, 1.0] * 12}))
    _one_line_error(capsys, ["fit-body", str(tmp_path / "short.json"), *base], "got 12")
    (tmp_path / "nan.json").write_text(json.dumps({"keypoints": [[float("nan"), 1.0, 1.0]] * 17}))
    _one_line_error(capsys, ["fit-body", str(tmp_path / "nan.json"), *base], "NaN")
    _one_line_error(capsys, ["fit-body", str(files / "coco.json"), "--model", str(tmp_path / "SMPL_NEUTRAL.pkl"),
                             "--camera", str(files / "camera.json"), "--out", str(tmp_path / "run")],
                    "model file not found")
    _one_line_error(capsys, ["fit-body", str(files / "coco.json"), "--model", "procedural", "--camera",
                             str(tmp_path / "nope.json"), "--out", str(tmp_path / "run")], "camera file not found")
    _one_line_error(capsys, ["export-body", str(tmp_path / "empty"), "--glb", str(tmp_path / "x.glb")],
                    "params.json")
    _one_line_error(capsys, ["pose-body", "--model", "procedural", "--out", str(tmp_path / "x.stl")], ".obj, .ply or .glb")
    assert not (tmp_path / "run").exists()
