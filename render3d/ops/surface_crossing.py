"""First surface crossing along rays, from packed samples of a scalar field.

Given a field sampled along rays (nerfacc's packed layout: ``ray_indices [S]`` sorted, then
per ray by increasing ``t``), find for each ray the first pair of consecutive samples
``(i, i+1)`` of that ray that goes from outside to inside the surface ``{f = level}``:

    values[i] <= level < values[i + 1]

**Inside means above the level**, as everywhere in render3d (``Method.density_field``,
``mesh_from_volume(inside="above")``): occupancy probabilities with level 0.5 or logits with
level 0 go in as they are; a signed distance (negative inside) goes in negated
(``values = -sdf``, ``level = 0``). A ray whose first sample is already inside has no
outside→inside crossing until it leaves and re-enters; a ray with fewer than two samples has
none.

The bracket is what the secant refinement (:func:`render3d.ops.surface_search.secant_refine`)
starts from; DVR and the SDF/occupancy renderers share it. This is a sampler: integer
indices and brackets with no gradient (``@torch.no_grad``); gradients with respect to the
surface point come from implicit differentiation
(:func:`render3d.ops.implicit_surface.implicit_surface_points`), not from this search.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton


class SurfaceCrossing(NamedTuple):
    """Per ray (``R = n_rays``); entries of rays without a crossing are ``-1`` / ``0``.

    Attributes:
        hit: ``[R]`` bool, whether an outside→inside crossing exists.
        index: ``[R]`` int64, packed index ``i`` of the crossing's outside sample (the inside
            one is ``i + 1``), ``-1`` without a crossing.
        t_near, t_far: ``[R]`` float32 ``t[i]``, ``t[i+1]`` (0 without a crossing).
        value_near, value_far: ``[R]`` float32 ``values[i] <= level < values[i+1]`` (0 without).
    """

    hit: torch.Tensor
    index: torch.Tensor
    t_near: torch.Tensor
    t_far: torch.Tensor
    value_near: torch.Tensor
    value_far: torch.Tensor


def _check(ray_indices, t, values, n_rays, level) -> None:
    where = "surface_crossing"
    if isinstance(n_rays, bool) or not isinstance(n_rays, int) or n_rays < 0:
        raise ConfigError(f"{where}: n_rays must be a non-negative int, got {n_rays!r}")
    if not isinstance(ray_indices, torch.Tensor) or ray_indices.dim() != 1 or ray_indices.dtype != torch.int64:
        raise ConfigError(f"{where}: ray_indices must be a 1-D int64 tensor")
    for name, value in (("t", t), ("values", values)):
        if not isinstance(value, torch.Tensor) or value.shape != ray_indices.shape or value.dtype != torch.float32:
            raise ConfigError(f"{where}: {name} must be a float32 [{ray_indices.shape[0]}] tensor like ray_indices")
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        raise ConfigError(f"{where}: level must be a number, got {level!r}")


def _gather_bracket(index: torch.Tensor, t: torch.Tensor, values: torch.Tensor) -> SurfaceCrossing:
    """Outputs of both implementations from the per-ray crossing index ``[R]`` (-1: none)."""
    hit = index >= 0
    near = index.clamp(min=0)
    far = near + hit.long()

    def take(source: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        if source.numel() == 0:
            return torch.zeros(index.shape, dtype=torch.float32, device=index.device)
        return torch.where(hit, source[where], torch.zeros((), dtype=source.dtype, device=source.device))

    return SurfaceCrossing(hit, index, take(t, near), take(t, far), take(values, near), take(values, far))


@torch.no_grad()
def surface_crossing_reference(ray_indices: torch.Tensor, t: torch.Tensor, values: torch.Tensor,
                               n_rays: int, level: float = 0.0) -> SurfaceCrossing:
    """The crossing search in PyTorch (CPU product path; any device): every consecutive
    pair of the same ray is tested at once, and each ray keeps its smallest crossing index.
    Same arguments and outputs as :func:`surface_crossing`."""
    device = ray_indices.device
    index = torch.full((n_rays,), -1, dtype=torch.int64, device=device)
    if ray_indices.numel() >= 2:
        same_ray = ray_indices[1:] == ray_indices[:-1]
        crossing = same_ray & (values[:-1] <= level) & (values[1:] > level)
        candidates = torch.nonzero(crossing).squeeze(1)
        if candidates.numel():
            rays = ray_indices[candidates]
            # Candidates are sorted, and so are their rays: a ray's first candidate starts its run.
            first = torch.ones_like(rays, dtype=torch.bool)
            first[1:] = rays[1:] != rays[:-1]
            index[rays[first]] = candidates[first]
    return _gather_bracket(index, t, values)


@torch.no_grad()
def surface_crossing(ray_indices: torch.Tensor, t: torch.Tensor, values: torch.Tensor,
                     n_rays: int, level: float = 0.0) -> SurfaceCrossing:
    """First outside→inside crossing of ``values = level`` per ray (module docstring).

    Runs the Triton kernel or :func:`surface_crossing_reference` by the rule of
    :func:`render3d.ops._backend.use_triton`. Not differentiable (a sampler).

    Args:
        ray_indices: ``[S]`` int64, sorted (nerfacc's packed layout).
        t: ``[S]`` float32 ray distances, increasing within each ray.
        values: ``[S]`` float32 field values (inside above ``level``; pass ``-sdf`` for SDFs).
        n_rays: number of rays ``R``.
        level: the iso-level.

    Returns:
        :class:`SurfaceCrossing` with ``[R]`` fields.

    Example:
        >>> ray_indices = torch.tensor([0, 0, 0, 1, 1])
        >>> t = torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0])
        >>> values = torch.tensor([-1.0, 0.5, 2.0, -1.0, -0.5])
        >>> surface_crossing(ray_indices, t, values, 2).index
        tensor([ 0, -1])
    """
    _check(ray_indices, t, values, n_rays, level)
    if use_triton(ray_indices, t, values):
        from render3d.kernels.surface_crossing import surface_crossing_triton

        return surface_crossing_triton(ray_indices, t, values, n_rays, float(level))
    return surface_crossing_reference(ray_indices, t, values, n_rays, float(level))
