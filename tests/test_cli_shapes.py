"""The command line on shapes: `render3d info` for meshes, point clouds and mesh folders, and
`render3d eval RUN --mesh-gt MESH` (in world coordinates), with one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from render3d.apps.cli import main
from tests.conftest import write_nerf_synthetic


def _exit_status(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def test_info_describes_a_mesh_a_point_cloud_and_a_folder(tmp_path, capsys):
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    box.apply_translation((3.0, 0.0, 0.0))
    box.export(tmp_path / "box.stl")
    assert main(["info", str(tmp_path / "box.stl")]) == 0
    printed = capsys.readouterr().out
    assert "8 vertices, 12 faces, watertight" in printed and "bounds: [2.0, -0.5, -0.5] .. [4.0, 0.5, 0.5]" in printed
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(500, 3)))
    assert main(["info", str(tmp_path / "cloud.npy")]) == 0
    assert "point cloud, 500 points, normals: no" in capsys.readouterr().out
    folder = tmp_path / "shapes"
    folder.mkdir()
    box.export(folder / "a.obj")
    trimesh.Trimesh(box.vertices, box.faces[1:]).export(folder / "b.ply")
    assert main(["info", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "shape collection, 2 meshes" in printed and "b: 8 vertices, 11 faces, not watertight" in printed


@pytest.mark.parametrize("name, content, message", [
    ("empty.obj", "# no faces\n", "empty mesh"),
    ("few.xyz", "0 0 0\n1 1 1\n", "2 points; a point cloud needs at least 100"),
    ("nan.xyz", "nan 0 0\n" * 200, "NaN"),
    ("missing.ply", None, "no such file"),
])
def test_info_on_bad_shapes_is_one_line_and_exit_2(tmp_path, capsys, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    assert _exit_status(["info", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and name in err


@pytest.fixture
def run(toy_method, tmp_path):
    data = write_nerf_synthetic(tmp_path / "scene")
    out = tmp_path / "run"
    assert main(["fit", str(data), "--method", "toy", "--out", str(out), "--steps", "20", "--quiet", "--no-eval"]) == 0
    return out


@pytest.mark.slow
def test_eval_mesh_gt_compares_in_world_coordinates(run, tmp_path, capsys):
    truth = tmp_path / "truth.ply"
    assert main(["export", str(run), "--mesh", str(truth), "--resolution", "32"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--mesh-gt", str(truth), "--resolution", "32", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["mesh"]
    assert metrics["iou"] > 0.999 and metrics["fscore@1%"] == 1.0 and metrics["chamfer_l1_fraction"] < 1e-6
    recorded = json.loads((run / "metrics.json").read_text())["mesh"]
    assert recorded["iou"] == metrics["iou"]
    shifted = trimesh.load(truth)
    shifted.apply_translation((0.5 * shifted.extents[0], 0.0, 0.0))
    shifted.export(tmp_path / "shifted.obj")
    assert main(["eval", str(run), "--mesh-gt", str(tmp_path / "shifted.obj"), "--resolution", "32"]) == 0
    printed = capsys.readouterr().out
    assert "mesh vs" in printed and "IoU 0." in printed and "mesh fscore@1%:" in printed


def test_eval_mesh_gt_errors_are_one_line(run, tmp_path, capsys):
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(500, 3)))
    for argv, message in (
        (["eval", str(run), "--mesh-gt", str(tmp_path / "missing.obj")], "missing.obj: no such file"),
        (["eval", str(run), "--mesh-gt", str(tmp_path / "cloud.npy")], "must be one mesh file"),
    ):
        assert _exit_status(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
