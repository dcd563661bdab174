"""A splat file (a standard 3DGS PLY or a ``KHR_gaussian_splatting`` glTF binary) as a
ready-to-render ``3dgs`` method (what :meth:`render3d.Scene.load` builds from a ``.ply`` or ``.glb``
file): the file's Gaussians and SH degree, and for what the file does not
say, splat viewers' conventions (near 0.01, far 1e4, 800x800 images, black background) and a box
around the Gaussians that stray far-away ones do not blow up."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from render3d.errors import ConfigError, DataError
from render3d.methods.base import Method, SceneInfo

NEAR = 0.01
FAR = 1.0e4
IMAGE_SIZE = 800
BACKGROUND = (0.0, 0.0, 0.0)
SUFFIXES = (".ply", ".glb")


def is_splat_file(path) -> bool:
    """Whether ``path`` names a splat file (``.ply`` or ``.glb``, not a folder) rather than a run."""
    path = Path(path)
    return path.suffix.lower() in SUFFIXES and not path.is_dir()


def load_splat_method(path: Path, background=None) -> Method:
    """The ``3dgs`` method holding the Gaussians of the splat file ``path`` (``.ply``, or
    ``.glb`` read with +z up as :func:`render3d.io.splat_gltf.load_splat_glb` says), rendered
    over ``background`` (RGB in [0, 1]; default black), on the CPU.

    Raises:
        ConfigError: a bad ``background``; DataError: a malformed or empty file (naming it).
    """
    from render3d.io.splat_gltf import load_splat_glb
    from render3d.io.splat_ply import load_splat_ply
    from render3d.methods import get_method

    background = _checked_background(background)
    values = load_splat_glb(path) if Path(path).suffix.lower() == ".glb" else load_splat_ply(path)
    means = values["means"]
    if means.shape[0] == 0:
        raise DataError(f"{path}: the splat file has no Gaussians")
    degree = math.isqrt(values["sh"].shape[1]) - 1
    info = SceneInfo(aabb=splat_bounds(means), near=NEAR, far=FAR, background=background, width=IMAGE_SIZE,
                     height=IMAGE_SIZE)
    method_cls = get_method("3dgs")
    method = method_cls(method_cls.make_config({"sh_degree": degree}, steps=0), info)
    method.load_gaussians(values)
    return method


def splat_bounds(means: torch.Tensor, quantile: float = 0.005, pad: float = 0.1) -> tuple[tuple, tuple]:
    """A robust box around Gaussian centres ``means [N,3]`` (N >= 1): the per-axis
    ``quantile`` / ``1 - quantile`` quantiles, each side padded by ``pad`` of the extent
    (at least 1e-3), so that stray far-away Gaussians do not blow up the scene bounds.

    Returns:
        ``((xmin, ymin, zmin), (xmax, ymax, zmax))``.
    """
    import numpy as np

    points = means.detach().double().cpu().numpy()
    lo = np.quantile(points, quantile, axis=0)
    hi = np.quantile(points, 1.0 - quantile, axis=0)
    margin = np.maximum(pad * (hi - lo), 1e-3)
    return tuple(float(v) for v in lo - margin), tuple(float(v) for v in hi + margin)


def _checked_background(background) -> tuple[float, float, float]:
    if background is None:
        return BACKGROUND
    try:
        values = tuple(float(c) for c in background)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(0.0 <= c <= 1.0 for c in values):
        raise ConfigError(f"background must be 3 numbers (r, g, b) in [0, 1], got {background!r}")
    return values
