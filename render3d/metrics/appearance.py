"""PSNR with the test image's appearance matched, for fits with per-image appearance.

A held-out photo has its own exposure and white balance, which no model of the scene can
predict. NeRF-W's protocol fits the appearance on the left half of each test image and scores
the right half; here the appearance is the affine colour transform the fits learn per training
image (:mod:`render3d.methods._appearance`), fitted in closed form by least squares.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.metrics._checks import check_image_pair
from render3d.metrics.psnr import psnr

__all__ = ["fit_affine_colour", "right_half_psnr"]

# Ridge weight (per pixel) pulling the fit towards the identity, so that a flat left half
# (a blank wall: a rank-deficient system) leaves the transform near [I | 0].
_RIDGE = 1e-4


def fit_affine_colour(source: Tensor, target: Tensor) -> Tensor:
    """The ``[3,4]`` transform ``[A | b]`` minimising ``|A @ source + b - target|^2`` over
    the colours ``source [P,3]`` and ``target [P,3]`` (float64 least squares, slightly
    regularised towards the identity)."""
    source, target = source.reshape(-1, 3).double(), target.reshape(-1, 3).double()
    design = torch.cat([source, torch.ones_like(source[:, :1])], dim=1)  # [P,4]
    identity = torch.eye(4, 3, dtype=torch.float64, device=source.device)  # maps [rgb, 1] to rgb
    ridge = _RIDGE * design.shape[0] * torch.eye(4, dtype=torch.float64, device=source.device)
    solution = torch.linalg.solve(design.T @ design + ridge, design.T @ target + ridge @ identity)  # [4,3]
    return solution.T.to(torch.float32)


def right_half_psnr(rendered: Tensor, target: Tensor) -> float:
    """PSNR of the right half of ``rendered [H,W,3]`` against ``target [H,W,3]`` after the
    affine colour transform fitted on their left halves (values clamped to [0, 1])."""
    check_image_pair(rendered, target)
    half = rendered.shape[1] // 2
    transform = fit_affine_colour(rendered[:, :half], target[:, :half])
    right = rendered[:, half:].float()
    matched = (right @ transform[:, :3].T + transform[:, 3]).clamp(0.0, 1.0)
    return float(psnr(matched, target[:, half:].float()))
