"""The visual hull of posed object masks (DVR's start and its empty-space prior).

A point is carved away when it projects, in front of a camera and inside its image, onto a
pixel that the camera's mask marks empty, or when no camera sees it (the object is assumed to
be in view; what no view sees cannot be learnt). The object lies inside the hull of its true
masks, so the hull bounds where any surface can be.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.data.dataset import to_unit_float


@torch.no_grad()
def in_visual_hull(cameras: Cameras, masks: Tensor, points: Tensor, radius: float = 0.0) -> Tensor:
    """``[N]`` bool: whether world ``points [N,3]`` are seen by some camera and carved by none.

    With ``radius > 0`` the test is for balls of that radius around the points: a view carves a
    ball only when no object pixel lies within its projected radius (``radius * max(fx, fy) / depth``
    pixels, by the mask's distance transform), so a part thinner than the balls (a table leg,
    a wire) keeps the cells it crosses even where none of their centres falls on it.

    Args:
        cameras: ``C`` cameras of the masks, on ``points``' device.
        masks: ``[C,H,W,1]`` uint8/uint16 object masks (object above half), on that device.
        points: ``[N,3]`` world points.
        radius: world radius of the balls tested (0: the points themselves).
    """
    kept = torch.arange(points.shape[0], device=points.device)  # points no view has carved yet
    seen_once = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    height, width = masks.shape[1:3]
    for view in range(len(cameras)):
        pixels, depth = cameras[view : view + 1].project(points[kept])
        x, y = pixels[0].floor().long().unbind(-1)
        seen = (depth[0] > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
        empty = torch.zeros_like(seen)
        if radius > 0:
            reach = radius * float(cameras.K[view, :2, :2].diagonal().max()) / depth[0][seen]
            empty[seen] = _distance_to_object(masks[view, ..., 0])[y[seen], x[seen]] > reach
        else:
            empty[seen] = to_unit_float(masks[view, ..., 0])[y[seen], x[seen]] <= 0.5
        seen_once[kept[seen]] = True
        kept = kept[~empty]
    inside = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    inside[kept] = True
    return inside & seen_once


def _distance_to_object(mask: Tensor) -> Tensor:
    """``[H,W]`` distance in pixels from each pixel centre to the nearest object pixel's centre
    (0 on the object; ``inf`` for a mask without object), by scipy's Euclidean distance transform."""
    from scipy.ndimage import distance_transform_edt

    empty = (to_unit_float(mask) <= 0.5).cpu().numpy()
    if empty.all():
        return torch.full(mask.shape, float("inf"), device=mask.device)
    return torch.from_numpy(distance_transform_edt(empty)).float().to(mask.device)


def visual_hull(cameras: Cameras, masks: Tensor, aabb: Tensor, resolution: int) -> Tensor:
    """``[res,res,res]`` bool: cells of the box ``aabb [2,3]`` (cell ``(i,j,k)`` along x, y, z,
    as :class:`~render3d.ops.ray_marching.OccupancyGrid`) that reach into the visual hull: the
    ball around each cell (its half-diagonal) is tested, so no part of the object, however thin,
    loses the cells it crosses."""
    device = masks.device
    axis = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution
    unit = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    extent = (aabb[1] - aabb[0]).to(device)
    centres = aabb[0].to(device) + unit * extent
    half_diagonal = 0.5 * float((extent / resolution).norm())
    inside = in_visual_hull(cameras.to(device), masks, centres, radius=half_diagonal)
    return inside.view(resolution, resolution, resolution)
