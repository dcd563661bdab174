"""Finding where rays first meet an implicit surface: uniform march + first crossing +
secant refinement for any field, and sphere tracing for signed distances.

Shared by the ``occupancy``/``sdf`` renderers and DVR. Every function here is a search
without gradient (``torch.no_grad``): differentiable surface points come from
:func:`render3d.ops.implicit_surface.implicit_surface_points`, given the points found here.

Conventions: ``field(points [N,3]) -> [N]`` with **inside above** ``level`` (occupancy
probabilities or logits as they are, signed distances negated); :func:`sphere_trace` takes
the signed distance itself (negative inside). Ray directions ``rays_d`` may have any length;
``t`` is in units of it (unit directions give distances).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from render3d.errors import ConfigError
from render3d.ops.surface_crossing import surface_crossing

Field = Callable[[Tensor], Tensor]
DEFAULT_CHUNK = 2**16


class SurfaceHit(NamedTuple):
    """Per ray: ``hit [R]`` bool, ``t [R]`` distance to the surface (``far`` where missed) and
    ``points [R,3]`` (``rays_o + t * rays_d``; meaningless where missed)."""

    hit: Tensor
    t: Tensor
    points: Tensor


def evaluate_chunked(field: Field, points: Tensor, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """``field`` on ``points [N,3]`` in pieces of ``chunk`` points (bounded memory) -> ``[N]``."""
    if points.shape[0] <= chunk:
        return field(points)
    return torch.cat([field(part) for part in points.split(chunk)])


def _per_ray(value, count: int, like: Tensor, name: str) -> Tensor:
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if tensor.dim() == 0:
        return tensor.expand(count)
    if tensor.shape != (count,):
        raise ConfigError(f"{name} must be a number or a [{count}] tensor, got shape {tuple(tensor.shape)}")
    return tensor


def _check_rays(rays_o: Tensor, rays_d: Tensor, where: str) -> None:
    if rays_o.dim() != 2 or rays_o.shape[1] != 3 or rays_d.shape != rays_o.shape:
        raise ConfigError(f"{where}: rays_o and rays_d must both have shape [R, 3], "
                          f"got {tuple(rays_o.shape)} and {tuple(rays_d.shape)}")


@torch.no_grad()
def secant_refine(field: Field, rays_o: Tensor, rays_d: Tensor, t_near: Tensor, t_far: Tensor,
                  value_near: Tensor, value_far: Tensor, level: float = 0.0, n_iterations: int = 8) -> Tensor:
    """Refine brackets ``value_near <= level < value_far`` to the crossing ``f = level``.

    Each iteration places the secant root of the bracket, evaluates the field there and keeps
    the half that still brackets the level (DVR's secant step, i.e. regula falsi: the root
    stays bracketed, so a bad step can never leave it), with the Illinois modification: when
    the same end is kept twice in a row its value is halved, which restores superlinear
    convergence on curved brackets (rays grazing a surface).

    Args:
        field: ``[N,3] -> [N]``, inside above ``level``.
        rays_o, rays_d: ``[R,3]``.
        t_near, t_far: ``[R]`` bracket ends; value_near, value_far: ``[R]`` field values there.
        n_iterations: field evaluations per ray (8 by default, as DVR).

    Returns:
        ``[R]`` ray distances of the refined crossings, in ``t_near``'s dtype.
    """
    _check_rays(rays_o, rays_d, "secant_refine")
    t0, t1 = t_near.clone(), t_far.clone()
    f0, f1 = value_near - level, value_far - level
    last_inside = torch.zeros_like(t0, dtype=torch.int8)  # +1: the last step moved t1, -1: t0, 0: neither yet

    def root() -> Tensor:
        denominator = f1 - f0
        # f0 <= 0 < f1, so the denominator is positive; the clamp only guards f0 == f1 == 0.
        fraction = (-f0 / denominator.clamp(min=torch.finfo(denominator.dtype).tiny)).clamp(0.0, 1.0)
        return t0 + fraction * (t1 - t0)

    for _ in range(n_iterations):
        t_mid = root()
        f_mid = field(rays_o + t_mid[:, None] * rays_d) - level
        inside = f_mid > 0
        side = torch.where(inside, 1, -1).to(torch.int8)
        repeated = side == last_inside
        f0 = torch.where(repeated & inside, f0 * 0.5, f0)  # t0 kept twice: halve its value
        f1 = torch.where(repeated & ~inside, f1 * 0.5, f1)
        t1, f1 = torch.where(inside, t_mid, t1), torch.where(inside, f_mid, f1)
        t0, f0 = torch.where(inside, t0, t_mid), torch.where(inside, f0, f_mid)
        last_inside = side
    return root()


@torch.no_grad()
def find_surface(field: Field, rays_o: Tensor, rays_d: Tensor, near, far, n_steps: int = 128, level: float = 0.0,
                 *, n_secant: int = 8, chunk: int = DEFAULT_CHUNK) -> SurfaceHit:
    """First outside→inside crossing of ``field = level`` along each ray.

    ``n_steps`` uniform samples from ``near`` to ``far`` (both included) per ray, the first
    crossing bracket (:func:`~render3d.ops.surface_crossing.surface_crossing`, the Triton
    kernel on CUDA), then :func:`secant_refine`. A surface thinner than the step between
    samples can be missed; a ray that starts inside finds the next entry, if any.

    Args:
        field: ``[N,3] -> [N]``, inside above ``level``.
        rays_o, rays_d: ``[R,3]``.
        near, far: numbers or ``[R]`` tensors; rays with ``far <= near`` miss.
        n_steps: samples per ray (>= 2).
        n_secant: secant iterations on the bracket.
        chunk: points per field evaluation.

    Returns:
        :class:`SurfaceHit`.
    """
    _check_rays(rays_o, rays_d, "find_surface")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise ConfigError(f"find_surface: n_steps must be an integer >= 2, got {n_steps!r}")
    n_rays = rays_o.shape[0]
    near = _per_ray(near, n_rays, rays_o, "near")
    far = _per_ray(far, n_rays, rays_o, "far")
    valid = far > near
    fractions = torch.linspace(0.0, 1.0, n_steps, dtype=rays_o.dtype, device=rays_o.device)
    rays = torch.nonzero(valid).squeeze(1)
    t = near[rays, None] + (far - near)[rays, None] * fractions  # [V, n_steps]
    points = rays_o[rays, None, :] + t[..., None] * rays_d[rays, None, :]
    values = evaluate_chunked(field, points.reshape(-1, 3), chunk).reshape(t.shape)
    ray_indices = torch.arange(rays.shape[0], device=rays_o.device).repeat_interleave(n_steps)
    crossing = surface_crossing(ray_indices, t.reshape(-1).float(), values.reshape(-1).float(), rays.shape[0], float(level))
    hit_rays = rays[crossing.hit]
    found = crossing.hit

    def bracket(tensor: Tensor) -> Tensor:
        return tensor[found].to(rays_o.dtype)

    t_hit = secant_refine(field, rays_o[hit_rays], rays_d[hit_rays], bracket(crossing.t_near), bracket(crossing.t_far),
                          bracket(crossing.value_near), bracket(crossing.value_far), level, n_secant)
    hit = torch.zeros(n_rays, dtype=torch.bool, device=rays_o.device)
    hit[hit_rays] = True
    t_out = far.clone()
    t_out[hit_rays] = t_hit
    return SurfaceHit(hit, t_out, rays_o + t_out[:, None] * rays_d)


@torch.no_grad()
def sphere_trace(sdf: Field, rays_o: Tensor, rays_d: Tensor, near, far, n_steps: int = 64, *,
                 epsilon: float = 1e-4, step_scale: float = 1.0, max_step: float | None = None) -> SurfaceHit:
    """Sphere tracing: step each ray forward by the signed distance until it is below
    ``epsilon`` (a hit) or past ``far`` (a miss), for at most ``n_steps`` evaluations.

    Args:
        sdf: ``[N,3] -> [N]`` signed distance (negative inside), at most 1-Lipschitz along
            rays for the steps to be safe (scale down with ``step_scale < 1`` otherwise).
        rays_o, rays_d: ``[R,3]``, ``rays_d`` unit length (steps are distances).
        near, far: numbers or ``[R]`` tensors.
        epsilon: hit threshold on ``|sdf|``.
        max_step: longest step (e.g. the truncation distance of a clamped SDF, whose values
            beyond it are not distances); ``None``: no limit.

    Returns:
        :class:`SurfaceHit`; rays still marching after ``n_steps`` count as misses.
    """
    _check_rays(rays_o, rays_d, "sphere_trace")
    n_rays = rays_o.shape[0]
    t = _per_ray(near, n_rays, rays_o, "near").clone()
    far = _per_ray(far, n_rays, rays_o, "far")
    hit = torch.zeros(n_rays, dtype=torch.bool, device=rays_o.device)
    # The marching rays, compacted after every step: ids, origins, directions, t, far.
    ids = torch.nonzero(t < far).squeeze(1)
    origins, dirs, t_active, far_active = rays_o[ids], rays_d[ids], t[ids], far[ids]
    for _ in range(n_steps):
        if ids.numel() == 0:
            break
        distance = sdf(origins + t_active[:, None] * dirs)
        converged = distance.abs() < epsilon
        step = distance * step_scale
        if max_step is not None:
            step = step.clamp(max=max_step)
        t_active = torch.where(converged, t_active, t_active + step)
        hit[ids[converged]] = True
        t[ids] = t_active
        keep = ~converged & (t_active < far_active)
        ids, origins, dirs, t_active, far_active = ids[keep], origins[keep], dirs[keep], t_active[keep], far_active[keep]
    t = torch.where(hit, t, far)
    return SurfaceHit(hit, t, rays_o + t[:, None] * rays_d)
