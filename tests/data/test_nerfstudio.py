"""nerfstudio ``transforms.json`` loader."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import trimesh

from render3d.cameras import opengl_to_opencv
from render3d.data import load_dataset
from render3d.errors import DataError, DataWarning
from tests.data.synthetic import distorted_render, orbit_c2w, pinhole_render, random_images, write_png

WIDTH, HEIGHT = 20, 16


def write_scene(root, count=9, images=None, **top_level):
    """A nerfstudio folder; returns ``(meta, c2w OpenCV [N,4,4], images [N,H,W,3])``."""
    c2w = orbit_c2w(count, radius=3.0)
    if images is None:
        images = random_images(count, WIDTH, HEIGHT, 3, seed=7)
    height, width = images.shape[1:3]
    frames = []
    for i in range(count):
        write_png(root / "images" / f"frame_{i:05d}.png", images[i])
        gl = opengl_to_opencv(torch.from_numpy(c2w[i])).numpy()
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": gl.tolist()})
    meta = {"camera_model": "OPENCV", "fl_x": 17.0, "fl_y": 18.0, "cx": 10.0, "cy": 8.0, "w": width, "h": height,
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames, **top_level}
    (root / "transforms.json").write_text(json.dumps(meta))
    return meta, c2w, images


def test_poses_intrinsics_and_per_frame_overrides(tmp_path):
    meta, c2w, images = write_scene(tmp_path)
    meta["frames"][3]["fl_x"] = 21.0
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    data = load_dataset(tmp_path, "all")
    assert data.format == "nerfstudio" and len(data) == 9
    np.testing.assert_allclose(data.cameras.c2w.numpy(), c2w, atol=1e-6)
    np.testing.assert_allclose(data.cameras.K[0].numpy(), [[17, 0, 10], [0, 18, 8], [0, 0, 1]])
    assert float(data.cameras.K[3, 0, 0]) == 21.0 and float(data.cameras.K[3, 1, 1]) == 18.0
    np.testing.assert_array_equal(data.images.numpy(), images)
    assert data.points is None and data.alphas is None


def test_splits_every_nth_without_filename_lists(tmp_path):
    write_scene(tmp_path)
    test = load_dataset(tmp_path, "test", test_every=4)
    train = load_dataset(tmp_path, "train", test_every=4)
    assert test.image_names == [f"images/frame_{i:05d}.png" for i in (0, 4, 8)]
    assert train.image_names == [f"images/frame_{i:05d}.png" for i in (1, 2, 3, 5, 6, 7)]
    assert load_dataset(tmp_path, "val", test_every=4).image_names == test.image_names


def test_splits_from_filename_lists(tmp_path):
    names = [f"images/frame_{i:05d}.png" for i in range(9)]
    write_scene(tmp_path, train_filenames=names[:6], test_filenames=["./" + n for n in names[6:]])
    assert load_dataset(tmp_path, "train").image_names == names[:6]
    assert load_dataset(tmp_path, "test").image_names == names[6:]
    assert load_dataset(tmp_path, "val").image_names == names[6:]  # test stands in for val


def test_frames_whose_image_is_gone_are_skipped_with_one_note(tmp_path):
    # instant-ngp's and nerfstudio's blur filters delete frames' files and keep the frames.
    meta, c2w, images = write_scene(tmp_path)
    for i in (2, 5):
        (tmp_path / "images" / f"frame_{i:05d}.png").unlink()
    with pytest.warns(DataWarning, match=r"2 of the 9 all frames have no image file \(first: images/frame_00002.png\); "
                                         r"loading the other 7"):
        data = load_dataset(tmp_path, "all")
    kept = [i for i in range(9) if i not in (2, 5)]
    assert data.image_names == [f"images/frame_{i:05d}.png" for i in kept]
    np.testing.assert_allclose(data.cameras.c2w.numpy(), c2w[kept], atol=1e-6)  # each image keeps its own pose
    np.testing.assert_array_equal(data.images.numpy(), images[kept])
    # the every-nth split of the frames is the same with or without the missing files
    assert load_dataset(tmp_path, "test", test_every=4).image_names == [f"images/frame_{i:05d}.png" for i in (0, 4, 8)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # what --strict does
        with pytest.raises(DataWarning):
            load_dataset(tmp_path, "all")
    for i in kept:
        (tmp_path / "images" / f"frame_{i:05d}.png").unlink()
    with pytest.raises(DataError, match="none of the 9 all frames has its image file"):
        load_dataset(tmp_path, "all")


def test_the_cli_notes_skipped_frames_once_and_strict_refuses_them(tmp_path, capsys):
    from render3d.apps.cli import main

    write_scene(tmp_path)
    (tmp_path / "images" / "frame_00003.png").unlink()
    assert main(["info", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("render3d: note:") == 1 and "1 of the 7 train frames has no image file" in err
    assert main(["info", str(tmp_path), "--strict"]) == 2
    assert "render3d info: error:" in capsys.readouterr().err.strip().splitlines()[-1]
    with pytest.warns(DataWarning):  # the CLI's --strict ended with the command
        load_dataset(tmp_path, "train")


def test_unknown_filename_in_split_list_is_named(tmp_path):
    write_scene(tmp_path, train_filenames=["images/missing.png"], test_filenames=[])
    with pytest.raises(DataError, match=r"transforms\.json: train_filenames lists images/missing\.png"):
        load_dataset(tmp_path, "train")


def test_camera_bounds_use_aabb_scale(tmp_path):
    write_scene(tmp_path)
    plain = load_dataset(tmp_path, "train")
    write_scene(tmp_path, aabb_scale=2)
    scaled = load_dataset(tmp_path, "train")
    centres = plain.cameras.centers
    assert ((centres >= plain.aabb[0] - 1e-5) & (centres <= plain.aabb[1] + 1e-5)).all()
    np.testing.assert_allclose((scaled.aabb[1] - scaled.aabb[0]).numpy(), 2 * (plain.aabb[1] - plain.aabb[0]).numpy(), rtol=1e-5)
    assert 0 < plain.near < plain.far


def test_ply_points_are_used_as_stored_despite_applied_transform(tmp_path):
    """nerfstudio's colmap_to_json applies applied_transform to the PLY itself; applying it
    again would mirror the cloud."""
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3))
    colors = np.tile(np.array([[255, 0, 0, 255]], np.uint8), (50, 1))
    trimesh.PointCloud(points, colors=colors).export(tmp_path / "sparse_pc.ply")
    applied = [[0.0, 1.0, 0.0, 0.1], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.2]]
    write_scene(tmp_path, ply_file_path="sparse_pc.ply", applied_transform=applied)
    data = load_dataset(tmp_path, "train")
    np.testing.assert_allclose(data.points.numpy(), points, atol=1e-6)
    np.testing.assert_allclose(data.point_colors[0].numpy(), [1.0, 0.0, 0.0])
    inside = ((data.points >= data.aabb[0]) & (data.points <= data.aabb[1])).all(dim=1)
    assert inside.float().mean() > 0.9


def test_opencv_distortion_is_undistorted(tmp_path):
    from render3d.data.undistort import Distortion

    distortion = Distortion(k1=-0.2, k2=0.03, p1=0.004, p2=-0.006)
    K = np.array([[24.0, 0, 20.0], [0, 25.0, 16.0], [0, 0, 1]])
    distorted = distorted_render(K, distortion, 40, 32)
    assert np.isfinite(distorted).all()
    images = np.round(distorted * 255).astype(np.uint8)[None].repeat(2, axis=0)
    write_scene(tmp_path, count=2, images=images, fl_x=24.0, fl_y=25.0, cx=20.0, cy=16.0, k1=-0.2, k2=0.03, p1=0.004, p2=-0.006)
    data = load_dataset(tmp_path, "all")
    truth = pinhole_render(K, 40, 32)
    interior = (slice(3, -3), slice(3, -3))
    assert np.abs(distorted - truth)[interior].max() > 0.05  # the distortion matters
    assert np.abs(data.image(0).numpy() - truth)[interior].max() < 0.01  # 8-bit quantisation (0.002) + bilinear interpolation


def test_fisheye_is_refused_in_one_line(tmp_path):
    write_scene(tmp_path, camera_model="OPENCV_FISHEYE")
    with pytest.raises(DataError, match=r"transforms\.json: camera_model OPENCV_FISHEYE is not supported") as info:
        load_dataset(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_intrinsics_and_declared_size_mismatch_are_named(tmp_path):
    meta, _, _ = write_scene(tmp_path)
    del meta["fl_x"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"transforms\.json: missing key 'fl_x' in frame 0 or at the top level"):
        load_dataset(tmp_path)
    meta["fl_x"] = 17.0
    meta["w"] = 40
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"frame \d+ declares w x h = 40x16 but .*frame_\d+\.png is 20x16"):
        load_dataset(tmp_path)


def test_malformed_json_names_line(tmp_path):
    write_scene(tmp_path)
    (tmp_path / "transforms.json").write_text('{"frames": [\n\n  {"file_path": }]}')
    with pytest.raises(DataError, match=r"malformed JSON in .*transforms\.json at line 3"):
        load_dataset(tmp_path)
