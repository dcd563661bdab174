"""Recognising which dataset format a folder holds."""
from __future__ import annotations

from pathlib import Path

from render3d.data.colmap import find_colmap_model
from render3d.data.images import photo_folder
from render3d.errors import DataError

__all__ = ["FORMATS", "detect_format"]

FORMATS = ("blender", "nerfstudio", "colmap", "photos")


def detect_format(path) -> str:
    """Name the dataset format of a folder.

    Checked in this order: ``transforms_train.json`` → ``"blender"`` (NeRF-synthetic),
    ``transforms.json`` → ``"nerfstudio"``, a COLMAP model in ``sparse/0`` or ``sparse`` →
    ``"colmap"``, image files in the folder or in ``images/`` → ``"photos"``.

    Raises:
        DataError: when the path is missing, not a folder, or holds none of these.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"{root}: a dataset must be a folder, not a file")
    if (root / "transforms_train.json").is_file():
        return "blender"
    if (root / "transforms.json").is_file():
        return "nerfstudio"
    if find_colmap_model(root) is not None:
        return "colmap"
    if photo_folder(root) is not None:
        return "photos"
    raise DataError(
        f"{root}: no dataset found; looked for transforms_train.json (NeRF-synthetic), transforms.json "
        "(nerfstudio), sparse/0/{cameras,images,points3D}.bin or .txt (COLMAP), and image files in the "
        "folder or in images/ (photos for structure-from-motion)"
    )
