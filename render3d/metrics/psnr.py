"""Peak signal-to-noise ratio for images with values in [0,1]."""
from __future__ import annotations

import torch

from render3d.errors import ConfigError
from render3d.metrics._checks import check_image_pair


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB for a data range of 1, one value per image.

    ``PSNR = -10 log10(MSE)`` with the mean squared error taken over every pixel and
    channel of one image (over the masked pixels only when ``mask`` is given). Identical
    images give ``+inf``. Differentiable with respect to ``pred`` and ``target``.

    Args:
        pred: float ``[...,H,W,3]``, values in [0,1].
        target: float ``[...,H,W,3]``, same shape as ``pred``.
        mask: optional bool or float ``[...,H,W]`` or ``[...,H,W,1]`` (broadcastable
            over the leading dimensions); a float mask weights each pixel. Every image
            must have a non-zero mask sum.

    Returns:
        float ``[...]`` (a 0-d tensor for a single ``[H,W,3]`` image), in the dtype of ``pred``.

    Example:
        >>> psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.1))
        tensor(20.)
    """
    check_image_pair(pred, target)
    squared_error = (pred - target).square()
    if mask is None:
        mse = squared_error.mean(dim=(-3, -2, -1))
    else:
        weights = _mask_weights(mask, pred)
        weight_sum = weights.sum(dim=(-3, -2, -1)) * pred.shape[-1]
        if bool((weight_sum <= 0).any()):
            raise ConfigError("mask: selects no pixel in at least one image")
        mse = (squared_error * weights).sum(dim=(-3, -2, -1)) / weight_sum
    return -10.0 * torch.log10(mse)


def _mask_weights(mask: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Turn ``mask`` into float weights ``[...,H,W,1]`` broadcastable against ``pred``."""
    if not isinstance(mask, torch.Tensor):
        raise ConfigError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
    height, width = pred.shape[-3], pred.shape[-2]
    if mask.ndim >= 3 and mask.shape[-1] == 1 and mask.shape[-3:-1] == (height, width):
        weights = mask
    elif mask.ndim >= 2 and mask.shape[-2:] == (height, width):
        weights = mask.unsqueeze(-1)
    else:
        raise ConfigError(
            f"mask: expected shape [...,{height},{width}] or [...,{height},{width},1], "
            f"got {list(mask.shape)}"
        )
    try:
        torch.broadcast_shapes(weights.shape, pred.shape)
    except RuntimeError:
        raise ConfigError(
            f"mask: shape {list(mask.shape)} does not broadcast against images {list(pred.shape)}"
        ) from None
    return weights.to(pred.dtype)
