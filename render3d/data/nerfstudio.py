"""Loader for nerfstudio scenes: one ``transforms.json``.

Read keys: global intrinsics ``fl_x, fl_y, cx, cy, w, h`` and distortion ``k1, k2, k3, p1,
p2`` (each may be overridden per frame), ``camera_model`` (``OPENCV``, the default, or
``PINHOLE``/``SIMPLE_PINHOLE``; fisheye and equirectangular models are refused), frames with
``file_path`` (relative to the folder) and an OpenGL camera-to-world ``transform_matrix``.
Distorted images are undistorted to a pinhole with the same ``K``.

Masks: each frame's ``mask_path`` when the frames have one, else a ``masks/`` folder beside
``images/`` with the images' names (:mod:`render3d.data.masks`).

Frames whose image file is missing (tools that filter blurry frames delete the files and keep
the frames) are skipped with a :class:`~render3d.errors.DataWarning` that names the first; a
split with no image left is a DataError.

Splits: ``train_filenames`` / ``val_filenames`` / ``test_filenames`` when present (``val`` and
``test`` stand in for each other when only one is given); otherwise frames sorted by
``file_path`` with every ``test_every``-th one as ``test`` (and ``val``).

Points: ``ply_file_path`` (nerfstudio's sparse points). nerfstudio writes them already moved by
``applied_transform`` into the frame of the poses, so they are used as stored (the key only
records how that frame relates to the original COLMAP one).

Bounds: from the points when there are any (:func:`render3d.data.bounds.bounds_from_points`),
else from the camera centres of all frames (:func:`render3d.data.bounds.bounds_from_cameras`),
with the cube's half-size multiplied by ``aabb_scale`` when the file has one.
"""
from __future__ import annotations

import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from render3d.cameras import Cameras, opengl_to_opencv
from render3d.data.bounds import bounds_from_cameras, bounds_from_points
from render3d.data.dataset import Dataset, optional_tensor
from render3d.data.images import check_same_size, find_image_path, load_images, relative_name
from render3d.data.jsonfile import read_json, read_matrix, require
from render3d.data.masks import MASKS_FOLDER, load_masks, read_masks
from render3d.data.poses import check_poses
from render3d.data.splits import every_nth_split, limit_count
from render3d.data.undistort import Distortion, Undistorter
from render3d.errors import DataError, DataWarning

__all__ = ["load_nerfstudio"]

_SUPPORTED_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")


def _number(frame: dict, meta: dict, key: str, path: Path, where: str, default: float | None = None) -> float:
    """Per-frame value of ``key``, else the global one, else ``default`` (DataError if none)."""
    if key in frame:
        value = frame[key]
    elif key in meta or default is None:
        value = require(meta, key, path, f"{where} or at the top level")
    else:
        value = default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: '{key}' in {where} must be a number, got {value!r}") from None


def _camera(frame: dict, meta: dict, path: Path, where: str) -> tuple[np.ndarray, Distortion, tuple[int, int] | None]:
    """``K [3,3]`` float64, distortion and the declared ``(w, h)`` (or None) of one frame."""
    model = str(frame.get("camera_model", meta.get("camera_model", "OPENCV")))
    if model not in _SUPPORTED_MODELS:
        raise DataError(
            f"{path}: camera_model {model} is not supported (only {', '.join(_SUPPORTED_MODELS)}); "
            "undistort the images to a pinhole camera first"
        )
    fx = _number(frame, meta, "fl_x", path, where)
    fy = _number(frame, meta, "fl_y", path, where, default=fx)
    cx = _number(frame, meta, "cx", path, where)
    cy = _number(frame, meta, "cy", path, where)
    if _number(frame, meta, "k4", path, where, default=0.0) != 0.0:
        raise DataError(f"{path}: k4 is set in {where}, which only fisheye models use; camera_model is {model}")
    distortion = Distortion()
    if model == "OPENCV":
        distortion = Distortion(
            **{key: _number(frame, meta, key, path, where, default=0.0) for key in ("k1", "k2", "k3", "p1", "p2")}
        )
    size = None
    if ("w" in frame or "w" in meta) and ("h" in frame or "h" in meta):
        size = (int(_number(frame, meta, "w", path, where)), int(_number(frame, meta, "h", path, where)))
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, distortion, size


def _normalised(file_path: str) -> str:
    return PurePosixPath(file_path.replace("\\", "/")).as_posix().removeprefix("./")


def _split_indices(meta: dict, names: list[str], split: str, test_every: int, path: Path) -> list[int]:
    """Indices into ``names`` (normalised file paths, in file order) of ``split``."""
    lists = {s: meta[f"{s}_filenames"] for s in ("train", "val", "test") if f"{s}_filenames" in meta}
    if split == "all":
        return list(range(len(names)))
    if not lists:
        order = sorted(range(len(names)), key=lambda i: names[i])
        return sorted(order[i] for i in every_nth_split(len(order), split, test_every))
    stand_in = {"val": "test", "test": "val"}.get(split)
    wanted = lists.get(split, lists.get(stand_in) if stand_in else None)
    if wanted is None:
        raise DataError(f"{path}: has {', '.join(f'{s}_filenames' for s in lists)} but no {split}_filenames")
    position = {name: i for i, name in enumerate(names)}
    indices = []
    for name in wanted:
        key = _normalised(str(name))
        if key not in position:
            raise DataError(f"{path}: {split}_filenames lists {name}, which is not the file_path of any frame")
        indices.append(position[key])
    return sorted(indices)


def _report_missing(path: Path, split: str, missing: list[str], listed: int, left: int) -> None:
    """Frames whose image file is gone (instant-ngp's and nerfstudio's tools drop blurry frames
    from the folder and leave them in the file): a :class:`~render3d.errors.DataWarning` naming
    the first, and a DataError when none is left."""
    if not missing:
        return
    if left == 0:
        raise DataError(f"{path}: none of the {listed} {split} frames has its image file (first: {missing[0]})")
    have = "has" if len(missing) == 1 else "have"
    warnings.warn(DataWarning(f"{path}: {len(missing)} of the {listed} {split} frames {have} no image file "
                              f"(first: {missing[0]}); loading the other {left} (--strict refuses)"), stacklevel=4)


def _load_points(root: Path, meta: dict, path: Path) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Points ``[P,3]`` and colours ``[P,3]`` (float32) from ``ply_file_path``, or ``(None, None)``."""
    if "ply_file_path" not in meta:
        return None, None
    import trimesh

    ply = root / str(meta["ply_file_path"])
    try:
        cloud = trimesh.load(ply, process=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read ply_file_path {ply}: {error}") from None
    xyz = np.asarray(getattr(cloud, "vertices", np.zeros((0, 3))), dtype=np.float64)
    colors = getattr(cloud, "colors", None)
    if colors is None or len(colors) != len(xyz):
        rgb = np.full((len(xyz), 3), 0.5)
    else:
        rgb = np.asarray(colors, dtype=np.float64)[:, :3] / 255.0
    return torch.tensor(xyz, dtype=torch.float32), torch.tensor(rgb, dtype=torch.float32)


def _load_masks(root: Path, frames: list[dict], indices: list[int], paths: list[Path], path: Path,
                size: tuple[int, int], downscale: int, undistort) -> np.ndarray | None:
    """``[N,H,W,1]`` masks of the loaded ``frames`` (file indices ``indices``, images ``paths``) from
    their ``mask_path`` when the frames have one, else from ``masks/`` (:mod:`render3d.data.masks`)."""
    if any("mask_path" in frame for frame in frames):
        for index, frame in zip(indices, frames):
            if "mask_path" not in frame:
                raise DataError(f"{path}: frame {index} has no mask_path but other frames have one")
        mask_paths = [root / _normalised(str(frame["mask_path"])) for frame in frames]
        return read_masks(mask_paths, size=size, downscale=downscale, transform=undistort)
    names = [relative_name(image, root).removeprefix("images/") for image in paths]
    return load_masks(root / MASKS_FOLDER, names, size=size, downscale=downscale, transform=undistort)


def load_nerfstudio(
    root: Path,
    split: str,
    *,
    background: tuple[float, float, float],
    downscale: int,
    max_images: int | None,
    test_every: int,
    images: bool = True,
) -> Dataset:
    """Load one split of a nerfstudio scene (``root/transforms.json``).

    Args:
        root: scene folder.
        split: ``train``, ``val``, ``test`` or ``all`` (already validated).
        background: RGB the float accessors composite RGBA images over.
        downscale: integer image shrink factor (cameras scaled to match).
        max_images: keep at most this many images of the split, evenly spaced.
        test_every: fallback split rule when the file lists no filenames.
        images: decode the images and masks; False reads only cameras, names and bounds.

    Returns:
        A :class:`Dataset` with ``format="nerfstudio"``.
    """
    path = root / "transforms.json"
    meta = read_json(path)
    frames = require(meta, "frames", path)
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{path}: 'frames' must be a non-empty list")
    names = [_normalised(str(require(frame, "file_path", path, f"frame {i}"))) for i, frame in enumerate(frames)]
    all_c2w = np.stack(
        [
            read_matrix(require(frame, "transform_matrix", path, f"frame {i}"), 4, 4, path, f"frame {i} transform_matrix")
            for i, frame in enumerate(frames)
        ]
    )
    check_poses(all_c2w, path, [f"frame {i} ({name})" for i, name in enumerate(names)])
    in_split = _split_indices(meta, names, split, test_every, path)
    found = {i: find_image_path(root, names[i]) for i in in_split}
    present = [i for i in in_split if found[i] is not None]
    _report_missing(path, split, [names[i] for i in in_split if found[i] is None], len(in_split), len(present))
    selected = limit_count(present, max_images, root, split)
    all_info = [_camera(frame, meta, path, f"frame {i}") for i, frame in enumerate(frames)]
    cameras_info = [all_info[i] for i in selected]
    paths = [found[i] for i in selected]
    width, height = check_same_size(paths)
    for i, (_, _, declared) in zip(selected, cameras_info):
        if declared is not None and declared != (width, height):
            raise DataError(
                f"{path}: frame {i} declares w x h = {declared[0]}x{declared[1]} but {paths[0]} is {width}x{height}"
            )

    rgb = alpha = masks = None
    if images:
        undistort = Undistorter([(K, distortion) for K, distortion, _ in cameras_info], width, height)
        rgb, alpha = load_images(paths, downscale=downscale, transform=undistort)
        masks = _load_masks(root, [frames[i] for i in selected], selected, paths, path, (width, height), downscale,
                            undistort)
    all_cv = opengl_to_opencv(torch.tensor(all_c2w, dtype=torch.float32))
    all_K = torch.tensor(np.stack([K for K, _, _ in all_info]), dtype=torch.float32)
    all_cameras = Cameras(K=all_K, c2w=all_cv, width=width, height=height)
    cameras = all_cameras[torch.tensor(selected)]
    points, point_colors = _load_points(root, meta, path)
    if points is not None and points.shape[0] > 0:
        aabb, near, far = bounds_from_points(points, all_cameras)
    else:
        aabb, near, far = bounds_from_cameras(all_cv[:, :3, 3], scale=_number({}, meta, "aabb_scale", path, "the file", 1.0))
    if downscale > 1:
        cameras = cameras.scaled(1.0 / downscale)
    return Dataset(
        images=optional_tensor(rgb),
        cameras=cameras,
        image_names=[relative_name(p, root) for p in paths],
        aabb=aabb,
        near=near,
        far=far,
        alphas=optional_tensor(alpha),
        masks=optional_tensor(masks),
        background=background,
        points=points,
        point_colors=point_colors,
        format="nerfstudio",
        split=split,
        root=root,
    )
