"""Triton volume rendering over packed samples: forward and backward kernels.

One program per ray walks the ray's contiguous samples in blocks of ``BLOCK`` with a
running optical depth carried across blocks (float32), as in nerfacc's CUDA kernels.

Forward, per sample (``tau_i = sigma_i * delta_i``): ``T_i = exp(-sum_{j<i} tau_j)``,
``w_i = T_i * (1 - exp(-tau_i))``; per ray the sums of ``w * rgb``, ``w`` and
``w * (t_start + t_end) / 2``.

Backward: every output gradient folds into one per-sample weight gradient
``g_i = dL/dw_i + dL/drgb . c_i + dL/dopacity + dL/ddepth * mid_i``; then
``dL/drgb_i = w_i * dL/drgb`` and
``dL/dsigma_i = delta_i * (g_i * T_{i+1} - sum_{k>i} g_k w_k)``, the suffix sum taken as the
ray's total minus the inclusive prefix (so the backward walks each ray twice).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from render3d.kernels._variants import declare
from render3d.ops.volume_rendering import ray_offsets

BLOCK_SAMPLES = 64


@declare(
    types={"t_starts_ptr t_ends_ptr sigmas_ptr rgbs_ptr weights_ptr rgb_ptr opacity_ptr depth_ptr": "*fp32",
           "first_ptr counts_ptr": "*i64"},
    constexprs=[{"BLOCK": BLOCK_SAMPLES}],
)
@triton.jit
def _forward_kernel(
    t_starts_ptr, t_ends_ptr, sigmas_ptr, rgbs_ptr, first_ptr, counts_ptr,
    weights_ptr, rgb_ptr, opacity_ptr, depth_ptr,
    BLOCK: tl.constexpr,
):
    ray = tl.program_id(0).to(tl.int64)
    first = tl.load(first_ptr + ray)
    count = tl.load(counts_ptr + ray)
    lanes = tl.arange(0, BLOCK)
    optical_depth = tl.zeros([1], dtype=tl.float32)
    red = tl.zeros([BLOCK], dtype=tl.float32)
    green = tl.zeros([BLOCK], dtype=tl.float32)
    blue = tl.zeros([BLOCK], dtype=tl.float32)
    opacity = tl.zeros([BLOCK], dtype=tl.float32)
    depth = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, count, BLOCK):
        in_ray = start + lanes < count
        sample = first + start + lanes
        t_start = tl.load(t_starts_ptr + sample, mask=in_ray, other=0.0)
        t_end = tl.load(t_ends_ptr + sample, mask=in_ray, other=0.0)
        sigma = tl.load(sigmas_ptr + sample, mask=in_ray, other=0.0)
        tau = sigma * (t_end - t_start)
        inclusive = tl.cumsum(tau, axis=0) + optical_depth
        weight = tl.exp(tau - inclusive) * (1.0 - tl.exp(-tau))
        tl.store(weights_ptr + sample, weight, mask=in_ray)
        red += weight * tl.load(rgbs_ptr + sample * 3, mask=in_ray, other=0.0)
        green += weight * tl.load(rgbs_ptr + sample * 3 + 1, mask=in_ray, other=0.0)
        blue += weight * tl.load(rgbs_ptr + sample * 3 + 2, mask=in_ray, other=0.0)
        opacity += weight
        depth += weight * (t_start + t_end) * 0.5
        optical_depth += tl.sum(tau, axis=0)
    tl.store(rgb_ptr + ray * 3, tl.sum(red, axis=0))
    tl.store(rgb_ptr + ray * 3 + 1, tl.sum(green, axis=0))
    tl.store(rgb_ptr + ray * 3 + 2, tl.sum(blue, axis=0))
    tl.store(opacity_ptr + ray, tl.sum(opacity, axis=0))
    tl.store(depth_ptr + ray, tl.sum(depth, axis=0))


@triton.jit
def _weight_gradient(
    sample, in_ray, t_start, t_end, rgbs_ptr, grad_weights_ptr, grad_r, grad_g, grad_b, grad_opacity, grad_depth
):
    """``g_i``: every output's gradient folded onto sample ``i``'s weight."""
    red = tl.load(rgbs_ptr + sample * 3, mask=in_ray, other=0.0)
    green = tl.load(rgbs_ptr + sample * 3 + 1, mask=in_ray, other=0.0)
    blue = tl.load(rgbs_ptr + sample * 3 + 2, mask=in_ray, other=0.0)
    grad = tl.load(grad_weights_ptr + sample, mask=in_ray, other=0.0)
    grad += grad_r * red + grad_g * green + grad_b * blue + grad_opacity + grad_depth * (t_start + t_end) * 0.5
    return tl.where(in_ray, grad, 0.0)


@declare(
    types={"t_starts_ptr t_ends_ptr sigmas_ptr rgbs_ptr grad_weights_ptr grad_rgb_ptr grad_opacity_ptr "
           "grad_depth_ptr grad_sigmas_ptr grad_rgbs_ptr": "*fp32",
           "first_ptr counts_ptr": "*i64"},
    constexprs=[{"BLOCK": BLOCK_SAMPLES}],
)
@triton.jit
def _backward_kernel(
    t_starts_ptr, t_ends_ptr, sigmas_ptr, rgbs_ptr, first_ptr, counts_ptr,
    grad_weights_ptr, grad_rgb_ptr, grad_opacity_ptr, grad_depth_ptr,
    grad_sigmas_ptr, grad_rgbs_ptr,
    BLOCK: tl.constexpr,
):
    ray = tl.program_id(0).to(tl.int64)
    first = tl.load(first_ptr + ray)
    count = tl.load(counts_ptr + ray)
    lanes = tl.arange(0, BLOCK)
    grad_r = tl.load(grad_rgb_ptr + ray * 3)
    grad_g = tl.load(grad_rgb_ptr + ray * 3 + 1)
    grad_b = tl.load(grad_rgb_ptr + ray * 3 + 2)
    grad_opacity = tl.load(grad_opacity_ptr + ray)
    grad_depth = tl.load(grad_depth_ptr + ray)
    # Pass 1: the ray's total sum_k g_k w_k.
    optical_depth = tl.zeros([1], dtype=tl.float32)
    total = tl.zeros([1], dtype=tl.float32)
    for start in range(0, count, BLOCK):
        in_ray = start + lanes < count
        sample = first + start + lanes
        t_start = tl.load(t_starts_ptr + sample, mask=in_ray, other=0.0)
        t_end = tl.load(t_ends_ptr + sample, mask=in_ray, other=0.0)
        tau = tl.load(sigmas_ptr + sample, mask=in_ray, other=0.0) * (t_end - t_start)
        inclusive = tl.cumsum(tau, axis=0) + optical_depth
        weight = tl.exp(tau - inclusive) * (1.0 - tl.exp(-tau))
        grad = _weight_gradient(
            sample, in_ray, t_start, t_end, rgbs_ptr, grad_weights_ptr,
            grad_r, grad_g, grad_b, grad_opacity, grad_depth,
        )
        total += tl.sum(grad * weight, axis=0)
        optical_depth += tl.sum(tau, axis=0)
    # Pass 2: per-sample gradients with suffix = total - inclusive prefix.
    optical_depth = tl.zeros([1], dtype=tl.float32)
    prefix = tl.zeros([1], dtype=tl.float32)
    for start in range(0, count, BLOCK):
        in_ray = start + lanes < count
        sample = first + start + lanes
        t_start = tl.load(t_starts_ptr + sample, mask=in_ray, other=0.0)
        t_end = tl.load(t_ends_ptr + sample, mask=in_ray, other=0.0)
        delta = t_end - t_start
        tau = tl.load(sigmas_ptr + sample, mask=in_ray, other=0.0) * delta
        inclusive = tl.cumsum(tau, axis=0) + optical_depth
        weight = tl.exp(tau - inclusive) * (1.0 - tl.exp(-tau))
        grad = _weight_gradient(
            sample, in_ray, t_start, t_end, rgbs_ptr, grad_weights_ptr,
            grad_r, grad_g, grad_b, grad_opacity, grad_depth,
        )
        inclusive_prefix = tl.cumsum(grad * weight, axis=0) + prefix
        grad_tau = grad * tl.exp(-inclusive) - (total - inclusive_prefix)
        tl.store(grad_sigmas_ptr + sample, grad_tau * delta, mask=in_ray)
        tl.store(grad_rgbs_ptr + sample * 3, weight * grad_r, mask=in_ray)
        tl.store(grad_rgbs_ptr + sample * 3 + 1, weight * grad_g, mask=in_ray)
        tl.store(grad_rgbs_ptr + sample * 3 + 2, weight * grad_b, mask=in_ray)
        prefix += tl.sum(grad * weight, axis=0)
        optical_depth += tl.sum(tau, axis=0)


class _VolumeRender(torch.autograd.Function):
    """Packed compositing without background; differentiable w.r.t. sigmas and rgbs."""

    @staticmethod
    def forward(ctx, t_starts, t_ends, sigmas, rgbs, first, counts):
        n_rays = first.shape[0]
        device = sigmas.device
        weights = torch.empty_like(sigmas)
        rgb = torch.zeros(n_rays, 3, dtype=torch.float32, device=device)
        opacity = torch.zeros(n_rays, 1, dtype=torch.float32, device=device)
        depth = torch.zeros(n_rays, 1, dtype=torch.float32, device=device)
        if n_rays and sigmas.numel():
            _forward_kernel[(n_rays,)](
                t_starts, t_ends, sigmas, rgbs, first, counts, weights, rgb, opacity, depth, BLOCK=BLOCK_SAMPLES
            )
        ctx.save_for_backward(t_starts, t_ends, sigmas, rgbs, first, counts)
        return weights, rgb, opacity, depth

    @staticmethod
    def backward(ctx, grad_weights, grad_rgb, grad_opacity, grad_depth):
        t_starts, t_ends, sigmas, rgbs, first, counts = ctx.saved_tensors
        n_rays = first.shape[0]
        grad_weights = _or_zeros(grad_weights, sigmas.shape, sigmas.device)
        grad_rgb = _or_zeros(grad_rgb, (n_rays, 3), sigmas.device)
        grad_opacity = _or_zeros(grad_opacity, (n_rays, 1), sigmas.device)
        grad_depth = _or_zeros(grad_depth, (n_rays, 1), sigmas.device)
        grad_sigmas = torch.zeros_like(sigmas)
        grad_rgbs = torch.zeros_like(rgbs)
        if n_rays and sigmas.numel():
            _backward_kernel[(n_rays,)](
                t_starts, t_ends, sigmas, rgbs, first, counts,
                grad_weights, grad_rgb, grad_opacity, grad_depth, grad_sigmas, grad_rgbs,
                BLOCK=BLOCK_SAMPLES,
            )
        needs = ctx.needs_input_grad
        return None, None, grad_sigmas if needs[2] else None, grad_rgbs if needs[3] else None, None, None


def _or_zeros(grad, shape, device) -> torch.Tensor:
    if grad is None:
        return torch.zeros(shape, dtype=torch.float32, device=device)
    return grad.float().contiguous()


def volume_render_triton(
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    ray_indices: torch.Tensor,
    n_rays: int,
    sigmas: torch.Tensor,
    rgbs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel twin of :func:`render3d.ops.volume_rendering.volume_render_reference` (same
    arguments; returns ``weights [S]``, ``rgb [R, 3]``, ``opacity [R, 1]``, ``depth [R, 1]``
    in float32; inputs are computed in float32)."""
    first, counts = ray_offsets(ray_indices, n_rays)
    return _VolumeRender.apply(
        t_starts.float().contiguous(),
        t_ends.float().contiguous(),
        sigmas.float().contiguous(),
        rgbs.float().contiguous(),
        first,
        counts,
    )
