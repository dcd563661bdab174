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
def in_visual_hull(cameras: Cameras, masks: Tensor, points: Tensor) -> Tensor:
    """``[N]`` bool: whether world ``points [N,3]`` are seen by some camera and carved by none.

    Args:
        cameras: ``C`` cameras of the masks, on ``points``' device.
        masks: ``[C,H,W,1]`` uint8/uint16 object masks (object above half), on that device.
        points: ``[N,3]`` world points.
    """
    kept = torch.arange(points.shape[0], device=points.device)  # points no view has carved yet
    seen_once = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    height, width = masks.shape[1:3]
    for view in range(len(cameras)):
        pixels, depth = cameras[view : view + 1].project(points[kept])
        x, y = pixels[0].floor().long().unbind(-1)
        seen = (depth[0] > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
        empty = torch.zeros_like(seen)
        empty[seen] = to_unit_float(masks[view, ..., 0])[y[seen], x[seen]] <= 0.5
        seen_once[kept[seen]] = True
        kept = kept[~empty]
    inside = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    inside[kept] = True
    return inside & seen_once


def visual_hull(cameras: Cameras, masks: Tensor, aabb: Tensor, resolution: int) -> Tensor:
    """``[res,res,res]`` bool: cells of the box ``aabb [2,3]`` (cell ``(i,j,k)`` along x, y, z,
    as :class:`~render3d.ops.ray_marching.OccupancyGrid`) whose centre is in the visual hull."""
    device = masks.device
    axis = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution
    unit = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    centres = aabb[0].to(device) + unit * (aabb[1] - aabb[0]).to(device)
    inside = in_visual_hull(cameras.to(device), masks, centres)
    return inside.view(resolution, resolution, resolution)
