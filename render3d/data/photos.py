"""Loading a bare folder of photos: structure-from-motion first, then the COLMAP loader."""
from __future__ import annotations

from pathlib import Path

from render3d.data.colmap import load_colmap
from render3d.data.dataset import Dataset
from render3d.data.images import photo_folder
from render3d.errors import DataError

__all__ = ["load_photos"]


def load_photos(
    root: Path,
    split: str,
    *,
    background: tuple[float, float, float],
    downscale: int,
    max_images: int | None,
    test_every: int,
    images: bool = True,
) -> Dataset:
    """Reconstruct cameras for the photos in ``root`` (or ``root/images``) and load them.

    :func:`render3d.data.sfm.reconstruct` writes ``root/sparse/0``, so loading the folder again
    finds a COLMAP scene and skips the reconstruction. Arguments as for
    :func:`render3d.data.colmap.load_colmap`; the dataset's ``format`` is ``"colmap"``.
    """
    from render3d.data import sfm

    image_dir = photo_folder(root)
    if image_dir is None:
        raise DataError(f"{root}: no image files found in the folder or in images/")
    model_dir = sfm.reconstruct(image_dir, root)
    return load_colmap(
        root,
        split,
        background=background,
        downscale=downscale,
        max_images=max_images,
        test_every=test_every,
        model_dir=Path(model_dir),
        image_dir=image_dir,
        images=images,
    )
