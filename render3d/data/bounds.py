"""Scene bounds (axis-aligned box, near and far ray distances) for the loaders.

Three rules, chosen per format (``docs/design.md`` names them too):

- :func:`bounds_in_box`: a known box (NeRF-synthetic's conventional ``[-1.5,1.5]^3``); near
  and far are the closest and farthest distances from any camera centre to that box, so every
  ray segment that can meet the box lies within ``[near, far]``.
- :func:`bounds_from_points`: structure-from-motion points; the box spans the 1st to 99th
  percentile of the points per axis, padded by 5% of its size on each side; near and far are
  0.8x the 1st and 1.2x the 99th percentile of the depths of points seen in front of the cameras.
- :func:`bounds_from_cameras`: only camera centres known; a cube centred on their mean whose
  half-size is their largest distance from that mean (times ``scale``), with near/far as in
  :func:`bounds_in_box`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.cameras import Cameras

__all__ = ["bounds_in_box", "bounds_from_points", "bounds_from_cameras"]

_MAX_DEPTH_POINTS = 20000
_MIN_NEAR_FRACTION = 0.01  # near never drops below this fraction of the box diagonal


def bounds_in_box(centers: Tensor, aabb: Tensor) -> tuple[Tensor, float, float]:
    """Near/far from camera centres ``[C,3]`` to a box ``aabb [2,3]``; returns ``(aabb, near, far)``.

    ``near`` is the smallest distance from a centre to the box (a small positive floor when a
    camera sits inside it); ``far`` is the largest distance from a centre to a box corner.
    """
    aabb = aabb.to(torch.float32)
    centers = centers.to(torch.float32)
    outside = (aabb[0] - centers).clamp(min=0) + (centers - aabb[1]).clamp(min=0)
    farthest_corner = torch.maximum((centers - aabb[0]).abs(), (centers - aabb[1]).abs())
    diagonal = float((aabb[1] - aabb[0]).norm())
    near = max(float(outside.norm(dim=-1).min()), _MIN_NEAR_FRACTION * diagonal)
    far = float(farthest_corner.norm(dim=-1).max())
    return aabb, near, far


def bounds_from_points(points: Tensor, cameras: Cameras) -> tuple[Tensor, float, float]:
    """Robust bounds from SfM ``points [P,3]`` seen by ``cameras``; returns ``(aabb [2,3], near, far)``.

    Falls back to :func:`bounds_from_cameras` when there are fewer than 8 points or none lies
    in front of a camera inside its image.
    """
    points = points.to(torch.float32)
    if points.shape[0] < 8:
        return bounds_from_cameras(cameras.centers)
    low = torch.quantile(points, 0.01, dim=0)
    high = torch.quantile(points, 0.99, dim=0)
    pad = 0.05 * (high - low).clamp(min=1e-6)
    aabb = torch.stack([low - pad, high + pad])

    stride = max(1, points.shape[0] // _MAX_DEPTH_POINTS)
    pixels, depths = cameras.project(points[::stride])
    visible = (
        (depths > 0)
        & (pixels[..., 0] >= 0)
        & (pixels[..., 0] <= cameras.width)
        & (pixels[..., 1] >= 0)
        & (pixels[..., 1] <= cameras.height)
    )
    seen = depths[visible]
    if seen.numel() < 8:
        return bounds_from_cameras(cameras.centers)
    near = 0.8 * float(torch.quantile(seen, 0.01))
    far = 1.2 * float(torch.quantile(seen, 0.99))
    return aabb, near, far


def bounds_from_cameras(centers: Tensor, scale: float = 1.0) -> tuple[Tensor, float, float]:
    """Bounds from camera centres ``[C,3]`` alone; returns ``(aabb [2,3], near, far)``.

    The cube is centred on the mean centre with half-size ``scale`` times the largest
    centre-to-mean distance (1.0 for a single camera).
    """
    centers = centers.to(torch.float32)
    middle = centers.mean(dim=0)
    radius = float((centers - middle).norm(dim=-1).max())
    half = scale * (radius if radius > 0 else 1.0)
    aabb = torch.stack([middle - half, middle + half])
    return bounds_in_box(centers, aabb)
