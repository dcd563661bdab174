"""Object masks: the alpha of RGBA images, or a ``masks/`` folder beside ``images/`` (COLMAP,
nerfstudio) matched by file name or by stem + ``.png``, downscaled and undistorted like the
images; a missing or misfit mask is a one-line DataError naming the file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from render3d.data import load_dataset
from render3d.data.colmap_io import ColmapCamera
from render3d.data.dataset import to_unit_float
from render3d.errors import DataError
from tests.data.synthetic import random_images, write_blender_scene, write_colmap_scene, write_png
from tests.data.test_nerfstudio import write_scene as write_nerfstudio_scene


def gray(values: np.ndarray) -> np.ndarray:
    """``[...,H,W]`` uint8 → ``[...,H,W,3]`` uint8 (what most tools write as a mask)."""
    return np.repeat(values[..., None], 3, axis=-1)


def binary_masks(count: int, width: int, height: int) -> np.ndarray:
    """``[N,H,W]`` uint8 masks, each a different left part of the image set to 255."""
    masks = np.zeros((count, height, width), dtype=np.uint8)
    for i in range(count):
        masks[i, :, : 2 + i] = 255
    return masks


def test_rgba_images_give_their_alpha_as_the_mask(tmp_path):
    expected = write_blender_scene(tmp_path)
    data = load_dataset(tmp_path, "train")
    assert data.masks is data.alphas
    np.testing.assert_array_equal(data.masks[..., 0].numpy(), expected["train"]["images"][..., 3])
    assert data.to("cpu").masks is not None


def test_rgb_images_without_a_masks_folder_have_no_masks(tmp_path):
    write_colmap_scene(tmp_path, count=4)
    assert load_dataset(tmp_path, "all").masks is None


def test_colmap_masks_folder_with_the_image_names(tmp_path):
    scene = write_colmap_scene(tmp_path, count=4, size=(20, 16))
    masks = binary_masks(4, 20, 16)
    for name, mask in zip(scene["names"], masks):
        write_png(tmp_path / "masks" / name, mask)  # single-channel PNG
    data = load_dataset(tmp_path, "all")
    assert data.alphas is None
    by_name = dict(zip(scene["names"], masks))
    expected = np.stack([by_name[name.removeprefix("images/")] for name in data.image_names])
    np.testing.assert_array_equal(data.masks[..., 0].numpy(), expected)
    assert data.masks.shape == (4, 16, 20, 1) and data.masks.dtype == torch.uint8


def test_png_masks_of_jpeg_images_and_downscaling(tmp_path):
    width, height = 20, 16
    scene = write_colmap_scene(tmp_path, count=3, size=(width, height))
    for name in scene["names"]:  # the images become JPEGs: the model names them .jpg
        (tmp_path / "images" / name).rename((tmp_path / "images" / name).with_suffix(".jpg"))
    from render3d.data.colmap_io import read_model, write_model

    cameras, images, points = read_model(tmp_path / "sparse" / "0")
    for image in images.values():
        image.name = image.name.replace(".png", ".jpg")
    write_model(tmp_path / "sparse" / "0", cameras, images, points)
    masks = binary_masks(3, width, height)
    for name, mask in zip(scene["names"], masks):
        write_png(tmp_path / "masks" / name, gray(mask))  # masks/img_00.png for images/img_00.jpg
    data = load_dataset(tmp_path, "all", downscale=2)
    order = [scene["names"].index(name.removeprefix("images/").replace(".jpg", ".png")) for name in data.image_names]
    blocks = masks[order].reshape(3, height // 2, 2, width // 2, 2).mean(axis=(2, 4)) / 255.0
    np.testing.assert_allclose(to_unit_float(data.masks[..., 0]).numpy(), blocks, atol=0.5 / 255 + 1e-6)


def test_masks_are_undistorted_with_their_images(tmp_path):
    camera = ColmapCamera(1, "OPENCV", 20, 16, np.array([18.0, 19.0, 10.5, 7.5, -0.2, 0.05, 0.01, -0.008]))
    pixels = gray(random_images(3, 20, 16, 1, seed=5)[..., 0])
    scene = write_colmap_scene(tmp_path, count=3, size=(20, 16), camera=camera, images=pixels)
    for name, image in zip(scene["names"], pixels):
        write_png(tmp_path / "masks" / name, image)  # each mask equals its (gray) image
    data = load_dataset(tmp_path, "all")
    # The images are undistorted; the masks must be moved by the same resampling.
    np.testing.assert_array_equal(data.masks[..., 0].numpy(), data.images[..., 0].numpy())
    assert not np.array_equal(data.images[..., 0].numpy(), pixels[..., 0])


def test_alpha_of_a_mask_file_is_background(tmp_path):
    scene = write_colmap_scene(tmp_path, count=2, size=(20, 16))
    rgba = np.full((16, 20, 4), 255, dtype=np.uint8)
    rgba[:, :10, 3] = 0
    for name in scene["names"]:
        write_png(tmp_path / "masks" / name, rgba)
    data = load_dataset(tmp_path, "all")
    assert int(data.masks[:, :, :10].max()) == 0 and int(data.masks[:, :, 10:].min()) == 255


def test_a_missing_mask_names_the_image(tmp_path):
    scene = write_colmap_scene(tmp_path, count=3, size=(20, 16))
    for name, mask in zip(scene["names"][1:], binary_masks(2, 20, 16)):
        write_png(tmp_path / "masks" / name, mask)
    with pytest.raises(DataError, match=f"no mask for image {scene['names'][0]}"):
        load_dataset(tmp_path, "all")


def test_a_mask_of_another_size_is_refused(tmp_path):
    scene = write_colmap_scene(tmp_path, count=2, size=(20, 16))
    for name in scene["names"]:
        write_png(tmp_path / "masks" / name, np.zeros((8, 10), dtype=np.uint8))
    with pytest.raises(DataError, match=r"is 10x8 but its image is 20x16"):
        load_dataset(tmp_path, "all")


def test_nerfstudio_masks_folder_beside_images(tmp_path):
    _, _, images = write_nerfstudio_scene(tmp_path, count=3)
    masks = binary_masks(3, images.shape[2], images.shape[1])
    for i, mask in enumerate(masks):
        write_png(tmp_path / "masks" / f"frame_{i:05d}.png", mask)
    data = load_dataset(tmp_path, "all")
    np.testing.assert_array_equal(data.masks[..., 0].numpy(), masks)


def test_nerfstudio_mask_path_per_frame(tmp_path):
    meta, _, images = write_nerfstudio_scene(tmp_path, count=3)
    masks = binary_masks(3, images.shape[2], images.shape[1])
    for i, (frame, mask) in enumerate(zip(meta["frames"], masks)):
        write_png(tmp_path / "segmentation" / f"m{i}.png", mask)
        frame["mask_path"] = f"segmentation/m{i}.png"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(load_dataset(tmp_path, "all").masks[..., 0].numpy(), masks)

    del meta["frames"][1]["mask_path"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="frame 1 has no mask_path"):
        load_dataset(tmp_path, "all")
