"""Loader for COLMAP scenes: ``sparse/0`` (binary or text model) plus an ``images/`` folder.

Conventions:

- Splits: images sorted by name; every ``test_every``-th one (indices 0, n, 2n, ...) is
  ``test``, the rest ``train``; ``val`` equals ``test`` (the 3DGS / Mip-NeRF 360 convention).
- Cameras: PINHOLE and SIMPLE_PINHOLE are used as they are; SIMPLE_RADIAL, RADIAL and OPENCV
  images are undistorted to a pinhole with the same ``K`` (:mod:`render3d.data.undistort`).
  Other models are refused with a message that says how to undistort them first.
- Masks: a ``masks/`` folder beside ``images/`` with the images' names (:mod:`render3d.data.masks`).
- Bounds: :func:`render3d.data.bounds.bounds_from_points` over all registered cameras (the
  same for every split), or camera centres when the model has no points.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from render3d.cameras import Cameras
from render3d.data.bounds import bounds_from_points
from render3d.data.colmap_io import ColmapCamera, ColmapImage, model_format, read_model
from render3d.data.dataset import Dataset, optional_tensor
from render3d.data.images import check_same_size, load_images, photo_folder, relative_name
from render3d.data.masks import MASKS_FOLDER, load_masks
from render3d.data.poses import check_poses
from render3d.data.splits import every_nth_split, limit_count
from render3d.data.undistort import Distortion, Undistorter
from render3d.errors import DataError

__all__ = ["find_colmap_model", "colmap_intrinsics", "load_colmap"]

_MODEL_FOLDERS = ("sparse/0", "sparse")


def find_colmap_model(root: Path) -> Path | None:
    """The COLMAP model folder of a scene (``sparse/0`` or ``sparse``), or None."""
    for relative in _MODEL_FOLDERS:
        if model_format(root / relative) is not None:
            return root / relative
    return None


def colmap_intrinsics(camera: ColmapCamera, source: Path) -> tuple[np.ndarray, Distortion]:
    """``K [3,3]`` float64 and lens distortion of a COLMAP camera.

    Raises:
        DataError: naming the model and ``source`` for models this loader does not undistort.
    """
    p = camera.params
    if camera.model == "SIMPLE_PINHOLE":
        (f, cx, cy), distortion = p, Distortion()
        fx = fy = f
    elif camera.model == "PINHOLE":
        (fx, fy, cx, cy), distortion = p, Distortion()
    elif camera.model == "SIMPLE_RADIAL":
        f, cx, cy, k = p
        fx = fy = f
        distortion = Distortion(k1=k)
    elif camera.model == "RADIAL":
        f, cx, cy, k1, k2 = p
        fx = fy = f
        distortion = Distortion(k1=k1, k2=k2)
    elif camera.model == "OPENCV":
        fx, fy, cx, cy, k1, k2, p1, p2 = p
        distortion = Distortion(k1=k1, k2=k2, p1=p1, p2=p2)
    else:
        raise DataError(
            f"{source}: camera {camera.id} uses the {camera.model} model, which render3d does not "
            "undistort; run `colmap image_undistorter --input_path <sparse/0> --image_path <images> "
            "--output_path <new folder>` and load the new folder"
        )
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, distortion


def _shared_size(cameras: dict[int, ColmapCamera], images: list[ColmapImage], model: Path) -> tuple[int, int]:
    first = cameras[images[0].camera_id]
    for image in images:
        camera = cameras[image.camera_id]
        if (camera.width, camera.height) != (first.width, first.height):
            raise DataError(
                f"{model}: camera {camera.id} (image {image.name}) is {camera.width}x{camera.height} but camera "
                f"{first.id} (image {images[0].name}) is {first.width}x{first.height}; all images of one dataset "
                "must share one size"
            )
    return first.width, first.height


def _camera_to_world(image: ColmapImage) -> np.ndarray:
    w2c = image.world_to_camera
    c2w = np.eye(4)
    c2w[:3, :3] = w2c[:3, :3].T
    c2w[:3, 3] = -w2c[:3, :3].T @ w2c[:3, 3]
    return c2w


def load_colmap(
    root: Path,
    split: str,
    *,
    background: tuple[float, float, float],
    downscale: int,
    max_images: int | None,
    test_every: int,
    model_dir: Path | None = None,
    image_dir: Path | None = None,
    images: bool = True,
) -> Dataset:
    """Load one split of a COLMAP scene.

    Args:
        root: scene folder.
        split: ``train``, ``val``, ``test`` or ``all`` (already validated).
        background: RGB the float accessors composite RGBA images over.
        downscale: integer image shrink factor (cameras scaled to match).
        max_images: keep at most this many images of the split, evenly spaced.
        test_every: every ``test_every``-th image (sorted by name) is a test image.
        model_dir: the COLMAP model folder; found under ``root`` when None.
        image_dir: folder the image names are relative to; ``root/images`` when it exists,
            else ``root``.
        images: decode the images and masks; False reads only cameras, names and bounds.

    Returns:
        A :class:`Dataset` with ``points``/``point_colors`` from ``points3D``.
    """
    model_dir = model_dir or find_colmap_model(root)
    if model_dir is None:
        raise DataError(f"{root}: no COLMAP model in sparse/0 or sparse (cameras, images, points3D as .bin or .txt)")
    if image_dir is None:
        image_dir = photo_folder(root) or root
    cameras, images_by_id, points = read_model(model_dir)
    registered = sorted(images_by_id.values(), key=lambda image: image.name)
    if not registered:
        raise DataError(f"{model_dir}: the COLMAP model has no registered images")
    for image in registered:
        if image.camera_id not in cameras:
            raise DataError(f"{model_dir}: image {image.name} refers to camera {image.camera_id}, which is not in the model")
    width, height = _shared_size(cameras, registered, model_dir)
    intrinsics = {cid: colmap_intrinsics(cameras[cid], model_dir) for cid in {i.camera_id for i in registered}}

    all_c2w = np.stack([_camera_to_world(image) for image in registered])
    check_poses(all_c2w, model_dir, [f"image {image.name}" for image in registered])
    all_c2w = torch.tensor(all_c2w, dtype=torch.float32)
    all_K = torch.tensor(np.stack([intrinsics[image.camera_id][0] for image in registered]), dtype=torch.float32)
    all_cameras = Cameras(K=all_K, c2w=all_c2w, width=width, height=height)

    selected = limit_count(every_nth_split(len(registered), split, test_every), max_images, root, split)
    chosen = [registered[i] for i in selected]
    paths = [image_dir / image.name for image in chosen]
    found_size = check_same_size(paths)
    if found_size != (width, height):
        raise DataError(
            f"image {paths[0]} is {found_size[0]}x{found_size[1]} but its COLMAP camera in {model_dir} is "
            f"{width}x{height}; use the images the model was built from"
        )

    rgb = alpha = masks = None
    if images:
        undistort = Undistorter([intrinsics[image.camera_id] for image in chosen], width, height)
        rgb, alpha = load_images(paths, downscale=downscale, transform=undistort)
        masks_dir = (root if image_dir == root else image_dir.parent) / MASKS_FOLDER
        masks = load_masks(masks_dir, [image.name for image in chosen], size=(width, height), downscale=downscale,
                           transform=undistort)
    cameras_out = all_cameras[torch.tensor(selected)]
    if downscale > 1:
        cameras_out = cameras_out.scaled(1.0 / downscale)

    xyz = torch.tensor(points.xyz, dtype=torch.float32)
    aabb, near, far = bounds_from_points(xyz, all_cameras)
    return Dataset(
        images=optional_tensor(rgb),
        cameras=cameras_out,
        image_names=[relative_name(path, root) for path in paths],
        aabb=aabb,
        near=near,
        far=far,
        alphas=optional_tensor(alpha),
        masks=optional_tensor(masks),
        background=background,
        points=xyz,
        point_colors=torch.tensor(points.rgb, dtype=torch.float32) / 255.0,
        format="colmap",
        split=split,
        root=root,
    )

