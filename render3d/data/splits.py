"""Train/val/test split selection shared by the loaders."""
from __future__ import annotations

import numpy as np

from render3d.errors import ConfigError, DataError

__all__ = ["SPLITS", "check_split", "check_loader_options", "every_nth_split", "limit_count"]

SPLITS = ("train", "val", "test", "all")


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`; ConfigError naming ``split`` otherwise."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return split


def check_loader_options(background, downscale, max_images, test_every) -> tuple[float, float, float]:
    """Validate the common ``load_dataset`` options; returns ``background`` as a float triple."""
    try:
        rgb = tuple(float(c) for c in background)
    except (TypeError, ValueError):
        raise ConfigError(f"background must be three numbers in [0,1]; got {background!r}") from None
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise ConfigError(f"background must be three numbers in [0,1]; got {background!r}")
    if not isinstance(downscale, (int, np.integer)) or isinstance(downscale, bool) or downscale < 1:
        raise ConfigError(f"downscale must be a positive integer; got {downscale!r}")
    if max_images is not None and (not isinstance(max_images, (int, np.integer)) or max_images < 1):
        raise ConfigError(f"max_images must be None or a positive integer; got {max_images!r}")
    if not isinstance(test_every, (int, np.integer)) or isinstance(test_every, bool) or test_every < 2:
        raise ConfigError(f"test_every must be an integer >= 2; got {test_every!r}")
    return rgb  # type: ignore[return-value]


def every_nth_split(count: int, split: str, test_every: int) -> list[int]:
    """Indices of ``split`` among ``count`` items in a fixed order.

    Every ``test_every``-th item (indices 0, n, 2n, ...) is test, the others train; ``val`` is
    the same as ``test`` and ``all`` is everything (the 3DGS / Mip-NeRF 360 convention).
    """
    indices = range(count)
    if split == "all":
        return list(indices)
    if split == "train":
        return [i for i in indices if i % test_every != 0]
    return [i for i in indices if i % test_every == 0]


def limit_count(indices: list[int], max_images: int | None, dataset: object, split: str) -> list[int]:
    """At most ``max_images`` of ``indices``, evenly spaced; DataError when ``indices`` is empty."""
    if not indices:
        raise DataError(f"{dataset}: split '{split}' has no images")
    if max_images is None or max_images >= len(indices):
        return list(indices)
    picks = np.linspace(0, len(indices) - 1, max_images).round().astype(int)
    return [indices[i] for i in picks]
