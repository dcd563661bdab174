"""Loader for NeRF-synthetic (Blender) scenes: ``transforms_{train,val,test}.json``.

Each file holds ``camera_angle_x`` (horizontal field of view, radians; optional
``camera_angle_y``, or explicit ``fl_x``/``fl_y``/``cx``/``cy`` in pixels) and ``frames`` with
``file_path`` (relative to the scene folder, usually without extension) and a Blender
camera-to-world ``transform_matrix`` (OpenGL camera axes, converted to OpenCV here).

Bounds: the conventional NeRF-synthetic box ``[-1.5, 1.5]^3``; near and far are derived from
the cameras as the closest and farthest distances from any camera centre of the scene (all
splits) to that box (:func:`render3d.data.bounds.bounds_in_box`). For the original scenes this
gives about 2.5 and 5.9, inside the customary near=2, far=6 and tighter.

A ``mesh.ply`` next to the JSON files is taken as the ground-truth mesh (``Dataset.mesh_path``).
The renders' alpha channel is the object mask (``Dataset.masks``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from render3d.cameras import Cameras, opengl_to_opencv
from render3d.data.bounds import bounds_in_box
from render3d.data.dataset import Dataset, optional_tensor
from render3d.data.images import check_same_size, load_images, relative_name, resolve_image_path
from render3d.data.jsonfile import read_json, read_matrix, require
from render3d.data.poses import check_poses
from render3d.data.splits import limit_count
from render3d.errors import DataError

__all__ = ["BLENDER_AABB", "load_blender"]

BLENDER_AABB = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))
_FILE_SPLITS = ("train", "val", "test")


def _frames(root: Path, split: str) -> tuple[Path, dict, list[dict]]:
    path = root / f"transforms_{split}.json"
    meta = read_json(path)
    frames = require(meta, "frames", path)
    if not isinstance(frames, list):
        raise DataError(f"{path}: 'frames' must be a list")
    return path, meta, frames


def _intrinsics(meta: dict, path: Path, width: int, height: int) -> np.ndarray:
    """``[3,3]`` float64 from ``fl_x``/``fl_y``/``cx``/``cy`` or ``camera_angle_x``/``camera_angle_y``."""
    if "fl_x" not in meta:
        require(meta, "camera_angle_x", path)
    try:
        if "fl_x" in meta:
            fx = float(meta["fl_x"])
            fy = float(meta.get("fl_y", fx))
        else:
            fx = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
            fy = 0.5 * height / math.tan(0.5 * float(meta["camera_angle_y"])) if "camera_angle_y" in meta else fx
        cx = float(meta.get("cx", 0.5 * width))
        cy = float(meta.get("cy", 0.5 * height))
    except (TypeError, ValueError, ZeroDivisionError):
        raise DataError(f"{path}: camera intrinsics (camera_angle_x / fl_x / cx / cy) must be numbers, "
                        "with angles strictly between 0 and pi") from None
    if not (math.isfinite(fx) and math.isfinite(fy) and fx > 0 and fy > 0):
        raise DataError(f"{path}: focal length must be positive (check camera_angle_x)")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _pose(frame: dict, path: Path, index: int) -> np.ndarray:
    """``[4,4]`` float64 OpenGL camera-to-world matrix of one frame."""
    matrix = read_matrix(require(frame, "transform_matrix", path, f"frame {index}"), 4, 4, path,
                         f"frame {index} transform_matrix")
    file_path = frame.get("file_path")
    check_poses(matrix[None], path, [f"frame {index}" + (f" ({file_path})" if isinstance(file_path, str) else "")])
    return matrix


def _scene_camera_centres(root: Path) -> torch.Tensor:
    """``[C,3]`` camera centres of every split file present, so that all splits share bounds."""
    centres = []
    for name in _FILE_SPLITS:
        path = root / f"transforms_{name}.json"
        if path.is_file():
            _, _, frames = _frames(root, name)
            centres.extend(
                _pose(frame, path, i)[:3, 3]
                for i, frame in enumerate(frames)
            )
    return torch.tensor(np.array(centres), dtype=torch.float32)


def load_blender(
    root: Path,
    split: str,
    *,
    background: tuple[float, float, float],
    downscale: int,
    max_images: int | None,
    images: bool = True,
) -> Dataset:
    """Load one split of a NeRF-synthetic scene; ``all`` joins the train, val and test files present.

    Args:
        root: folder with ``transforms_*.json``.
        split: ``train``, ``val``, ``test`` or ``all`` (already validated).
        background: RGB the float accessors composite the RGBA renders over (alpha kept in ``alphas``).
        downscale: integer image shrink factor (cameras scaled to match).
        max_images: keep at most this many images of the split, evenly spaced.
        images: decode the images; False reads only cameras, names and bounds (image headers).

    Returns:
        A :class:`Dataset` with ``format="blender"``.
    """
    if split == "all":
        split_files = [name for name in _FILE_SPLITS if (root / f"transforms_{name}.json").is_file()]
    else:
        split_files = [split]
    entries = [
        (path, meta, index, frame)
        for path, meta, frames in (_frames(root, name) for name in split_files)
        for index, frame in enumerate(frames)
    ]
    entries = [entries[i] for i in limit_count(list(range(len(entries))), max_images, root, split)]
    paths = [
        resolve_image_path(root, str(require(frame, "file_path", path, f"frame {index}")), path)
        for path, _, index, frame in entries
    ]
    c2w = np.stack([_pose(frame, path, index) for path, _, index, frame in entries])
    width, height = check_same_size(paths)
    K = np.stack([_intrinsics(meta, path, width, height) for path, meta, _, _ in entries])

    rgb, alpha = load_images(paths, downscale=downscale) if images else (None, None)
    cameras = Cameras(
        K=torch.tensor(K, dtype=torch.float32),
        c2w=opengl_to_opencv(torch.tensor(c2w, dtype=torch.float32)),
        width=width,
        height=height,
    )
    if downscale > 1:
        cameras = cameras.scaled(1.0 / downscale)
    aabb, near, far = bounds_in_box(_scene_camera_centres(root), torch.tensor(BLENDER_AABB))
    mesh = root / "mesh.ply"
    return Dataset(
        images=optional_tensor(rgb),
        cameras=cameras,
        image_names=[relative_name(path, root) for path in paths],
        aabb=aabb,
        near=near,
        far=far,
        alphas=optional_tensor(alpha),
        background=background,
        mesh_path=mesh if mesh.is_file() else None,
        format="blender",
        split=split,
        root=root,
    )
