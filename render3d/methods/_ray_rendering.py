"""Rendering a method's rays camera by camera, in bounded chunks (shared by the surface methods)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from render3d.cameras import Cameras


def render_cameras(cameras: Cameras, render_rays: Callable[[Tensor, Tensor], dict[str, Tensor]],
                   chunk: int) -> dict[str, Tensor]:
    """Every pixel ray of ``cameras`` through ``render_rays``, at most ``chunk`` rays a call.

    Args:
        cameras: ``C`` cameras of size ``W x H``.
        render_rays: maps ``origins [R,3]``, unit ``dirs [R,3]`` to ``{key: [R, ...]}``.
        chunk: most rays per ``render_rays`` call (>= 1).

    Returns:
        ``{key: [C,H,W, ...]}`` for every key ``render_rays`` returns.
    """
    outputs: dict[str, list[Tensor]] = {}
    for index in range(len(cameras)):
        origins, dirs = cameras[index].generate_rays()
        parts = [render_rays(o, d) for o, d in zip(origins.reshape(-1, 3).split(chunk), dirs.reshape(-1, 3).split(chunk))]
        for key in parts[0]:
            values = torch.cat([part[key] for part in parts])
            outputs.setdefault(key, []).append(values.reshape(1, cameras.height, cameras.width, *values.shape[1:]))
    return {key: torch.cat(values) for key, values in outputs.items()}
