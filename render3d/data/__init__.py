"""Dataset loading: one entry point for NeRF-synthetic, nerfstudio, COLMAP and photo folders.

Example::

    >>> from render3d.data import load_dataset, detect_format
    >>> detect_format("assets/demo")                              # doctest: +SKIP
    'blender'
    >>> train = load_dataset("assets/demo", "train", downscale=2)  # doctest: +SKIP
    >>> train.images.shape, train.images.dtype                     # doctest: +SKIP
    (torch.Size([36, 100, 100, 3]), torch.uint8)
    >>> train.float_images(slice(0, 4)).shape                      # doctest: +SKIP
    torch.Size([4, 100, 100, 3])
"""
from __future__ import annotations

from pathlib import Path

from render3d.data.blender import load_blender
from render3d.data.colmap import load_colmap
from render3d.data.dataset import Dataset
from render3d.data.detect import FORMATS, detect_format
from render3d.data.images import read_image
from render3d.data.nerfstudio import load_nerfstudio
from render3d.data.photos import load_photos
from render3d.data.splits import SPLITS, check_loader_options, check_split

__all__ = ["Dataset", "FORMATS", "SPLITS", "detect_format", "load_dataset", "read_image"]


def load_dataset(
    path,
    split: str = "train",
    *,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    downscale: int = 1,
    max_images: int | None = None,
    test_every: int = 8,
    images: bool = True,
) -> Dataset:
    """Load one split of the dataset in ``path``, whatever its format.

    Args:
        path: dataset folder (see :func:`detect_format` for what is recognised).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        background: RGB in [0,1] that the float accessors (:meth:`Dataset.float_images`, ...)
            composite images with alpha over.
        downscale: integer factor to shrink images by (area averaging; cameras follow).
        max_images: keep at most this many images of the split, evenly spaced.
        test_every: for formats without split files (COLMAP, photos, nerfstudio without
            ``*_filenames``), every ``test_every``-th image sorted by name is a test image.
        images: False loads cameras, names, bounds and points without decoding any image
            (``images``, ``alphas`` and ``masks`` are None; the files' headers are still read
            to check their sizes).

    Returns:
        A :class:`Dataset`: ``images [N,H,W,3]`` uint8 (uint16 for 16-bit sources), colour
        premultiplied by alpha, read as float through its accessors; ``cameras`` (OpenCV axes), bounds,
        and, when the format has them, ``alphas``, ``points``/``point_colors`` and ``mesh_path``.

    Raises:
        ConfigError: naming the argument when an option is invalid.
        DataError: naming the file when the dataset is missing, malformed or inconsistent.
    """
    check_split(split)
    background = check_loader_options(background, downscale, max_images, test_every)
    root = Path(path)
    kind = detect_format(root)
    options = dict(background=background, downscale=int(downscale), max_images=max_images, images=bool(images))
    if kind == "blender":
        return load_blender(root, split, **options)
    if kind == "nerfstudio":
        return load_nerfstudio(root, split, test_every=test_every, **options)
    if kind == "colmap":
        return load_colmap(root, split, test_every=test_every, **options)
    return load_photos(root, split, test_every=test_every, **options)
