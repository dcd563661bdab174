"""Triton kernels for tile-sorted Gaussian rasterization, forward and backward.

The algorithm, constants and chunked transmittance are those of
:mod:`render3d.ops.rasterization` (the specification): one program per ``(camera, tile)``, one
lane per pixel (``tile_size**2`` lanes), the tile's sorted list read ``BATCH`` Gaussians at a time
into ``[pixels, BATCH]`` blocks whose transmittance is a ``cumprod`` along the batch. The
forward loop ends once every pixel of the tile has stopped; it records each pixel's final
transmittance and ``last_end`` (one past its last contributor). The backward program walks the
tile's batches back to front from the last batch any pixel used, ``BACKWARD_BATCH`` Gaussians
at a time, and adds per-Gaussian gradients with atomics into buffers the launcher zeroes.
Feature sums use ``tl.dot`` in IEEE float32 with the feature axis padded to 16.

Compiled for sm_80/sm_90 (``render3d check-kernels``), 16x16 tiles at 8 warps: the forward
needs about 180-230 registers a thread; the backward, which keeps some twenty ``[pixels,
batch]`` blocks alive, spilled about 500 bytes a thread with batches of 32 and needs 255
registers and at most 16 bytes of spill with batches of 16 (``tl.dot``'s minimum).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from render3d.errors import ConfigError
from render3d.kernels._variants import declare, product
from render3d.ops.rasterization import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN
from render3d.ops.tile_binning import tile_grid

BATCH = 32
BACKWARD_BATCH = 16
TILE_SIZES = (4, 8, 16)
FEATURE_PADS = (16,)  # channels padded for tl.dot; 32 fits a 16x16 forward too, 64 spills
MAX_CHANNELS = FEATURE_PADS[-1]


@triton.jit
def _tile_pixels(tile, width, height, tiles_w, tiles_per_camera, TILE: tl.constexpr):
    """The camera of program ``tile`` and its ``TILE*TILE`` pixels (row-major): integer
    coordinates, whether each lies inside the image, and the pixel centres (+0.5)."""
    camera = tile // tiles_per_camera
    tile_x = (tile % tiles_per_camera) % tiles_w
    tile_y = (tile % tiles_per_camera) // tiles_w
    lane = tl.arange(0, TILE * TILE)
    pixel_x = tile_x * TILE + lane % TILE
    pixel_y = tile_y * TILE + lane // TILE
    inside = (pixel_x < width) & (pixel_y < height)
    return camera, pixel_x, pixel_y, inside, pixel_x.to(tl.float32) + 0.5, pixel_y.to(tl.float32) + 0.5


@triton.jit
def _gaussian_alphas(ids_ptr, means_ptr, conics_ptr, opacities_ptr, slot, in_list, centre_x, centre_y,
                     ALPHA_CAP: tl.constexpr, ALPHA_FLOOR: tl.constexpr):
    """Load one batch of Gaussians and evaluate them at every pixel of the tile."""
    gid = tl.load(ids_ptr + slot, mask=in_list, other=0)
    mean_x = tl.load(means_ptr + gid * 2, mask=in_list, other=0.0)
    mean_y = tl.load(means_ptr + gid * 2 + 1, mask=in_list, other=0.0)
    conic_a = tl.load(conics_ptr + gid * 3, mask=in_list, other=0.0)
    conic_b = tl.load(conics_ptr + gid * 3 + 1, mask=in_list, other=0.0)
    conic_c = tl.load(conics_ptr + gid * 3 + 2, mask=in_list, other=0.0)
    opacity = tl.load(opacities_ptr + gid, mask=in_list, other=0.0)
    dx = mean_x[None, :] - centre_x[:, None]
    dy = mean_y[None, :] - centre_y[:, None]
    a = conic_a[None, :]
    b = conic_b[None, :]
    c = conic_c[None, :]
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    vis = tl.exp(-sigma)
    raw_alpha = opacity[None, :] * vis
    alpha = tl.minimum(raw_alpha, ALPHA_CAP)
    valid = (sigma >= 0.0) & (alpha >= ALPHA_FLOOR) & in_list[None, :]
    alpha = tl.where(valid, alpha, 0.0)
    return gid, dx, dy, a, b, c, vis, raw_alpha, alpha, valid


@declare(
    types={"means_ptr conics_ptr colors_ptr opacities_ptr backgrounds_ptr out_colors_ptr out_alphas_ptr t_final_ptr": "*fp32",
           "ids_ptr starts_ptr ends_ptr": "*i64", "last_end_ptr": "*i32",
           "width height tiles_w tiles_per_camera n_channels": "i32"},
    constexprs=product(D_PAD=FEATURE_PADS, TILE=TILE_SIZES, BATCH_SIZE=[BATCH], HAS_BACKGROUND=[False, True],
                       ALPHA_CAP=[ALPHA_MAX], ALPHA_FLOOR=[ALPHA_MIN], T_MIN=[TRANSMITTANCE_MIN]),
    options={"num_warps": 8},
)
@triton.jit
def _forward_kernel(ids_ptr, means_ptr, conics_ptr, colors_ptr, opacities_ptr, backgrounds_ptr,
                    starts_ptr, ends_ptr, out_colors_ptr, out_alphas_ptr, t_final_ptr, last_end_ptr,
                    width, height, tiles_w, tiles_per_camera, n_channels,
                    D_PAD: tl.constexpr, TILE: tl.constexpr, BATCH_SIZE: tl.constexpr,
                    HAS_BACKGROUND: tl.constexpr, ALPHA_CAP: tl.constexpr, ALPHA_FLOOR: tl.constexpr,
                    T_MIN: tl.constexpr):
    tile = tl.program_id(0)
    camera, pixel_x, pixel_y, inside, centre_x, centre_y = _tile_pixels(tile, width, height, tiles_w,
                                                                        tiles_per_camera, TILE)
    channel = tl.arange(0, D_PAD)
    batch_lane = tl.arange(0, BATCH_SIZE)
    start = tl.load(starts_ptr + tile)
    end = tl.load(ends_ptr + tile)
    n_batches = tl.cdiv(end - start, BATCH_SIZE)

    transmittance = tl.full([TILE * TILE], 1.0, tl.float32)
    colour = tl.zeros([TILE * TILE, D_PAD], tl.float32)
    last_end = tl.zeros([TILE * TILE], tl.int32)
    alive = inside
    batch = 0
    while (batch < n_batches) & (tl.max(alive.to(tl.int32), axis=0) > 0):
        index = batch * BATCH_SIZE + batch_lane
        slot = start + index
        in_list = slot < end
        gid, dx, dy, a, b, c, vis, raw_alpha, alpha, valid = _gaussian_alphas(
            ids_ptr, means_ptr, conics_ptr, opacities_ptr, slot, in_list, centre_x, centre_y,
            ALPHA_CAP, ALPHA_FLOOR)
        one_minus = 1.0 - alpha
        t_incl = transmittance[:, None] * tl.cumprod(one_minus, axis=1)
        before_stop = t_incl > T_MIN
        contributes = valid & before_stop & alive[:, None]
        t_excl = t_incl / one_minus
        weight = tl.where(contributes, alpha * t_excl, 0.0)
        features = tl.load(colors_ptr + gid[:, None] * n_channels + channel[None, :],
                           mask=in_list[:, None] & (channel[None, :] < n_channels), other=0.0)
        colour += tl.dot(weight, features, input_precision="ieee")
        t_out = tl.min(tl.where(before_stop, t_incl, transmittance[:, None]), axis=1)
        transmittance = tl.where(alive, t_out, transmittance)
        last = tl.max(tl.where(contributes, index[None, :], -1), axis=1)
        last_end = tl.where(last >= 0, last + 1, last_end)
        alive = alive & (tl.sum(before_stop.to(tl.int32), axis=1) == BATCH_SIZE)
        batch += 1

    if HAS_BACKGROUND:
        background = tl.load(backgrounds_ptr + camera * n_channels + channel, mask=channel < n_channels, other=0.0)
        colour += transmittance[:, None] * background[None, :]
    pixel = (camera.to(tl.int64) * height + pixel_y) * width + pixel_x
    tl.store(out_colors_ptr + pixel[:, None] * n_channels + channel[None, :], colour,
             mask=inside[:, None] & (channel[None, :] < n_channels))
    tl.store(out_alphas_ptr + pixel, 1.0 - transmittance, mask=inside)
    tl.store(t_final_ptr + pixel, transmittance, mask=inside)
    tl.store(last_end_ptr + pixel, last_end, mask=inside)


@declare(
    types={"means_ptr conics_ptr colors_ptr opacities_ptr backgrounds_ptr t_final_ptr grad_colors_ptr grad_alphas_ptr "
           "v_means_ptr v_means_abs_ptr v_conics_ptr v_colors_ptr v_opacities_ptr": "*fp32",
           "ids_ptr starts_ptr": "*i64", "last_end_ptr": "*i32",
           "width height tiles_w tiles_per_camera n_channels": "i32"},
    constexprs=product(D_PAD=FEATURE_PADS, TILE=TILE_SIZES, BATCH_SIZE=[BACKWARD_BATCH], HAS_BACKGROUND=[False, True],
                       ABSGRAD=[False, True], ALPHA_CAP=[ALPHA_MAX], ALPHA_FLOOR=[ALPHA_MIN]),
    options={"num_warps": 8},
)
@triton.jit
def _backward_kernel(ids_ptr, means_ptr, conics_ptr, colors_ptr, opacities_ptr, backgrounds_ptr,
                     starts_ptr, t_final_ptr, last_end_ptr, grad_colors_ptr, grad_alphas_ptr,
                     v_means_ptr, v_means_abs_ptr, v_conics_ptr, v_colors_ptr, v_opacities_ptr,
                     width, height, tiles_w, tiles_per_camera, n_channels,
                     D_PAD: tl.constexpr, TILE: tl.constexpr, BATCH_SIZE: tl.constexpr,
                     HAS_BACKGROUND: tl.constexpr, ABSGRAD: tl.constexpr, ALPHA_CAP: tl.constexpr,
                     ALPHA_FLOOR: tl.constexpr):
    tile = tl.program_id(0)
    camera, pixel_x, pixel_y, inside, centre_x, centre_y = _tile_pixels(tile, width, height, tiles_w,
                                                                        tiles_per_camera, TILE)
    channel = tl.arange(0, D_PAD)
    batch_lane = tl.arange(0, BATCH_SIZE)
    pixel = (camera.to(tl.int64) * height + pixel_y) * width + pixel_x
    channel_mask = inside[:, None] & (channel[None, :] < n_channels)

    t_after = tl.load(t_final_ptr + pixel, mask=inside, other=1.0)
    last_end = tl.load(last_end_ptr + pixel, mask=inside, other=0)
    grad = tl.load(grad_colors_ptr + pixel[:, None] * n_channels + channel[None, :], mask=channel_mask, other=0.0)
    grad_alpha = tl.load(grad_alphas_ptr + pixel, mask=inside, other=0.0)
    behind = -grad_alpha * t_after
    if HAS_BACKGROUND:
        background = tl.load(backgrounds_ptr + camera * n_channels + channel, mask=channel < n_channels, other=0.0)
        behind += tl.sum(grad * background[None, :], axis=1) * t_after
    start = tl.load(starts_ptr + tile)
    n_batches = tl.cdiv(tl.max(last_end, axis=0), BATCH_SIZE)

    for step in range(n_batches):
        index = (n_batches - 1 - step) * BATCH_SIZE + batch_lane
        slot = start + index
        in_list = index < tl.max(last_end, axis=0)
        gid, dx, dy, a, b, c, vis, raw_alpha, alpha, valid = _gaussian_alphas(
            ids_ptr, means_ptr, conics_ptr, opacities_ptr, slot, in_list, centre_x, centre_y,
            ALPHA_CAP, ALPHA_FLOOR)
        contributes = valid & (index[None, :] < last_end[:, None])
        alpha = tl.where(contributes, alpha, 0.0)
        one_minus = 1.0 - alpha
        products = tl.cumprod(one_minus, axis=1)
        batch_product = tl.sum(tl.where(batch_lane[None, :] == BATCH_SIZE - 1, products, 0.0), axis=1)
        t_start = t_after / batch_product
        t_excl = t_start[:, None] * products / one_minus
        weight = alpha * t_excl
        features = tl.load(colors_ptr + gid[:, None] * n_channels + channel[None, :],
                           mask=in_list[:, None] & (channel[None, :] < n_channels), other=0.0)
        grad_dot_colour = tl.dot(grad, tl.trans(features), input_precision="ieee")
        weighted = weight * grad_dot_colour
        running = tl.cumsum(weighted, axis=1)
        total = tl.sum(weighted, axis=1)
        behind_each = behind[:, None] + (total[:, None] - running)
        v_alpha = tl.where(contributes, t_excl * grad_dot_colour - behind_each / one_minus, 0.0)
        through = contributes & (raw_alpha <= ALPHA_CAP)
        v_sigma = tl.where(through, -raw_alpha * v_alpha, 0.0)
        v_mean_x = v_sigma * (a * dx + b * dy)
        v_mean_y = v_sigma * (b * dx + c * dy)
        tl.atomic_add(v_means_ptr + gid * 2, tl.sum(v_mean_x, axis=0), mask=in_list)
        tl.atomic_add(v_means_ptr + gid * 2 + 1, tl.sum(v_mean_y, axis=0), mask=in_list)
        if ABSGRAD:
            tl.atomic_add(v_means_abs_ptr + gid * 2, tl.sum(tl.abs(v_mean_x), axis=0), mask=in_list)
            tl.atomic_add(v_means_abs_ptr + gid * 2 + 1, tl.sum(tl.abs(v_mean_y), axis=0), mask=in_list)
        tl.atomic_add(v_conics_ptr + gid * 3, tl.sum(0.5 * v_sigma * dx * dx, axis=0), mask=in_list)
        tl.atomic_add(v_conics_ptr + gid * 3 + 1, tl.sum(v_sigma * dx * dy, axis=0), mask=in_list)
        tl.atomic_add(v_conics_ptr + gid * 3 + 2, tl.sum(0.5 * v_sigma * dy * dy, axis=0), mask=in_list)
        tl.atomic_add(v_opacities_ptr + gid, tl.sum(tl.where(through, vis * v_alpha, 0.0), axis=0), mask=in_list)
        v_features = tl.dot(tl.trans(weight), grad, input_precision="ieee")
        tl.atomic_add(v_colors_ptr + gid[:, None] * n_channels + channel[None, :], v_features,
                      mask=in_list[:, None] & (channel[None, :] < n_channels))
        t_after = t_start
        behind += total


def _launch_shape(width: int, height: int, tile_size: int, isect_offsets: torch.Tensor, n_isects: int):
    """(tiles_w, tiles per camera, starts [T] int64, ends [T] int64) for a launch."""
    tiles_w, tiles_h = tile_grid(width, height, tile_size)
    starts = isect_offsets.reshape(-1).long()
    ends = torch.cat([starts[1:], starts.new_tensor([n_isects])])
    return tiles_w, tiles_w * tiles_h, starts, ends


def _feature_pad(n_channels: int) -> int:
    """Feature axis width inside the kernels: a power of two, at least 16 (``tl.dot``'s minimum)."""
    return max(16, triton.next_power_of_2(n_channels))


class _RasterizeTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, width, height, tile_size,
                isect_offsets, flatten_ids, absgrad):
        n_cameras, n_gaussians, n_channels = colors.shape
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds)
        means2d, conics, colors, opacities = (t.contiguous() for t in (means2d, conics, colors, opacities))
        flatten_ids = flatten_ids.contiguous()
        tiles_w, tiles_per_camera, starts, ends = _launch_shape(width, height, tile_size, isect_offsets,
                                                                flatten_ids.numel())
        device = means2d.device
        render_colors = torch.empty(n_cameras, height, width, n_channels, dtype=torch.float32, device=device)
        render_alphas = torch.empty(n_cameras, height, width, 1, dtype=torch.float32, device=device)
        t_final = torch.empty(n_cameras, height, width, dtype=torch.float32, device=device)
        last_end = torch.empty(n_cameras, height, width, dtype=torch.int32, device=device)
        has_background = backgrounds is not None
        background_arg = backgrounds.contiguous() if has_background else render_colors
        _forward_kernel[(starts.numel(),)](
            flatten_ids, means2d, conics, colors, opacities, background_arg, starts, ends,
            render_colors, render_alphas, t_final, last_end, width, height, tiles_w, tiles_per_camera, n_channels,
            D_PAD=_feature_pad(n_channels), TILE=tile_size, BATCH_SIZE=BATCH,
            HAS_BACKGROUND=has_background, ALPHA_CAP=ALPHA_MAX, ALPHA_FLOOR=ALPHA_MIN, T_MIN=TRANSMITTANCE_MIN)
        ctx.shape = (width, height, tile_size, tiles_w, tiles_per_camera)
        ctx.absgrad = absgrad
        ctx.launch = (starts, flatten_ids, t_final, last_end)
        return render_colors, render_alphas

    @staticmethod
    def backward(ctx, grad_colors, grad_alphas):
        inputs = ctx.saved_tensors
        means2d, conics, colors, opacities = (t.contiguous() for t in inputs[:4])
        backgrounds = inputs[4]
        starts, flatten_ids, t_final, last_end = ctx.launch
        width, height, tile_size, tiles_w, tiles_per_camera = ctx.shape
        n_channels = colors.shape[-1]
        v_means = torch.zeros_like(means2d)
        v_means_abs = torch.zeros_like(means2d)
        v_conics = torch.zeros_like(conics)
        v_colors = torch.zeros_like(colors)
        v_opacities = torch.zeros_like(opacities)
        has_background = backgrounds is not None
        _backward_kernel[(starts.numel(),)](
            flatten_ids, means2d, conics, colors, opacities, backgrounds if has_background else colors,
            starts, t_final, last_end, grad_colors.contiguous(), grad_alphas.contiguous(),
            v_means, v_means_abs, v_conics, v_colors, v_opacities, width, height, tiles_w, tiles_per_camera,
            n_channels, D_PAD=_feature_pad(n_channels), TILE=tile_size, BATCH_SIZE=BACKWARD_BATCH,
            HAS_BACKGROUND=has_background, ABSGRAD=bool(ctx.absgrad), ALPHA_CAP=ALPHA_MAX, ALPHA_FLOOR=ALPHA_MIN)
        if ctx.absgrad:
            inputs[0].absgrad = v_means_abs
        v_backgrounds = None
        if has_background and ctx.needs_input_grad[4]:
            v_backgrounds = (grad_colors * t_final[..., None]).sum(dim=(1, 2))
        needs = ctx.needs_input_grad
        return (v_means if needs[0] else None, v_conics if needs[1] else None, v_colors if needs[2] else None,
                v_opacities if needs[3] else None, v_backgrounds, None, None, None, None, None, None)


def rasterize_gaussians_triton(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: torch.Tensor,
    flatten_ids: torch.Tensor,
    backgrounds: torch.Tensor | None = None,
    absgrad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton implementation of :func:`render3d.ops.rasterization.rasterize_gaussians` (same
    arguments and results; float32 inputs, ``tile_size`` one of :data:`TILE_SIZES`, at most
    :data:`MAX_CHANNELS` channels)."""
    if means2d.dtype != torch.float32:
        raise ConfigError(f"rasterize_gaussians: the Triton kernel takes float32 inputs, got {means2d.dtype}")
    if tile_size not in TILE_SIZES:
        raise ConfigError(f"rasterize_gaussians: the Triton kernel needs tile_size in {TILE_SIZES}, got {tile_size}")
    if colors.shape[-1] > MAX_CHANNELS:
        raise ConfigError(f"rasterize_gaussians: the Triton kernel takes at most {MAX_CHANNELS} channels, "
                          f"got {colors.shape[-1]}")
    return _RasterizeTriton.apply(means2d, conics, colors, opacities, backgrounds, width, height, tile_size,
                                  isect_offsets, flatten_ids, absgrad)
