"""The resolution a fit trains at: large images (phone photos, video frames) are shrunk by an
integer factor so that a fit's steps and its evaluation suit the time it has.

A 3DGS step renders whole training images, so its cost grows with their pixel count: a
1920x1080 frame has 52 times the pixels of the 200x200 scenes the CPU budgets were measured on.
Without a budget (a GPU, or fixed ``--steps``) the longer side is capped at
:data:`FULL_MAX_SIDE` px, nerfstudio's default. On a budget the cap keeps the pixels per second
of budget constant: :data:`REFERENCE_SIDE` px for :data:`REFERENCE_SECONDS` (the CPU
``balanced`` preset's 12 minutes), growing with the square root of the budget (``fast``'s 3.5
minutes: 259 px; an hour: 1073 px), never below :data:`MIN_SIDE` nor above ``FULL_MAX_SIDE``.

The factor is the smallest integer that brings the longer side to the cap (area averaging in
the loaders; cameras follow). Images already within the cap train at full size. The original
files stay where they are, so ``--downscale 1`` renders and evaluates at full size.
"""
from __future__ import annotations

import math

from render3d.errors import ConfigError

__all__ = ["FULL_MAX_SIDE", "MIN_SIDE", "REFERENCE_SECONDS", "REFERENCE_SIDE", "check_downscale",
           "max_training_side", "training_downscale"]

FULL_MAX_SIDE = 1600
REFERENCE_SIDE = 480
REFERENCE_SECONDS = 720.0
MIN_SIDE = 200


def max_training_side(budget_seconds: float | None) -> int:
    """The longest image side (px) a fit of ``budget_seconds`` trains at (None: no budget)."""
    if budget_seconds is None:
        return FULL_MAX_SIDE
    side = REFERENCE_SIDE * math.sqrt(max(float(budget_seconds), 0.0) / REFERENCE_SECONDS)
    return int(min(max(round(side), MIN_SIDE), FULL_MAX_SIDE))


def training_downscale(width: int, height: int, max_side: int) -> int:
    """The smallest integer factor that brings a ``width x height`` image's longer side to at
    most ``max_side`` pixels (1: the image already fits)."""
    return max(1, math.ceil(max(int(width), int(height)) / int(max_side)))


def check_downscale(downscale, name: str = "downscale") -> int | None:
    """``downscale`` as a positive int, or None (choose automatically); ConfigError naming ``name``."""
    if downscale is None:
        return None
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise ConfigError(f"{name} must be a positive integer (1 = full size) or None, got {downscale!r}")
    return downscale
