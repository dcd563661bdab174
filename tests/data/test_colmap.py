"""COLMAP model I/O (binary and text round trips, pycolmap interop) and the COLMAP loader."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from render3d.cameras import opengl_to_opencv
from render3d.data import detect_format, load_dataset
from render3d.data.colmap import load_colmap
from render3d.data.colmap_io import (
    ColmapCamera,
    ColmapImage,
    ColmapPoints,
    qvec_to_rotation,
    read_model,
    rotation_to_qvec,
    write_model,
)
from render3d.data.undistort import Distortion
from render3d.errors import DataError
from tests.data.synthetic import distorted_render, pinhole_render, write_colmap_scene, write_png16


def _model():
    rng = np.random.default_rng(0)
    cameras = {
        1: ColmapCamera(1, "PINHOLE", 640, 480, np.array([500.0, 501.5, 320.25, 239.75])),
        7: ColmapCamera(7, "OPENCV", 640, 480, np.array([510.0, 505.0, 321.0, 238.0, -0.1, 0.01, 1e-3, -2e-3])),
        9: ColmapCamera(9, "SIMPLE_RADIAL", 640, 480, np.array([480.0, 320.0, 240.0, 0.02])),
    }
    images = {}
    for image_id, camera_id in ((1, 1), (4, 7), (5, 9)):
        count = int(rng.integers(0, 6))
        images[image_id] = ColmapImage(
            image_id,
            rotation_to_qvec(Rotation.random(random_state=image_id).as_matrix()),
            rng.normal(size=3),
            camera_id,
            f"sub dir/img {image_id}.png" if image_id == 4 else f"img_{image_id}.jpg",
            rng.uniform(0, 640, (count, 2)),
            np.where(rng.random(count) < 0.5, -1, rng.integers(1, 100, count)),
        )
    points = ColmapPoints.from_tracks(
        ids=np.array([3, 10, 11]),
        xyz=rng.normal(size=(3, 3)),
        rgb=np.array([[255, 0, 1], [2, 3, 4], [128, 64, 32]], np.uint8),
        errors=np.array([0.5, 1.25, 0.0]),
        tracks=[np.array([[1, 0], [4, 2]]), np.zeros((0, 2), np.int64), np.array([[5, 1]])],
    )
    return cameras, images, points


def _assert_same_model(a, b):
    cams_a, imgs_a, pts_a = a
    cams_b, imgs_b, pts_b = b
    assert cams_a.keys() == cams_b.keys()
    for key in cams_a:
        assert (cams_a[key].model, cams_a[key].width, cams_a[key].height) == (cams_b[key].model, cams_b[key].width, cams_b[key].height)
        np.testing.assert_array_equal(cams_a[key].params, cams_b[key].params)
    assert imgs_a.keys() == imgs_b.keys()
    for key in imgs_a:
        ia, ib = imgs_a[key], imgs_b[key]
        assert (ia.name, ia.camera_id) == (ib.name, ib.camera_id)
        np.testing.assert_array_equal(ia.qvec, ib.qvec)
        np.testing.assert_array_equal(ia.tvec, ib.tvec)
        np.testing.assert_array_equal(ia.xys, ib.xys)
        np.testing.assert_array_equal(ia.point3d_ids, ib.point3d_ids)
    np.testing.assert_array_equal(pts_a.ids, pts_b.ids)
    np.testing.assert_array_equal(pts_a.xyz, pts_b.xyz)
    np.testing.assert_array_equal(pts_a.rgb, pts_b.rgb)
    np.testing.assert_array_equal(pts_a.errors, pts_b.errors)
    np.testing.assert_array_equal(pts_a.track_offsets, pts_b.track_offsets)
    np.testing.assert_array_equal(pts_a.track_pairs, pts_b.track_pairs)
    np.testing.assert_array_equal(pts_a.track(0), [[1, 0], [4, 2]])
    assert pts_a.track(1).shape == (0, 2)


@pytest.mark.parametrize("binary", [True, False])
def test_write_read_round_trip_is_exact(tmp_path, binary):
    model = _model()
    write_model(tmp_path, *model, binary=binary)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.{'bin' if binary else 'txt'}" for n in ("cameras", "images", "points3D")
    )
    _assert_same_model(model, read_model(tmp_path))


def test_binary_and_text_encodings_agree(tmp_path):
    write_model(tmp_path / "bin", *_model(), binary=True)
    write_model(tmp_path / "txt", *read_model(tmp_path / "bin"), binary=False)
    _assert_same_model(read_model(tmp_path / "bin"), read_model(tmp_path / "txt"))


def test_quaternion_conversions_invert_each_other():
    rotations = Rotation.random(50, random_state=3).as_matrix()
    for rotation in rotations:
        qvec = rotation_to_qvec(rotation)
        assert qvec[0] >= 0 and abs(np.linalg.norm(qvec) - 1) < 1e-12
        np.testing.assert_allclose(qvec_to_rotation(qvec), rotation, atol=1e-12)
    # scipy's quaternion is (x, y, z, w): the same rotation must give the same wxyz.
    xyzw = Rotation.from_matrix(rotations[0]).as_quat()
    expected = np.sign(xyzw[3]) * np.array([xyzw[3], *xyzw[:3]])
    np.testing.assert_allclose(rotation_to_qvec(rotations[0]), expected, atol=1e-12)


def test_pycolmap_reads_our_files_and_we_read_pycolmaps(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    cameras, images, points = _model()
    cameras = {1: cameras[1]}
    images = {k: ColmapImage(v.id, v.qvec, v.tvec, 1, v.name) for k, v in images.items()}
    write_model(tmp_path / "ours", cameras, images, ColmapPoints.empty(), binary=True)
    reconstruction = pycolmap.Reconstruction(str(tmp_path / "ours"))
    assert reconstruction.num_images() == 3
    (tmp_path / "theirs_bin").mkdir()
    (tmp_path / "theirs_txt").mkdir()
    reconstruction.write_binary(str(tmp_path / "theirs_bin"))
    reconstruction.write_text(str(tmp_path / "theirs_txt"))
    for folder in ("theirs_bin", "theirs_txt"):
        their_cameras, their_images, their_points = read_model(tmp_path / folder)
        assert len(their_points) == 0
        np.testing.assert_allclose(their_cameras[1].params, cameras[1].params)
        for image_id, image in images.items():
            loaded = their_images[image_id]
            assert loaded.name == image.name
            np.testing.assert_allclose(qvec_to_rotation(loaded.qvec), qvec_to_rotation(image.qvec), atol=1e-9)
            np.testing.assert_allclose(loaded.tvec, image.tvec, atol=1e-9)


# ------------------------------------------------------------------ loader


@pytest.mark.parametrize("binary", [True, False])
def test_loader_gives_known_poses_intrinsics_points_and_splits(tmp_path, binary):
    truth = write_colmap_scene(tmp_path, count=10, binary=binary)
    order = np.argsort(truth["names"])
    test = load_dataset(tmp_path, "test", test_every=4)
    train = load_dataset(tmp_path, "train", test_every=4)
    val = load_dataset(tmp_path, "val", test_every=4)
    sorted_names = [f"images/{truth['names'][i]}" for i in order]
    assert test.image_names == sorted_names[0::4]
    assert val.image_names == test.image_names
    assert sorted(train.image_names + test.image_names) == sorted_names
    assert len(train) == 7 and train.format == "colmap"
    expected = truth["c2w"][order][[i for i in range(10) if i % 4]]
    np.testing.assert_allclose(train.cameras.c2w.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(train.cameras.K[0].numpy(), [[18, 0, 10.5], [0, 19, 7.5], [0, 0, 1]])
    assert (train.width, train.height) == (20, 16)
    first = truth["names"].index(train.image_names[0].removeprefix("images/"))
    np.testing.assert_array_equal(train.images[0].numpy(), truth["images"][first])  # stored as decoded
    np.testing.assert_allclose(train.points.numpy(), truth["points"], atol=1e-6)
    assert train.point_colors.shape == (200, 3) and float(train.point_colors.max()) <= 1.0
    inside = ((train.points >= train.aabb[0]) & (train.points <= train.aabb[1])).all(dim=1)
    assert inside.float().mean() > 0.95
    # cameras orbit at radius 4 around points in [-1,1]^3: depths between about 2.3 and 5.7
    assert 1.0 < train.near < 3.0 and 5.0 < train.far < 8.0
    assert torch.equal(train.aabb, test.aabb) and train.near == test.near


def test_downscale_averages_blocks_and_scales_intrinsics(tmp_path):
    truth = write_colmap_scene(tmp_path, count=3)
    data = load_dataset(tmp_path, "all", downscale=2)
    assert data.images.shape == (3, 8, 10, 3)
    np.testing.assert_allclose(data.cameras.K[0].numpy(), [[9, 0, 5.25], [0, 9.5, 3.75], [0, 0, 1]])
    first = truth["names"].index(data.image_names[0].removeprefix("images/"))
    blocks = truth["images"][first].astype(np.float64).reshape(8, 2, 10, 2, 3).mean(axis=(1, 3)) / 255
    np.testing.assert_allclose(data.image(0).numpy(), blocks, atol=0.5 / 255 + 1e-6)  # rounded block means


@pytest.mark.parametrize(
    "model, params, distortion",
    [
        ("SIMPLE_RADIAL", [60.0, 41.0, 31.0, -0.15], Distortion(k1=-0.15)),
        ("RADIAL", [60.0, 41.0, 31.0, -0.25, 0.08], Distortion(k1=-0.25, k2=0.08)),
        ("OPENCV", [60.0, 62.0, 40.5, 30.0, -0.2, 0.05, 0.01, -0.008], Distortion(k1=-0.2, k2=0.05, p1=0.01, p2=-0.008)),
    ],
)
def test_distorted_models_are_undistorted_to_the_analytic_pinhole_image(tmp_path, model, params, distortion):
    width, height = 80, 60
    camera = ColmapCamera(1, model, width, height, np.array(params))
    from render3d.data.colmap import colmap_intrinsics

    K, parsed = colmap_intrinsics(camera, tmp_path)
    assert parsed == distortion
    distorted = distorted_render(K, distortion, width, height)
    assert np.isfinite(distorted).all()
    images = np.round(distorted * 255).astype(np.uint8)[None].repeat(2, axis=0)
    write_colmap_scene(tmp_path, count=2, size=(width, height), camera=camera, images=images)
    data = load_dataset(tmp_path, "all")
    truth = pinhole_render(K, width, height)
    interior = (slice(4, -4), slice(4, -4))
    error = np.abs(data.image(0).numpy() - truth)[interior].max()
    raw_error = np.abs(distorted - truth)[interior].max()
    assert raw_error > 0.05  # the distortion matters: five times the tolerance below
    assert error < 0.01  # 8-bit quantisation (0.002) plus bilinear interpolation of a smooth pattern
    np.testing.assert_allclose(data.cameras.K[0].numpy(), K, rtol=1e-6)


def test_sixteen_bit_colmap_images_keep_their_precision(tmp_path):
    truth = write_colmap_scene(tmp_path, count=2)
    deep = (np.random.default_rng(5).integers(0, 65536, (16, 20, 3))).astype(np.uint16)
    for name in truth["names"]:
        write_png16(tmp_path / "images" / name, deep)
    data = load_dataset(tmp_path, "all")
    assert data.images.dtype == torch.uint16  # 16-bit sources are kept at 16 bits
    np.testing.assert_array_equal(data.images[0].numpy(), deep)
    np.testing.assert_allclose(data.image(0).numpy(), deep / 65535.0, atol=1e-7)


def test_unsupported_camera_model_says_how_to_undistort(tmp_path):
    camera = ColmapCamera(1, "OPENCV_FISHEYE", 20, 16, np.array([18.0, 18.0, 10.0, 8.0, 0.1, 0.0, 0.0, 0.0]))
    write_colmap_scene(tmp_path, count=3, camera=camera)
    with pytest.raises(DataError, match=r"OPENCV_FISHEYE.*colmap image_undistorter") as info:
        load_dataset(tmp_path)
    assert "\n" not in str(info.value)


def test_cameras_of_different_sizes_are_refused(tmp_path):
    truth = write_colmap_scene(tmp_path, count=3)
    cameras, images, points = read_model(tmp_path / "sparse" / "0")
    cameras[2] = ColmapCamera(2, "PINHOLE", 40, 32, np.array([18.0, 19.0, 20.0, 16.0]))
    images[3].camera_id = 2
    write_model(tmp_path / "sparse" / "0", cameras, images, points)
    with pytest.raises(DataError, match=r"40x32.*20x16|20x16.*40x32"):
        load_dataset(tmp_path)
    assert truth["names"]


def test_images_that_do_not_match_the_camera_size_are_refused(tmp_path):
    truth = write_colmap_scene(tmp_path, count=3, images=np.zeros((3, 16, 20, 3), np.uint8))
    camera = ColmapCamera(1, "PINHOLE", 40, 32, np.array([36.0, 38.0, 20.0, 16.0]))
    write_colmap_scene(tmp_path, count=3, camera=camera, images=np.zeros((3, 16, 20, 3), np.uint8))
    with pytest.raises(DataError, match=r"images/img_0\d.png is 20x16 but its COLMAP camera .* is 40x32"):
        load_dataset(tmp_path)
    assert truth["names"]


def test_truncated_binary_file_is_named(tmp_path):
    write_colmap_scene(tmp_path, count=3)
    images_bin = tmp_path / "sparse" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"images\.bin: file ends early"):
        load_dataset(tmp_path)


def test_malformed_text_line_is_named_with_its_number(tmp_path):
    write_colmap_scene(tmp_path, count=3, binary=False)
    cameras_txt = tmp_path / "sparse" / "0" / "cameras.txt"
    cameras_txt.write_text(cameras_txt.read_text() + "2 PINHOLE 20 sixteen 1 2 3 4\n")
    with pytest.raises(DataError, match=r"cameras\.txt, line 5: cannot parse"):
        load_dataset(tmp_path)


def test_wrong_parameter_count_and_unknown_model_are_named(tmp_path):
    write_colmap_scene(tmp_path, count=3, binary=False)
    cameras_txt = tmp_path / "sparse" / "0" / "cameras.txt"
    cameras_txt.write_text("1 PINHOLE 20 16 18 19 10.5\n")
    with pytest.raises(DataError, match=r"cameras\.txt: camera 1 \(PINHOLE\) needs 4 parameters, got 3"):
        load_dataset(tmp_path)
    cameras_txt.write_text("1 FANCY_LENS 20 16 18 19 10.5\n")
    with pytest.raises(DataError, match=r"cameras\.txt: camera 1 has unknown COLMAP camera model FANCY_LENS"):
        load_dataset(tmp_path)


def test_missing_image_file_is_named(tmp_path):
    truth = write_colmap_scene(tmp_path, count=3)
    (tmp_path / "images" / truth["names"][1]).unlink()
    with pytest.raises(DataError, match=rf"image file not found: .*{truth['names'][1]}"):
        load_dataset(tmp_path, "all")


def test_model_without_points_falls_back_to_camera_bounds(tmp_path):
    write_colmap_scene(tmp_path, count=6, n_points=0)
    data = load_colmap(tmp_path, "all", background=(1, 1, 1), downscale=1, max_images=None, test_every=8)
    assert data.points.shape == (0, 3)
    # cameras on a circle of radius 4*cos(30°) around the origin: the cube contains them
    assert ((data.cameras.centers >= data.aabb[0]) & (data.cameras.centers <= data.aabb[1])).all()
    assert 0 < data.near < data.far


# ------------------------------------------------------------------ the shipped COLMAP twin (written by pycolmap)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
TWIN = ASSETS / "demo_colmap"


def _load_twin(model: str):
    assert (TWIN / model / "0").is_dir(), f"COLMAP twin missing at {TWIN / model}"
    return load_colmap(TWIN, "all", background=(1.0, 1.0, 1.0), downscale=1, max_images=None, test_every=8, model_dir=TWIN / model / "0")


def test_twin_binary_and_text_models_load_identically():
    binary, text = _load_twin("sparse"), _load_twin("sparse_txt")
    assert binary.image_names == text.image_names and len(binary) == 52
    torch.testing.assert_close(binary.cameras.c2w, text.cameras.c2w, atol=1e-6, rtol=0)
    torch.testing.assert_close(binary.cameras.K, text.cameras.K, atol=1e-6, rtol=0)
    torch.testing.assert_close(binary.points, text.points, atol=1e-6, rtol=0)
    torch.testing.assert_close(binary.point_colors, text.point_colors)
    assert binary.points.shape[0] > 100
    assert detect_format(TWIN) == "colmap" and load_dataset(TWIN, "test").image_names == binary.image_names[0::8]


def test_twin_poses_written_by_pycolmap_match_the_nerf_synthetic_poses():
    twin = _load_twin("sparse")
    by_name = {name.split("/")[-1]: i for i, name in enumerate(twin.image_names)}
    for split in ("train", "val", "test"):
        meta = json.loads((ASSETS / "demo" / f"transforms_{split}.json").read_text())
        gl = torch.tensor([frame["transform_matrix"] for frame in meta["frames"]], dtype=torch.float32)
        indices = [by_name[f"{split}_{i:03d}.jpg"] for i in range(len(meta["frames"]))]
        torch.testing.assert_close(twin.cameras.c2w[indices], opengl_to_opencv(gl), atol=2e-5, rtol=0)
        focal = 0.5 * twin.width / math.tan(0.5 * meta["camera_angle_x"])
        np.testing.assert_allclose(twin.cameras.K[indices[0]].numpy(), [[focal, 0, 80], [0, focal, 80], [0, 0, 1]], rtol=1e-5)
    # triangulated points are in front of the cameras that see them, and inside the bounds
    _, depths = twin.cameras.project(twin.points)
    assert (depths > 0).float().mean() > 0.99
    inside = ((twin.points >= twin.aabb[0]) & (twin.points <= twin.aabb[1])).all(dim=1)
    assert inside.float().mean() > 0.95 and 0 < twin.near < 3.5 and twin.far > 5.0


@pytest.mark.parametrize("cut, match", [(5, "file ends early"), (-3, "3 unexpected bytes after the last record")])
def test_truncated_or_padded_points3d_binary_is_named(tmp_path, cut, match):
    from render3d.data.colmap_io import read_points3d_binary, write_points3d_binary

    path = tmp_path / "points3D.bin"
    write_points3d_binary(path, _model()[2])
    data = path.read_bytes()
    path.write_bytes(data[:-cut] if cut > 0 else data + b"\0" * -cut)
    with pytest.raises(DataError, match=rf"points3D\.bin: {match}"):
        read_points3d_binary(path)


@pytest.mark.parametrize("line", ["7 1.0 2.0 3.0 1 2 3 0.5 4", "7 1.0 two 3.0 1 2 3 0.5 4 0", "7 1 2 3"])
def test_malformed_points3d_text_line_is_named(tmp_path, line):
    from render3d.data.colmap_io import read_points3d_text, write_points3d_text

    path = tmp_path / "points3D.txt"
    write_points3d_text(path, _model()[2])
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DataError, match=r"points3D\.txt, line 7: cannot parse"):
        read_points3d_text(path)
