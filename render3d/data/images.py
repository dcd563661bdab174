"""Reading, size-checking and downscaling the images of a dataset.

A dataset's images are kept as integers, as stored (sRGB; 8-bit PNG, JPEG and anything else
Pillow reads as uint8, 16-bit PNG and gray TIFF as uint16), with the colour premultiplied by
alpha; :class:`render3d.data.dataset.Dataset` converts batches to float and composites them.
Images are decoded one per worker of a thread pool (Pillow, zlib and imagecodecs release the
GIL), so that loading holds the integer arrays and a few images in float at most.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from render3d.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "is_image_file",
    "list_image_files",
    "photo_folder",
    "find_image_path",
    "resolve_image_path",
    "relative_name",
    "image_size",
    "image_has_alpha",
    "is_deep_image",
    "decode_image",
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


def find_image_path(base: Path, reference: str) -> Path | None:
    """The image file a dataset refers to, trying common extensions when it names none, or
    None when there is no such file. ``reference`` is relative to ``base``; NeRF-synthetic
    files write ``./train/r_0`` without an extension."""
    path = base / reference
    if path.is_file():
        return path
    for extension in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = path.with_name(path.name + extension)
        if candidate.is_file():
            return candidate
    return None


def resolve_image_path(base: Path, reference: str, described_in: Path) -> Path:
    """:func:`find_image_path`, or a DataError naming ``described_in`` when no file exists."""
    found = find_image_path(base, reference)
    if found is None:
        raise DataError(f"{described_in}: image file {base / reference} not found (also tried adding .png, .jpg, ...)")
    return found


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


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG file's header, or None when ``path`` is not a PNG file."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or not head.startswith(b"\x89PNG\r\n\x1a\n") or head[12:16] != b"IHDR":
        return None
    return head[24]


def _read_png16(path: Path) -> np.ndarray:
    """``[H,W,C]`` uint16 (C = 1..4) of a 16-bit PNG, which Pillow reduces to 8 bits, decoded by imagecodecs."""
    try:
        import imagecodecs
    except ImportError:
        raise DataError(f"cannot read image {path}: 16-bit PNG needs the imagecodecs package "
                        "(pip install 'render3d[png16]' or pip install imagecodecs)") from None
    try:
        pixels = imagecodecs.png_decode(path.read_bytes())
    except (imagecodecs.PngError, RuntimeError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    return pixels[..., None] if pixels.ndim == 2 else pixels


def is_deep_image(path: Path) -> bool:
    """Whether ``path`` holds 16 bits per channel (16-bit PNG, 16-bit gray TIFF), from its header."""
    from PIL import Image, UnidentifiedImageError

    if _png_bit_depth(path) == 16:
        return True
    try:
        with Image.open(path) as image:
            return image.mode.startswith("I;16")
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None


def image_has_alpha(path: Path) -> bool:
    """Whether the image file ``path`` has an alpha channel (or a transparent colour), from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to its stored integer values.

    Gray images become RGB; gray+alpha becomes RGBA; palette images are expanded. 16-bit PNG
    is decoded by imagecodecs (an optional dependency; Pillow would drop the low byte), 16-bit
    gray TIFF by Pillow; 32-bit and float images are refused.

    Returns:
        ``[H,W,3]`` or ``[H,W,4]`` (with alpha) uint8, or uint16 for 16-bit sources.

    Raises:
        DataError: naming the file when it is missing or cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    if _png_bit_depth(path) == 16:
        return _gray_to_rgb(_read_png16(path))
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16"):
                return _gray_to_rgb(np.asarray(image).astype(np.uint16)[..., None])
            if image.mode in ("I", "F") or image.mode.startswith(("I;", "F;")):
                raise ValueError(f"{image.mode} (32-bit or float) images are not supported; save as 8- or 16-bit PNG")
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    return _gray_to_rgb(pixels)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as float32 in [0,1] (:func:`decode_image` divided by 255 or 65535).

    Returns:
        ``[H,W,3]`` or ``[H,W,4]`` (with alpha) float32 array in [0,1].

    Raises:
        DataError: naming the file when it is missing or cannot be decoded.
    """
    pixels = decode_image(path)
    return pixels.astype(np.float32) / np.float32(np.iinfo(pixels.dtype).max)


def _gray_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """``[H,W,1|2|3|4]`` → ``[H,W,3|4]`` (gray replicated, alpha kept), dtype unchanged."""
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif pixels.shape[2] == 2:
        pixels = np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], axis=2)
    return np.ascontiguousarray(pixels)


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
    downscale: int = 1,
    transform: Callable[[int, np.ndarray], np.ndarray] | None = None,
    gray: bool = False,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load same-size images as integers, colour premultiplied by alpha; optionally transform and downscale.

    Args:
        paths: image files; their sizes are checked first (DataError names the first misfit).
        downscale: integer area-averaging factor (see :func:`downscale_image`).
        transform: optional ``(index, [H,W,C] float32) -> [H,W,C] float32`` applied to the
            premultiplied image in [0,1] at full resolution before downscaling (lens undistortion).
        gray: return the mean of the premultiplied colour channels ``[N,H',W',1]`` (how masks
            are read) and no alpha.
        num_threads: decoding threads; defaults to ``min(8, cpu_count)``.

    Returns:
        ``colour [N,H',W',3]`` (``[N,H',W',1]`` when ``gray``) premultiplied by alpha, and
        ``alpha [N,H',W',1]`` or None when no image has an alpha channel: uint8, or uint16 when
        any image is 16-bit. Values that went through float (alpha, transform, downscale, gray)
        are rounded to the nearest integer.
    """
    width, height = check_same_size(paths)
    out_width, out_height = downscaled_size(width, height, downscale)
    dtype = np.uint16 if any(is_deep_image(path) for path in paths) else np.uint8
    top = np.iinfo(dtype).max
    colour = np.empty((len(paths), out_height, out_width, 1 if gray else 3), dtype=dtype)
    alphas: list[np.ndarray | None] = [None]  # allocated when the first image with alpha is seen
    alpha_lock = threading.Lock()

    def alpha_array() -> np.ndarray:
        with alpha_lock:
            if alphas[0] is None:
                alphas[0] = np.full((len(paths), out_height, out_width, 1), top, dtype=dtype)
            return alphas[0]

    def load_one(index: int) -> None:
        pixels = decode_image(paths[index])
        if dtype == np.uint16 and pixels.dtype == np.uint8:
            pixels = pixels.astype(np.uint16) * 257  # v/255 == 257 v/65535 exactly
        has_alpha = pixels.shape[2] == 4
        if transform is None and downscale == 1 and not gray:
            if has_alpha:  # premultiply in integers, rounded: (c a + top/2) // top
                wide = pixels.astype(np.uint32 if dtype == np.uint16 else np.uint16)
                colour[index] = (wide[..., :3] * wide[..., 3:] + top // 2) // top
                alpha_array()[index] = pixels[..., 3:]
            else:
                colour[index] = pixels
            return
        image = pixels.astype(np.float32) / np.float32(top)
        if has_alpha:
            # Compositing is linear in (colour * alpha, alpha): premultiply before resampling.
            image[..., :3] *= image[..., 3:]
        if transform is not None:
            image = transform(index, image)
        image = downscale_image(image, downscale)
        if gray:
            image = image[..., :3].mean(axis=2, keepdims=True)
        colour[index] = _quantize(image[..., : colour.shape[3]], top)
        if has_alpha and not gray:
            alpha_array()[index] = _quantize(image[..., 3:], top)

    threads = num_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(load_one, i) for i in range(len(paths))]:
            future.result()
    return colour, alphas[0]


def _quantize(values: np.ndarray, top: int) -> np.ndarray:
    """Float32 in [0,1] → integers in [0, top], rounded to nearest."""
    return np.rint(np.clip(values, 0.0, 1.0) * np.float32(top))


def photo_folder(root: Path) -> Path | None:
    """The folder of photos in ``root``: ``root/images`` if it holds images, else ``root`` if it does."""
    for folder in (root / "images", root):
        if folder.is_dir() and list_image_files(folder):
            return folder
    return None
