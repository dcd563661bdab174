"""Reading, size-checking, downscaling and compositing the images of a dataset.

Images come back as float32 ``[H,W,3]`` or ``[H,W,4]`` arrays in [0,1] (sRGB values as stored;
8-bit and 16-bit PNG, JPEG and anything else Pillow reads). Many images are decoded in a
thread pool: Pillow and zlib release the GIL while decoding.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from render3d.data.png16 import png_bit_depth, read_png16
from render3d.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "is_image_file",
    "list_image_files",
    "photo_folder",
    "resolve_image_path",
    "relative_name",
    "image_size",
    "read_image",
    "downscaled_size",
    "downscale_image",
    "check_same_size",
    "load_images",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # what COLMAP's SfM reads too


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is a file with an image extension (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive), sorted by name."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def resolve_image_path(base: Path, reference: str, described_in: Path) -> Path:
    """The image file a dataset refers to, trying common extensions when it names none.

    ``reference`` is relative to ``base``; NeRF-synthetic files write ``./train/r_0`` without
    an extension. Raises DataError naming ``described_in`` when no file exists.
    """
    path = base / reference
    if path.is_file():
        return path
    for extension in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = path.with_name(path.name + extension)
        if candidate.is_file():
            return candidate
    raise DataError(f"{described_in}: image file {path} not found (also tried adding .png, .jpg, ...)")


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form, or the whole path when it lies outside ``root``."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as float32 in [0,1].

    Gray images become RGB; gray+alpha becomes RGBA; palette images are expanded.

    Returns:
        ``[H,W,3]`` or ``[H,W,4]`` (with alpha) float32 array in [0,1].

    Raises:
        DataError: naming the file when it is missing or cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        if png_bit_depth(path) == 16:
            pixels = read_png16(path).astype(np.float32) / 65535.0
        else:
            with Image.open(path) as image:
                if image.mode.startswith("I;16"):
                    return _gray_to_rgb(np.asarray(image, dtype=np.float32)[..., None] / 65535.0)
                if image.mode in ("I", "F") or image.mode.startswith(("I;", "F;")):
                    raise ValueError(f"{image.mode} (32-bit or float) images are not supported; save as 8- or 16-bit PNG")
                has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    return _gray_to_rgb(pixels)


def _gray_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """``[H,W,1|2|3|4]`` → ``[H,W,3|4]`` float32 (gray replicated, alpha kept)."""
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif pixels.shape[2] == 2:
        pixels = np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], axis=2)
    return np.ascontiguousarray(pixels, dtype=np.float32)


def downscaled_size(width: int, height: int, downscale: int) -> tuple[int, int]:
    """Image size after dividing by ``downscale``, rounded exactly as ``Cameras.scaled(1/downscale)``."""
    factor = 1.0 / downscale
    return max(1, round(width * factor)), max(1, round(height * factor))


def downscale_image(image: np.ndarray, downscale: int) -> np.ndarray:
    """Shrink ``[H,W,C]`` float32 by an integer factor with area averaging.

    The output size is :func:`downscaled_size`. When ``downscale`` divides the size, every
    output pixel is the mean of a ``downscale x downscale`` block; otherwise adaptive average
    pooling spreads the remainder over the blocks.
    """
    if downscale == 1:
        return image
    height, width = image.shape[:2]
    new_width, new_height = downscaled_size(width, height, downscale)
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    pooled = torch.nn.functional.adaptive_avg_pool2d(chw, (new_height, new_width))
    return pooled.permute(1, 2, 0).contiguous().numpy()


def check_same_size(paths: Sequence[Path]) -> tuple[int, int]:
    """``(width, height)`` shared by all ``paths``; DataError naming the first file that differs."""
    if not paths:
        raise DataError("no images to load")
    first = image_size(paths[0])
    for path in paths[1:]:
        size = image_size(path)
        if size != first:
            raise DataError(
                f"image {path} is {size[0]}x{size[1]} but {paths[0]} is {first[0]}x{first[1]}; "
                "all images of a dataset must have the same size"
            )
    return first


def load_images(
    paths: Sequence[Path],
    *,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    downscale: int = 1,
    transform: Callable[[int, np.ndarray], np.ndarray] | None = None,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load same-size images, optionally transform, downscale and composite alpha.

    Args:
        paths: image files; their sizes are checked first (DataError names the first misfit).
        background: RGB the alpha channel is composited over.
        downscale: integer area-averaging factor (see :func:`downscale_image`).
        transform: optional ``(index, [H,W,C] float32) -> [H,W,C] float32`` applied at full
            resolution before downscaling (used for lens undistortion).
        num_threads: decoding threads; defaults to ``min(8, cpu_count)``.

    Returns:
        ``rgb [N,H',W',3]`` float32 in [0,1] and ``alpha [N,H',W',1]`` float32, or None when no
        image has an alpha channel.
    """
    width, height = check_same_size(paths)
    out_width, out_height = downscaled_size(width, height, downscale)
    rgb = np.empty((len(paths), out_height, out_width, 3), dtype=np.float32)
    alpha = np.ones((len(paths), out_height, out_width, 1), dtype=np.float32)
    has_alpha = [False] * len(paths)
    background_rgb = np.asarray(background, dtype=np.float32)

    def load_one(index: int) -> None:
        image = read_image(paths[index])
        if transform is not None:
            image = transform(index, image)
        if image.shape[2] == 4:
            # Compositing is linear in (colour * alpha, alpha), so composite before averaging.
            opacity = image[..., 3:]
            composited = image[..., :3] * opacity + background_rgb * (1.0 - opacity)
            image = downscale_image(np.concatenate([composited, opacity], axis=2), downscale)
            has_alpha[index] = True
            alpha[index] = image[..., 3:]
        else:
            image = downscale_image(image, downscale)
        rgb[index] = image[..., :3]

    threads = num_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(load_one, i) for i in range(len(paths))]:
            future.result()
    return rgb, (alpha if any(has_alpha) else None)


def photo_folder(root: Path) -> Path | None:
    """The folder of photos in ``root``: ``root/images`` if it holds images, else ``root`` if it does."""
    for folder in (root / "images", root):
        if folder.is_dir() and list_image_files(folder):
            return folder
    return None
