"""Rendering a method's rays camera by camera, in bounded chunks (shared by the surface methods)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from render3d.cameras import Cameras


def render_cameras(cameras: Cameras, render_rays: Callable[[Tensor, Tensor], dict[str, Tensor]],
                   chunk: int, samples_per_pixel: int = 1) -> dict[str, Tensor]:
    """Every pixel of ``cameras`` through ``render_rays``, at most ``chunk`` rays a call.

    With ``samples_per_pixel = n * n > 1`` each pixel is the mean of ``n x n`` rays at the
    centres of an ``n x n`` grid of sub-pixels (anti-aliasing: a surface method's hard
    silhouette becomes the fractional coverage a camera, or Blender, records at an edge).
    Every output is that mean: colour and alpha blend at silhouettes, and so do depth and normals.

    Args:
        cameras: ``C`` cameras of size ``W x H``.
        render_rays: maps ``origins [R,3]``, unit ``dirs [R,3]`` to ``{key: [R, ...]}``.
        chunk: most rays per ``render_rays`` call (>= 1).
        samples_per_pixel: 1 (the pixel centre) or a square number.

    Returns:
        ``{key: [C,H,W, ...]}`` for every key ``render_rays`` returns.
    """
    side = math.isqrt(samples_per_pixel)
    if samples_per_pixel < 1 or side * side != samples_per_pixel:
        raise ValueError(f"samples_per_pixel must be a square number >= 1, got {samples_per_pixel}")
    offsets = (torch.arange(side, dtype=torch.float32) + 0.5) / side - 0.5  # sub-pixel centres around 0
    outputs: dict[str, list[Tensor]] = {}
    for index in range(len(cameras)):
        camera = cameras[index]
        centres = camera.pixel_grid().reshape(-1, 2)
        sums: dict[str, Tensor] = {}
        for dy in offsets.tolist():
            for dx in offsets.tolist():
                pixels = centres + centres.new_tensor([dx, dy])
                origins, dirs = camera.pixel_rays(torch.zeros(pixels.shape[0], dtype=torch.long,
                                                              device=pixels.device), pixels)
                parts = [render_rays(o, d) for o, d in zip(origins.split(chunk), dirs.split(chunk))]
                for key in parts[0]:
                    values = torch.cat([part[key] for part in parts]).float()
                    sums[key] = values if key not in sums else sums[key] + values
        for key, total in sums.items():
            mean = total / samples_per_pixel
            outputs.setdefault(key, []).append(mean.reshape(1, camera.height, camera.width, *mean.shape[1:]))
    return {key: torch.cat(values) for key, values in outputs.items()}
