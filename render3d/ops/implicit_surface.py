"""Differentiable surface points by implicit differentiation (DVR; the seed's proof section).

A ray ``p(t) = o + t w`` meets the surface ``f_θ(p) = τ`` at ``p̂``, found by a search without
gradient (:mod:`render3d.ops.surface_search`). Differentiating ``f_θ(p̂) = τ`` gives

    ∂p̂/∂θ = −w (∂f/∂p̂ · w)⁻¹ ∂f/∂θ,

and likewise for the ray: ``∂p̂/∂o = I − w ∇fᵀ/(∇f·w)``, ``∂p̂/∂w = t (I − w ∇fᵀ/(∇f·w))``.
:func:`implicit_surface_points` returns ``p̂`` unchanged and, in the backward pass, evaluates
``f`` once at ``p̂`` with gradient and applies these formulas as one vector–Jacobian product.
It saves only ``p̂`` and the rays, nothing from the march, so the backward's memory does not
depend on the number of march or secant steps. Shared by the SDF/occupancy renderers, DVR
and (later) skinned implicit bodies.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

from render3d.errors import ConfigError

# |∂f/∂p · w| below this (a ray grazing the surface) is clamped, keeping gradients finite.
MIN_DIRECTIONAL_DERIVATIVE = 1e-6


class _ImplicitSurfacePoints(torch.autograd.Function):
    @staticmethod
    def forward(ctx, field, points, rays_o, rays_d, *params):
        ctx.field = field
        ctx.save_for_backward(points, rays_o, rays_d, *params)
        return points.clone()

    @staticmethod
    def backward(ctx, grad_points):
        points, rays_o, rays_d, *params = ctx.saved_tensors
        want = ctx.needs_input_grad
        with torch.enable_grad():
            leaf = points.detach().requires_grad_(True)
            values = ctx.field(leaf)
            (normal,) = torch.autograd.grad(values.sum(), leaf, retain_graph=True)
            slope = (normal * rays_d).sum(-1)
            slope = torch.where(slope >= 0, slope.clamp(min=MIN_DIRECTIONAL_DERIVATIVE),
                                slope.clamp(max=-MIN_DIRECTIONAL_DERIVATIVE))
            # dL/dt along each ray, divided by the directional derivative: the VJP's cotangent.
            scale = (grad_points * rays_d).sum(-1) / slope  # [R]
            wanted = [p for p, w in zip(params, want[4:]) if w]
            grads = torch.autograd.grad(values, wanted, grad_outputs=-scale, allow_unused=True) if wanted else ()
        grads = iter(grads)
        grad_params = [next(grads) if w else None for w in want[4:]]
        grad_o = grad_d = None
        if want[2] or want[3]:
            grad_ray = grad_points - scale[:, None] * normal
            grad_o = grad_ray if want[2] else None
            if want[3]:
                t = ((points - rays_o) * rays_d).sum(-1) / (rays_d * rays_d).sum(-1)
                grad_d = t[:, None] * grad_ray
        return (None, None, grad_o, grad_d, *grad_params)


def implicit_surface_points(field: Callable[[Tensor], Tensor], points: Tensor, rays_o: Tensor, rays_d: Tensor,
                            params: Iterable[Tensor] | None = None) -> Tensor:
    """Surface points ``p̂ [R,3]`` with gradients by implicit differentiation (module docstring).

    Args:
        field: ``[N,3] -> [N]`` scalar field whose level set the points lie on (any level and
            sign convention: only its gradients enter). It is called once, in the backward.
        points: ``[R,3]`` surface points found without gradient (e.g. ``find_surface(...).points``);
            used as they are (detached).
        rays_o, rays_d: ``[R,3]`` the rays that found them (``points = rays_o + t rays_d``);
            they receive gradients when they require grad.
        params: the tensors ``θ`` the field depends on that should receive gradients (network
            weights, latent codes); default ``field.parameters()`` when ``field`` is a module.

    Returns:
        ``[R,3]``, equal to ``points``; differentiable once (no double backward) with respect
        to ``params``, ``rays_o`` and ``rays_d``.
    """
    if points.dim() != 2 or points.shape[1] != 3 or rays_o.shape != points.shape or rays_d.shape != points.shape:
        raise ConfigError(f"implicit_surface_points: points, rays_o and rays_d must all be [R, 3], got "
                          f"{tuple(points.shape)}, {tuple(rays_o.shape)}, {tuple(rays_d.shape)}")
    if params is None:
        params = field.parameters() if isinstance(field, torch.nn.Module) else ()
    params = [p for p in params if p.requires_grad]
    return _ImplicitSurfacePoints.apply(field, points.detach(), rays_o, rays_d, *params)
