"""Silhouette agreement: intersection over union of a rendered opacity and an object mask."""
from __future__ import annotations

import torch

from render3d.errors import ConfigError

THRESHOLD = 0.5


def mask_iou(alpha: torch.Tensor, mask: torch.Tensor) -> float:
    """IoU of ``alpha [H, W]`` (rendered opacity) and ``mask [H, W]`` (the object's, in [0, 1]),
    each thresholded at one half; 1 when both are empty."""
    if alpha.shape != mask.shape or alpha.dim() != 2:
        raise ConfigError(f"mask_iou: alpha and mask must both be [H, W], got {tuple(alpha.shape)} and {tuple(mask.shape)}")
    rendered, target = alpha > THRESHOLD, mask > THRESHOLD
    union = int((rendered | target).sum())
    return int((rendered & target).sum()) / union if union else 1.0
