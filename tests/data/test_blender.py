"""NeRF-synthetic loader and the image reading it relies on (8/16-bit PNG, JPEG, errors)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from render3d.data import load_dataset, read_image
from render3d.data.images import downscale_image
from render3d.errors import DataError
from tests.data.synthetic import FOV_X, random_images, write_blender_scene, write_png, write_png16


def test_loads_split_with_alpha_composited_over_background(tmp_path):
    truth = write_blender_scene(tmp_path)
    data = load_dataset(tmp_path, "train", background=(0.0, 0.5, 1.0))
    assert data.format == "blender" and data.split == "train" and len(data) == 5
    assert data.images.shape == (5, 16, 16, 3) and data.images.dtype == torch.uint8
    assert data.alphas.shape == (5, 16, 16, 1) and data.alphas.dtype == torch.uint8
    rgba = truth["train"]["images"].astype(np.float64) / 255
    expected = rgba[..., :3] * rgba[..., 3:] + np.array([0.0, 0.5, 1.0]) * (1 - rgba[..., 3:])
    # one rounding of the premultiplied colour: within half a level of the float composite
    np.testing.assert_allclose(data.float_images().numpy(), expected, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(data.alphas.numpy(), truth["train"]["images"][..., 3:])
    assert data.image_names == truth["train"]["names"]
    assert data.background == (0.0, 0.5, 1.0)
    assert data.mesh_path is None


def test_poses_are_converted_to_opencv_and_intrinsics_follow_the_field_of_view(tmp_path):
    truth = write_blender_scene(tmp_path)
    data = load_dataset(tmp_path, "test")
    np.testing.assert_allclose(data.cameras.c2w.numpy(), truth["test"]["c2w"], atol=1e-6)
    focal = 8.0 / math.tan(FOV_X / 2)
    np.testing.assert_allclose(data.cameras.K[0].numpy(), [[focal, 0, 8], [0, focal, 8], [0, 0, 1]], rtol=1e-6)
    # OpenCV +z of every camera points at the origin the orbit looks at
    to_origin = -data.cameras.centers / data.cameras.centers.norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(data.cameras.c2w[:, :3, 2].numpy(), to_origin.numpy(), atol=1e-5)


def test_bounds_are_the_conventional_box_with_near_far_from_all_cameras(tmp_path):
    write_blender_scene(tmp_path)
    train, test = load_dataset(tmp_path, "train"), load_dataset(tmp_path, "test")
    np.testing.assert_array_equal(train.aabb.numpy(), [[-1.5] * 3, [1.5] * 3])
    # cameras at distance 4 from the origin: the box is at least 4 - 1.5*sqrt(3) away and at
    # most 4 + 1.5*sqrt(3)
    assert 4 - 1.5 * math.sqrt(3) - 1e-4 <= train.near <= 2.5 + 1e-4
    assert 5.5 <= train.far <= 4 + 1.5 * math.sqrt(3) + 1e-4
    assert (train.near, train.far) == (test.near, test.far)


def test_all_split_concatenates_and_max_images_spreads_evenly(tmp_path):
    truth = write_blender_scene(tmp_path)
    everything = load_dataset(tmp_path, "all")
    assert everything.image_names == truth["train"]["names"] + truth["val"]["names"] + truth["test"]["names"]
    few = load_dataset(tmp_path, "train", max_images=3)
    assert few.image_names == [truth["train"]["names"][i] for i in (0, 2, 4)]
    (tmp_path / "transforms_val.json").unlink()  # scenes without a val file still load "all"
    assert load_dataset(tmp_path, "all").image_names == truth["train"]["names"] + truth["test"]["names"]


def test_file_path_with_extension_and_jpeg_fallback(tmp_path):
    write_blender_scene(tmp_path)
    meta = json.loads((tmp_path / "transforms_val.json").read_text())
    meta["frames"][0]["file_path"] = "./val/r_0.png"
    Image.open(tmp_path / "val" / "r_1.png").convert("RGB").save(tmp_path / "val" / "r_1.jpg", quality=95)
    (tmp_path / "val" / "r_1.png").unlink()
    (tmp_path / "transforms_val.json").write_text(json.dumps(meta))
    data = load_dataset(tmp_path, "val")
    assert data.image_names == ["val/r_0.png", "val/r_1.jpg"]


def test_mesh_ply_is_reported(tmp_path):
    write_blender_scene(tmp_path)
    (tmp_path / "mesh.ply").write_text("ply\n")
    assert load_dataset(tmp_path, "val").mesh_path == tmp_path / "mesh.ply"


def test_downscale_area_averages_and_scales_cameras(tmp_path):
    truth = write_blender_scene(tmp_path, channels=3)
    full = load_dataset(tmp_path, "train")
    half = load_dataset(tmp_path, "train", downscale=2)
    assert half.images.shape == (5, 8, 8, 3) and half.alphas is None
    blocks = truth["train"]["images"].astype(np.float64).reshape(5, 8, 2, 8, 2, 3).mean(axis=(2, 4)) / 255
    np.testing.assert_allclose(half.float_images().numpy(), blocks, atol=0.5 / 255 + 1e-6)  # rounded block means
    np.testing.assert_allclose(half.cameras.K.numpy(), full.cameras.scaled(0.5).K.numpy())


def test_downscale_with_a_remainder_still_keeps_the_mean():
    image = np.random.default_rng(0).random((7, 9, 3)).astype(np.float32)
    small = downscale_image(image, 2)
    assert small.shape == (4, 4, 3)  # round(3.5) == 4 and round(4.5) == 4, as Cameras.scaled
    np.testing.assert_allclose(small.mean(), image.mean(), atol=0.05)


# ------------------------------------------------------------------ broken inputs


def test_malformed_json_names_file_and_line(tmp_path):
    write_blender_scene(tmp_path)
    (tmp_path / "transforms_train.json").write_text('{\n  "camera_angle_x": 0.8,\n  "frames": [,]\n}')
    with pytest.raises(DataError, match=r"malformed JSON in .*transforms_train\.json at line 3") as info:
        load_dataset(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_keys_are_named_with_the_file(tmp_path):
    write_blender_scene(tmp_path)
    path = tmp_path / "transforms_train.json"
    meta = json.loads(path.read_text())
    del meta["camera_angle_x"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"transforms_train\.json: missing key 'camera_angle_x'"):
        load_dataset(tmp_path)
    meta["camera_angle_x"] = FOV_X
    del meta["frames"][2]["transform_matrix"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"transforms_train\.json: missing key 'transform_matrix' in frame 2"):
        load_dataset(tmp_path)


def test_bad_matrix_and_missing_split_file_are_named(tmp_path):
    write_blender_scene(tmp_path)
    path = tmp_path / "transforms_train.json"
    meta = json.loads(path.read_text())
    meta["frames"][1]["transform_matrix"] = [[1, 0, 0], [0, 1, 0]]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"transforms_train\.json: frame 1 transform_matrix must be a finite 4x4"):
        load_dataset(tmp_path)
    (tmp_path / "transforms_val.json").unlink()
    with pytest.raises(DataError, match=r"file not found: .*transforms_val\.json"):
        load_dataset(tmp_path, "val")


def test_missing_image_is_named(tmp_path):
    write_blender_scene(tmp_path)
    (tmp_path / "train" / "r_3.png").unlink()
    with pytest.raises(DataError, match=r"transforms_train\.json: image file .*train/r_3 not found"):
        load_dataset(tmp_path)


def test_mismatched_sizes_name_the_first_offending_file_and_both_sizes(tmp_path):
    write_blender_scene(tmp_path)
    write_png(tmp_path / "train" / "r_2.png", random_images(1, 12, 10, 4)[0])
    write_png(tmp_path / "train" / "r_4.png", random_images(1, 12, 10, 4)[0])
    with pytest.raises(DataError, match=r"image .*train/r_2\.png is 12x10 but .*train/r_0\.png is 16x16"):
        load_dataset(tmp_path)


def test_unreadable_image_is_named(tmp_path):
    write_blender_scene(tmp_path)
    (tmp_path / "train" / "r_1.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"cannot read image .*train/r_1\.png"):
        load_dataset(tmp_path)


# ------------------------------------------------------------------ image reading


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_sixteen_bit_png_is_read_at_full_precision_for_every_filter(tmp_path, channels):
    pixels = np.random.default_rng(channels).integers(0, 65536, (11, 13, channels)).astype(np.uint16)
    write_png16(tmp_path / "deep.png", pixels)
    image = read_image(tmp_path / "deep.png")
    expected = pixels / 65535.0
    if channels in (1, 2):
        expected = np.concatenate([np.repeat(expected[..., :1], 3, axis=2), expected[..., 1:]], axis=2)
    assert image.dtype == np.float32 and image.shape == (11, 13, 3 if channels in (1, 3) else 4)
    np.testing.assert_allclose(image, expected, atol=1e-7)


def test_eight_bit_png_jpeg_gray_and_palette(tmp_path):
    rgb = random_images(1, 9, 7, 3)[0]
    write_png(tmp_path / "a.png", rgb)
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), rgb / 255.0, atol=1e-7)
    smooth = np.stack([*np.meshgrid(np.linspace(0, 255, 32), np.linspace(0, 255, 24)), np.full((24, 32), 90.0)], -1)
    Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "a.jpg", quality=98)
    jpeg = read_image(tmp_path / "a.jpg")
    assert jpeg.shape == (24, 32, 3) and np.abs(jpeg - smooth / 255.0).mean() < 0.02  # lossy
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (7, 9, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png").shape == (7, 9, 3)


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"image file not found: .*nope\.png"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png"):
        read_image(tmp_path / "broken.png")


# ------------------------------------------------------------------ the shipped demo scene

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"


def test_demo_scene_loads_with_valid_cameras_alpha_and_bounds():
    assert (DEMO / "transforms_train.json").is_file(), f"demo scene missing at {DEMO}"
    train = load_dataset(DEMO, "train")
    assert train.images.shape == (36, 160, 160, 3) and train.alphas.shape == (36, 160, 160, 1)
    assert train.images.dtype == torch.uint8
    assert len(load_dataset(DEMO, "val")) == 6 and len(load_dataset(DEMO, "test")) == 10
    transparent = train.alphas[..., 0] == 0
    assert 0.3 < float(transparent.float().mean()) < 0.95  # object and empty background both present
    white = train.float_images()[transparent]
    assert torch.equal(white, torch.ones_like(white))  # composited over the default white
    rotations = train.cameras.c2w[:, :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(rotations)
    torch.testing.assert_close(rotations.transpose(1, 2) @ rotations, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(36, dtype=torch.float64), atol=1e-5, rtol=0)

    mesh = trimesh.load(train.mesh_path)
    assert train.mesh_path == DEMO / "mesh.ply"
    centre = torch.tensor(mesh.bounds.mean(axis=0), dtype=torch.float32)
    # the README: every camera is 4.1 units from the centre of the scene's box, looking at it
    to_centre = centre - train.cameras.centers
    np.testing.assert_allclose(to_centre.norm(dim=-1).numpy(), 4.1, atol=1e-3)
    forward = train.cameras.c2w[:, :3, 2]
    np.testing.assert_allclose((to_centre / to_centre.norm(dim=-1, keepdim=True) * forward).sum(-1).numpy(), 1.0, atol=1e-5)

    vertices = torch.tensor(mesh.vertices, dtype=torch.float32)
    assert ((vertices >= train.aabb[0]) & (vertices <= train.aabb[1])).all()
    distances = (vertices[None] - train.cameras.centers[:, None]).norm(dim=-1)
    assert train.near <= float(distances.min()) and float(distances.max()) <= train.far


def test_sixteen_bit_and_float_tiffs(tmp_path):
    """Pillow opens 16-bit TIFFs as I;16 and float ones as F; convert('RGB') would clip them."""
    from PIL import Image

    from render3d.data.images import read_image

    gray = (np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.tif")
    np.testing.assert_allclose(read_image(tmp_path / "g16.tif")[..., 1], gray / 65535.0, atol=1e-7)
    Image.fromarray(np.random.rand(8, 8).astype(np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match="f.tif: F .*not supported"):
        read_image(tmp_path / "f.tif")


def test_zero_field_of_view_is_a_data_error(tmp_path):
    import json

    from tests.conftest import write_nerf_synthetic

    root = write_nerf_synthetic(tmp_path / "scene")
    meta = json.loads((root / "transforms_train.json").read_text())
    meta["camera_angle_x"] = 0
    (root / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="transforms_train.json: camera intrinsics"):
        load_dataset(root, "train")
