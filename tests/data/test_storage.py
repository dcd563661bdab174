"""Integer image storage (uint8, uint16 for 16-bit sources), float batches composited on the
dataset's device, the cameras-only load path and one undistortion grid per camera."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import render3d.data.images
import render3d.data.undistort
from render3d.data import load_dataset
from render3d.data.colmap_io import ColmapCamera, read_model, write_model
from render3d.data.dataset import Dataset, quantize, to_unit_float
from render3d.errors import ConfigError, DataError
from tests.data.synthetic import random_images, write_blender_scene, write_colmap_scene, write_png, write_png16
from tests.data.test_nerfstudio import write_scene as write_nerfstudio_scene

BACKGROUND = (0.2, 0.5, 0.9)


def old_float_composite(rgba: np.ndarray, background) -> np.ndarray:
    """What the loader returned before integer storage: float64 colour over ``background``."""
    values = rgba.astype(np.float64) / 255
    return values[..., :3] * values[..., 3:] + np.asarray(background) * (1 - values[..., 3:])


def test_unit_float_conversion_is_exact_and_quantize_inverts_it():
    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_unit_float(levels), levels.to(torch.float32) / 255)
    assert torch.equal(quantize(to_unit_float(levels)), levels)
    deep = torch.tensor([0, 1, 257, 32768, 65534, 65535], dtype=torch.uint16)
    assert torch.equal(quantize(to_unit_float(deep), torch.uint16), deep)
    assert to_unit_float(deep).dtype == torch.float32 and float(to_unit_float(deep)[-1]) == 1.0
    # rounding to nearest, clamped
    assert quantize(torch.tensor([-0.1, 0.4 / 255, 0.6 / 255, 1.2])).tolist() == [0, 0, 1, 255]


def test_rgb_images_are_stored_as_decoded_and_read_back_exactly(tmp_path):
    truth = write_blender_scene(tmp_path, channels=3)
    data = load_dataset(tmp_path, "train")
    assert data.images.dtype == torch.uint8 and data.alphas is None
    np.testing.assert_array_equal(data.images.numpy(), truth["train"]["images"])
    exact = torch.from_numpy(truth["train"]["images"]).to(torch.float32) / 255
    assert torch.equal(data.float_images(), exact)
    assert torch.equal(data.float_images(torch.tensor([3, 1])), exact[[3, 1]])
    assert torch.equal(data.image(2), exact[2])
    flat = torch.tensor([0, 17, 5 * 16 * 16 - 1])
    assert torch.equal(data.pixels(flat), exact.reshape(-1, 3)[flat])


def test_rgba_composited_per_batch_matches_the_old_float_path(tmp_path):
    truth = write_blender_scene(tmp_path)
    rgba = truth["train"]["images"]
    data = load_dataset(tmp_path, "train", background=BACKGROUND)
    assert data.images.dtype == torch.uint8 and data.alphas.dtype == torch.uint8
    np.testing.assert_array_equal(data.alphas.numpy(), rgba[..., 3:])
    # one rounding of the premultiplied colour: within half a level of the float composite
    tolerance = 0.5 / 255 + 1e-6
    np.testing.assert_allclose(data.float_images().numpy(), old_float_composite(rgba, BACKGROUND), atol=tolerance)
    np.testing.assert_allclose(data.image(1, background=(0, 0, 0)).numpy(), old_float_composite(rgba[1], (0, 0, 0)),
                               atol=tolerance)
    # per-ray backgrounds (NeRF's random background): the same composite pixel by pixel
    flat = torch.randperm(5 * 16 * 16)[:100]
    per_ray = torch.rand(100, 3)
    expected = rgba.reshape(-1, 4)[flat.numpy()].astype(np.float64) / 255
    expected = expected[:, :3] * expected[:, 3:] + per_ray.numpy() * (1 - expected[:, 3:])
    np.testing.assert_allclose(data.pixels(flat, per_ray).numpy(), expected, atol=tolerance)
    np.testing.assert_array_equal(data.pixel_alphas(flat).numpy(), rgba.reshape(-1, 4)[flat.numpy(), 3:] / np.float32(255))


def test_downscaled_rgba_matches_the_old_composite_then_average(tmp_path):
    truth = write_blender_scene(tmp_path)
    rgba = truth["train"]["images"]
    data = load_dataset(tmp_path, "train", background=BACKGROUND, downscale=2)
    old = old_float_composite(rgba, BACKGROUND).reshape(5, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    # premultiplied colour and alpha each rounded once: within one level
    np.testing.assert_allclose(data.float_images().numpy(), old, atol=1 / 255)


def test_sixteen_bit_sources_keep_sixteen_bits_and_eight_bit_ones_scale_exactly(tmp_path):
    write_blender_scene(tmp_path, counts=(("train", 2),), channels=4)
    deep = np.random.default_rng(2).integers(0, 65536, (16, 16, 4)).astype(np.uint16)
    write_png16(tmp_path / "train" / "r_1.png", deep)
    eight_bit = np.asarray(render3d.data.images.decode_image(tmp_path / "train" / "r_0.png"))
    data = load_dataset(tmp_path, "train", background=BACKGROUND)
    assert data.images.dtype == torch.uint16 and data.alphas.dtype == torch.uint16
    np.testing.assert_array_equal(data.alphas[0].numpy(), eight_bit[..., 3:].astype(np.uint32) * 257)
    np.testing.assert_array_equal(data.alphas[1].numpy(), deep[..., 3:])
    values = deep.astype(np.float64) / 65535
    expected = values[..., :3] * values[..., 3:] + np.asarray(BACKGROUND) * (1 - values[..., 3:])
    np.testing.assert_allclose(data.image(1).numpy(), expected, atol=0.5 / 65535 + 1e-6)
    np.testing.assert_allclose(data.image(0).numpy(), old_float_composite(eight_bit, BACKGROUND), atol=0.5 / 65535 + 1e-6)


def test_sixteen_bit_png_without_imagecodecs_is_a_one_line_data_error(tmp_path, monkeypatch):
    write_png16(tmp_path / "deep.png", np.zeros((3, 4, 3), dtype=np.uint16))
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import imagecodecs raises ImportError
    with pytest.raises(DataError, match=r"deep\.png: 16-bit PNG needs the imagecodecs package") as info:
        render3d.data.images.read_image(tmp_path / "deep.png")
    assert "\n" not in str(info.value)


def test_dataset_refuses_float_images():
    with pytest.raises(TypeError, match="Dataset.images must be uint8 or uint16.*quantize"):
        Dataset(images=torch.zeros(1, 2, 2, 3), cameras=None, image_names=["a"], aabb=torch.zeros(2, 3), near=1.0,
                far=2.0)


# ------------------------------------------------------------------ cameras only


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(path):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(render3d.data.images, "decode_image", refuse)


def _same_cameras(a: Dataset, b: Dataset) -> None:
    assert a.image_names == b.image_names and len(a) == len(b)
    torch.testing.assert_close(a.cameras.K, b.cameras.K)
    torch.testing.assert_close(a.cameras.c2w, b.cameras.c2w)
    assert (a.width, a.height, a.near, a.far) == (b.width, b.height, b.near, b.far)
    torch.testing.assert_close(a.aabb, b.aabb)


def _write_masks(root, names, size):
    for name in names:
        write_png(root / "masks" / name, np.full((size[1], size[0]), 255, np.uint8))


@pytest.mark.parametrize("kind", ["blender", "colmap", "nerfstudio"])
def test_cameras_only_load_decodes_no_image(tmp_path, kind, request):
    if kind == "blender":
        write_blender_scene(tmp_path)
    elif kind == "colmap":
        camera = ColmapCamera(1, "OPENCV", 20, 16, np.array([18.0, 19.0, 10.0, 8.0, -0.1, 0.01, 0.001, 0.0]))
        scene = write_colmap_scene(tmp_path, count=4, camera=camera)
        _write_masks(tmp_path, scene["names"], (20, 16))
    else:
        write_nerfstudio_scene(tmp_path, count=3, k1=-0.1)
        _write_masks(tmp_path, [f"frame_{i:05d}.png" for i in range(3)], (20, 16))
    full = load_dataset(tmp_path, "all", downscale=2)
    request.getfixturevalue("no_decoding")
    grids = []
    original = render3d.data.undistort.undistortion_grid
    request.getfixturevalue("monkeypatch").setattr(
        render3d.data.undistort, "undistortion_grid", lambda *args: grids.append(args) or original(*args))
    cameras = load_dataset(tmp_path, "all", downscale=2, images=False)
    assert cameras.images is None and cameras.alphas is None and cameras.masks is None and grids == []
    _same_cameras(cameras, full)
    with pytest.raises(ConfigError, match="loaded with images=False"):
        cameras.float_images()
    assert cameras.to("cpu").images is None


# ------------------------------------------------------------------ undistortion grids


def test_one_undistortion_grid_per_distinct_camera(tmp_path, monkeypatch):
    params = np.array([18.0, 19.0, 10.0, 8.0, -0.1, 0.01, 0.001, 0.0])
    write_colmap_scene(tmp_path, count=6, camera=ColmapCamera(1, "OPENCV", 20, 16, params))
    cameras, images, points = read_model(tmp_path / "sparse" / "0")
    cameras[2] = ColmapCamera(2, "OPENCV", 20, 16, params.copy())  # another id, the same lens
    cameras[3] = ColmapCamera(3, "OPENCV", 20, 16, params * [1, 1, 1, 1, 2, 1, 1, 1])  # another lens
    cameras[4] = ColmapCamera(4, "PINHOLE", 20, 16, params[:4])  # no grid needed
    for image_id, image in images.items():
        image.camera_id = 1 + image_id % 4
    write_model(tmp_path / "sparse" / "0", cameras, images, points)
    built = []
    original = render3d.data.undistort.undistortion_grid
    monkeypatch.setattr(render3d.data.undistort, "undistortion_grid", lambda *args: built.append(args) or original(*args))
    data = load_dataset(tmp_path, "all")
    assert len(data) == 6 and len(built) == 2  # ids 1 and 2 share one grid, id 3 has its own
    assert sorted(float(args[1].k1) for args in built) == [-0.2, -0.1]


def test_nerfstudio_frames_sharing_a_lens_share_a_grid(tmp_path, monkeypatch):
    meta, _, _ = write_nerfstudio_scene(tmp_path, count=4, k1=-0.1)
    meta["frames"][3]["k1"] = -0.2
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    built = []
    original = render3d.data.undistort.undistortion_grid
    monkeypatch.setattr(render3d.data.undistort, "undistortion_grid", lambda *args: built.append(args) or original(*args))
    load_dataset(tmp_path, "all")
    assert len(built) == 2


def test_masks_folder_is_stored_as_integers_without_colour_channels(tmp_path):
    scene = write_colmap_scene(tmp_path, count=2)
    colour = random_images(2, 20, 16, 3, seed=9)
    for name, mask in zip(scene["names"], colour):
        write_png(tmp_path / "masks" / name, mask)
    data = load_dataset(tmp_path, "all")
    assert data.masks.shape == (2, 16, 20, 1) and data.masks.dtype == torch.uint8
    by_name = dict(zip(scene["names"], colour))
    expected = np.stack([by_name[name.removeprefix("images/")] for name in data.image_names]).mean(-1, keepdims=True)
    np.testing.assert_allclose(data.masks.numpy(), expected, atol=0.5 + 1e-4)  # colour masks: the rounded mean
    flat = torch.arange(0, 2 * 16 * 20, 7)
    np.testing.assert_array_equal(data.pixel_masks(flat).numpy(), data.masks.reshape(-1, 1)[flat].numpy() / np.float32(255))


def test_info_and_render_orbit_decode_no_image(toy_method, tmp_path, monkeypatch, capsys):
    from render3d.apps.cli import main
    from tests.conftest import write_nerf_synthetic

    data = write_nerf_synthetic(tmp_path / "scene")
    run = tmp_path / "run"
    assert main(["fit", str(data), "--method", "toy", "--out", str(run), "--steps", "2", "--no-eval", "--quiet"]) == 0
    monkeypatch.setattr(render3d.data.images, "decode_image", lambda path: pytest.fail(f"decoded {path}"))
    assert main(["info", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "train: 6 images" in printed and "alpha: yes" in printed  # alpha from the headers
    assert main(["render", str(run), "--orbit", "2", "--out", str(tmp_path / "frames"), "--quiet"]) == 0
    assert main(["render", str(run), "--split", "val", "--out", str(tmp_path / "val"), "--quiet"]) == 0
    assert len(list((tmp_path / "frames").glob("orbit_*.png"))) == 2
