"""Saving float images as 8-bit PNG or JPEG files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from render3d.errors import ConfigError
from render3d.io.atomic import atomic_path

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
JPEG_QUALITY = 95


def to_uint8(image, argument_name: str = "image") -> np.ndarray:
    """Convert a float image with values in [0,1] to 8-bit.

    Values are clipped to [0,1], scaled by 255 and rounded to the nearest integer.

    Args:
        image: float ``torch.Tensor`` (any device, gradients ignored) or float
            ``numpy.ndarray`` of any shape, values in [0,1]; no NaN or infinity.
        argument_name: the name error messages use for ``image``.

    Returns:
        ``numpy.ndarray`` uint8 of the same shape, on the CPU.
    """
    array = to_numpy_array(image, argument_name)
    if not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(f"{argument_name}: expected float values in [0,1], got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ConfigError(f"{argument_name}: contains NaN or infinite values")
    return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(path: str | os.PathLike, image) -> Path:
    """Write ``image`` as an 8-bit PNG or JPEG chosen by the extension of ``path``, atomically.

    Args:
        path: destination ending in ``.png``, ``.jpg`` or ``.jpeg``; parent folders are created.
        image: float ``[H,W,3]`` (RGB) or ``[H,W,4]`` (RGBA, PNG only), ``torch.Tensor`` or
            ``numpy.ndarray``, values in [0,1] (clipped). Values are written as they are:
            the caller decides whether they are sRGB.

    Returns:
        ``Path(path)``.
    """
    from PIL import Image

    path = Path(path)
    image_format = IMAGE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise ConfigError(f"path: {path} must end in .png, .jpg or .jpeg")
    array = to_numpy_array(image, "image")
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ConfigError(f"image: expected shape [H,W,3] or [H,W,4], got {list(array.shape)}")
    pixels = to_uint8(array)
    if image_format == "JPEG" and pixels.shape[-1] == 4:
        raise ConfigError(f"image: JPEG cannot store an alpha channel; save {path.name} as .png")
    options = {"quality": JPEG_QUALITY} if image_format == "JPEG" else {}
    with atomic_path(path) as temporary:
        Image.fromarray(pixels).save(temporary, format=image_format, **options)
    return path


def to_numpy_array(image, argument_name: str) -> np.ndarray:
    """``image`` as a CPU ``numpy.ndarray`` of the same shape (no copy for arrays).

    Tensors are detached and moved to the CPU; float16/bfloat16 become float32. Anything
    other than a tensor or array raises ConfigError naming ``argument_name``.
    """
    if isinstance(image, np.ndarray):
        return image
    import torch

    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()
        return tensor.numpy()
    raise ConfigError(
        f"{argument_name}: expected a torch.Tensor or numpy.ndarray, got {type(image).__name__}"
    )
