"""Argument checks shared by the image metrics."""
from __future__ import annotations

import torch

from render3d.errors import ConfigError


def check_image_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ConfigError unless ``pred`` and ``target`` are matching float ``[...,H,W,3]`` tensors."""
    for name, image in (("pred", pred), ("target", target)):
        if not isinstance(image, torch.Tensor):
            raise ConfigError(f"{name}: expected a torch.Tensor, got {type(image).__name__}")
        if image.ndim < 3 or image.shape[-1] != 3:
            raise ConfigError(f"{name}: expected shape [...,H,W,3], got {list(image.shape)}")
        if not image.is_floating_point():
            raise ConfigError(f"{name}: expected a float tensor in [0,1], got dtype {image.dtype}")
    if pred.shape != target.shape:
        raise ConfigError(
            f"pred and target: shapes differ, {list(pred.shape)} vs {list(target.shape)}"
        )
