"""Where a capture's cameras look: the box around their common focus, which holds the object a
handheld capture walks around and leaves out the room or street behind it (the default region
of a capture's mesh).

The focus is the point nearest to every camera's optical axis in the least-squares sense:
with unit viewing directions ``d_i`` and centres ``c_i``, it solves
``sum_i (I - d_i d_i^T) p = sum_i (I - d_i d_i^T) c_i``. Its box is a cube whose half-size is
what the narrowest half field of view spans at the median focus distance: the part of the
world every frame is centred on. Cameras that all look the same way (a forward-facing capture)
or away from each other have no common focus.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.cameras import Cameras

__all__ = ["focus_box"]

# The axes must cross: the normal matrix's smallest eigenvalue over its largest (0 for parallel axes).
MIN_AXIS_SPREAD = 0.05
# ... in front of this fraction of the cameras.
MIN_FACING = 0.8


def focus_box(cameras: Cameras) -> Tensor | None:
    """``[2, 3]`` box (min corner, max corner) around the common focus of ``cameras`` (at least
    two), or None when their optical axes do not converge in front of them (module doc)."""
    if len(cameras) < 2:
        return None
    c2w = cameras.c2w.detach().double().cpu()
    centres, directions = c2w[:, :3, 3], torch.nn.functional.normalize(c2w[:, :3, 2], dim=-1)  # OpenCV: +z looks
    projectors = torch.eye(3, dtype=torch.float64) - directions[:, :, None] * directions[:, None, :]
    normal = projectors.sum(0)
    eigenvalues = torch.linalg.eigvalsh(normal)
    if eigenvalues[0] < MIN_AXIS_SPREAD * eigenvalues[-1]:
        return None
    focus = torch.linalg.solve(normal, (projectors @ centres[:, :, None]).sum(0)).squeeze(-1)
    depth = ((focus - centres) * directions).sum(-1)
    if float((depth > 0).double().mean()) < MIN_FACING:
        return None
    half_fov = torch.minimum(cameras.fov_x, cameras.fov_y).detach().double().cpu() / 2
    half_size = float(depth.clamp(min=0).median() * torch.tan(half_fov.min()))
    return torch.stack([focus - half_size, focus + half_size]).float()
