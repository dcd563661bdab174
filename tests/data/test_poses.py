"""Every loader refuses a camera pose that is not a rigid motion, naming the file and the frame."""
from __future__ import annotations

import json

import numpy as np
import pytest

from render3d.data import load_dataset
from render3d.data.colmap_io import read_model, write_model
from render3d.data.poses import check_poses
from render3d.errors import DataError
from tests.data.synthetic import orbit_c2w, write_blender_scene, write_colmap_scene
from tests.data.test_nerfstudio import write_scene as write_nerfstudio_scene

BAD_ROTATIONS = {
    "zeros": (np.zeros((3, 3)), "not orthonormal"),
    "singular": (np.diag([1.0, 1.0, 0.0]), "not orthonormal"),
    "scaled": (2.0 * np.eye(3), "not orthonormal"),
    "sheared": (np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), "not orthonormal"),
    "reflection": (np.diag([1.0, 1.0, -1.0]), r"determinant -1, not \+1"),
    "nan": (np.full((3, 3), np.nan), "NaN or infinite"),
}


def test_rotations_and_axis_flips_pass():
    poses = orbit_c2w(5)
    check_poses(poses, "file", [f"frame {i}" for i in range(5)])
    opengl = poses @ np.diag([1.0, -1.0, -1.0, 1.0])  # the OpenGL <-> OpenCV flip is a rotation too
    printed = np.round(poses, 4)  # poses written with few digits
    check_poses(np.concatenate([opengl, printed]), "file", [f"frame {i}" for i in range(10)])


@pytest.mark.parametrize("kind", sorted(BAD_ROTATIONS))
def test_a_bad_rotation_names_the_file_and_frame(kind):
    poses = orbit_c2w(4)
    poses[2, :3, :3] = BAD_ROTATIONS[kind][0]
    with pytest.raises(DataError, match=f"^poses.json: frame 2: .*{BAD_ROTATIONS[kind][1]}") as raised:
        check_poses(poses, "poses.json", [f"frame {i}" for i in range(4)])
    assert "\n" not in str(raised.value)
    check_poses(poses[:2], "poses.json", ["frame 0", "frame 1"])  # the good ones pass


def test_a_nan_translation_is_refused():
    poses = orbit_c2w(2)
    poses[1, 0, 3] = np.inf
    with pytest.raises(DataError, match="frame 1: the camera pose has NaN or infinite entries"):
        check_poses(poses, "f", ["frame 0", "frame 1"])


@pytest.mark.parametrize("kind", ["zeros", "singular", "reflection"])
def test_blender_loader_refuses_a_bad_pose(tmp_path, kind):
    write_blender_scene(tmp_path, counts=(("train", 3), ("test", 2)))
    path = tmp_path / "transforms_train.json"
    meta = json.loads(path.read_text())
    matrix = np.array(meta["frames"][1]["transform_matrix"])
    matrix[:3, :3] = BAD_ROTATIONS[kind][0]
    meta["frames"][1]["transform_matrix"] = matrix.tolist()
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=rf"transforms_train.json: frame 1 \(./train/r_1\): .*{BAD_ROTATIONS[kind][1]}"):
        load_dataset(tmp_path, "train")


def test_nerfstudio_loader_refuses_a_bad_pose(tmp_path):
    meta, _, _ = write_nerfstudio_scene(tmp_path, count=4)
    meta["frames"][3]["transform_matrix"][0][:3] = [0.0, 0.0, 0.0]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"transforms.json: frame 3 \(images/frame_00003.png\): .*not orthonormal"):
        load_dataset(tmp_path, "train")


def test_colmap_loader_refuses_a_zero_quaternion(tmp_path):
    write_colmap_scene(tmp_path, count=4)
    model = tmp_path / "sparse" / "0"
    cameras, images, points = read_model(model)
    images[2].qvec[:] = 0.0
    write_model(model, cameras, images, points, binary=True)
    with pytest.raises(DataError, match=f"{model}: image {images[2].name}: the camera pose has NaN"):
        load_dataset(tmp_path, "train")
