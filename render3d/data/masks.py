"""Object masks of posed images, from a ``masks/`` folder beside ``images/``.

A mask has the file name of its image relative to the images folder (``images/a/b.jpg`` →
``masks/a/b.jpg``) or the same name with ``.png`` in place of the extension (``masks/a/b.png``;
masks are best stored lossless). White (1) is the object, black (0) the background; gray values
are kept as soft masks, colour masks are averaged over RGB and an alpha channel multiplies the
value (transparent is background). Once the folder exists, every loaded image needs a mask of
its own size. Images with an alpha channel need no folder: their alpha is the mask
(:class:`render3d.data.dataset.Dataset` ``masks``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from render3d.data.images import image_size, load_images
from render3d.errors import DataError

__all__ = ["MASKS_FOLDER", "find_mask", "load_masks", "read_masks"]

MASKS_FOLDER = "masks"


def find_mask(masks_dir: Path, name: str) -> Path | None:
    """The mask file of the image called ``name`` (relative to the images folder), or None."""
    path = masks_dir / name
    for candidate in (path, path.with_suffix(".png")):
        if candidate.is_file():
            return candidate
    return None


def load_masks(
    masks_dir: Path,
    names: Sequence[str],
    *,
    size: tuple[int, int],
    downscale: int,
    transform: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray | None:
    """The masks of the images ``names`` from ``masks_dir``, or None when that folder does not exist.

    Args:
        masks_dir: the masks folder.
        names: image file names relative to the images folder, in dataset order.
        size: ``(width, height)`` of the images at full resolution.
        downscale: the images' integer shrink factor (area averaging, as the images).
        transform: the images' per-index transform at full resolution (lens undistortion).

    Returns:
        ``[N,H',W',1]`` uint8 (uint16 when a mask file is 16-bit); the maximum is the object.

    Raises:
        DataError: naming the image without a mask, or the mask whose size differs.
    """
    if not masks_dir.is_dir():
        return None
    paths = []
    for name in names:
        path = find_mask(masks_dir, name)
        if path is None:
            raise DataError(f"{masks_dir}: no mask for image {name} (expected {masks_dir / name} or the same name "
                            "with .png); when a masks folder exists every image needs one")
        paths.append(path)
    return read_masks(paths, size=size, downscale=downscale, transform=transform)


def read_masks(
    paths: Sequence[Path],
    *,
    size: tuple[int, int],
    downscale: int,
    transform: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """``[N,H',W',1]`` uint8 or uint16 masks read from ``paths`` (arguments as :func:`load_masks`)."""
    for path in paths:
        if not path.is_file():
            raise DataError(f"mask file not found: {path}")
    found = image_size(paths[0])
    if found != tuple(size):
        raise DataError(f"mask {paths[0]} is {found[0]}x{found[1]} but its image is {size[0]}x{size[1]}")
    values, _ = load_images(paths, downscale=downscale, transform=transform, gray=True)
    return values
