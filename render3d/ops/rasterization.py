"""Tile-sorted rasterization of projected 2D Gaussians (3D Gaussian Splatting), front to back.

Every pixel of tile ``(c, ty, tx)`` composites that tile's Gaussians in their sorted order
(from :func:`render3d.ops.tile_binning.isect_tiles`). For the pixel centre ``p = (x + 0.5,
y + 0.5)`` and a Gaussian with mean ``m``, conic ``(a, b, c)`` (the inverse 2D covariance
``[[a, b], [b, c]]``), opacity ``o`` and colour ``col``::

    d = m - p
    sigma = 0.5 * (a * d.x * d.x + c * d.y * d.y) + b * d.x * d.y
    skip if sigma < 0
    alpha = min(ALPHA_MAX, o * exp(-sigma))
    skip if alpha < ALPHA_MIN
    next_T = T * (1 - alpha)
    stop (before adding this Gaussian) if next_T <= TRANSMITTANCE_MIN
    colour += col * alpha * T;  T = next_T

starting from ``T = 1``; finally ``colour += T * background`` and ``alpha = 1 - T``. The
constants are those of the original 3DGS rasterizer: ``ALPHA_MAX = 0.99``,
``ALPHA_MIN = 1/255``, ``TRANSMITTANCE_MIN = 1e-4``. A Gaussian whose ``o * exp(-sigma)``
exceeds ``ALPHA_MAX`` gets no gradient through ``alpha`` at that pixel (the clamp is flat).

Both implementations process a tile's list in chunks: for a chunk the per-(pixel, Gaussian)
alphas are computed at once, the transmittance in front of each Gaussian is ``T * cumprod(1 -
alpha)`` (skipped Gaussians contribute ``1``), and the first Gaussian whose inclusive
transmittance reaches ``TRANSMITTANCE_MIN`` ends the pixel, exactly as the sequential rule.
The forward pass records, per pixel, ``last_end`` (index past its last contributor in the
tile's list) and the final transmittance; the backward pass walks each tile's chunks from the
last one any pixel needs back to the first, recovering the transmittance in front of a chunk
as ``T_after / prod(1 - alpha)`` and accumulating the colour behind each Gaussian.

``absgrad=True`` additionally sums, per Gaussian, the absolute value of each pixel's
contribution to ``dL/dmeans2d`` (per coordinate) and stores the ``[C, N, 2]`` result as the
attribute ``means2d.absgrad`` during backward (the densification statistic of
"AbsGS"/gsplat); each backward pass overwrites it.
"""
from __future__ import annotations

import torch

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton
from render3d.ops.tile_binning import tile_grid

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4

# Reference chunking: Gaussians per chunk, and (pixels x Gaussians) elements per step, sized
# so a step's working set stays in the 2-core machine's L2 cache (tuned in the benchmark).
REFERENCE_CHUNK = 32
REFERENCE_STEP_ELEMENTS = 1 << 17


def rasterize_gaussians(
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
    """Rasterize projected Gaussians into images (differentiable; rules in the module docstring).

    Dispatches through :func:`render3d.ops._backend.use_triton` to the Triton kernel or to
    :func:`rasterize_gaussians_reference`; both give the same pixels.

    Args:
        means2d: ``[C, N, 2]`` float pixel-space means (pixel centres at ``+0.5``).
        conics: ``[C, N, 3]`` float ``(a, b, c)`` of the inverse 2D covariances.
        colors: ``[C, N, D]`` float features to composite (any ``D``: RGB, RGB + depth, ...).
        opacities: ``[C, N]`` float opacities in ``[0, 1]``.
        width, height: image size in pixels.
        tile_size: tile edge in pixels, the one used for binning (a power of two for Triton).
        isect_offsets: ``[C, tiles_h, tiles_w]`` int32 from
            :func:`render3d.ops.tile_binning.isect_offset_encode`.
        flatten_ids: ``[M]`` int64 sorted ``c * N + n`` from
            :func:`render3d.ops.tile_binning.isect_tiles`.
        backgrounds: optional ``[C, D]`` float colour behind the Gaussians.
        absgrad: store ``means2d.absgrad`` (``[C, N, 2]``) during backward.

    Returns:
        render_colors: ``[C, H, W, D]`` composited features.
        render_alphas: ``[C, H, W, 1]`` accumulated opacity ``1 - T``.

    Example:
        >>> from render3d.ops.tile_binning import isect_tiles, isect_offset_encode
        >>> means2d = torch.tensor([[[8.0, 8.0]]]); conics = torch.tensor([[[0.1, 0.0, 0.1]]])
        >>> _, keys, ids = isect_tiles(means2d, torch.tensor([[10]]), torch.ones(1, 1), 16, 16)
        >>> offsets = isect_offset_encode(keys, 1, 1, 1)
        >>> rgb, alpha = rasterize_gaussians(means2d, conics, torch.ones(1, 1, 3),
        ...                                  torch.full((1, 1), 0.5), 16, 16, 16, offsets, ids)
        >>> rgb.shape, round(alpha[0, 7, 7, 0].item(), 4)
        (torch.Size([1, 16, 16, 3]), 0.4756)
    """
    check_rasterize_inputs(means2d, conics, colors, opacities, width, height, tile_size,
                           isect_offsets, flatten_ids, backgrounds)
    tensors = (means2d, conics, colors, opacities, isect_offsets, flatten_ids, backgrounds)
    if use_triton(*tensors):
        from render3d.kernels.rasterization import rasterize_gaussians_triton

        return rasterize_gaussians_triton(means2d, conics, colors, opacities, width, height, tile_size,
                                          isect_offsets, flatten_ids, backgrounds, absgrad)
    return rasterize_gaussians_reference(means2d, conics, colors, opacities, width, height, tile_size,
                                         isect_offsets, flatten_ids, backgrounds, absgrad)


def check_rasterize_inputs(means2d, conics, colors, opacities, width, height, tile_size,
                           isect_offsets, flatten_ids, backgrounds) -> None:
    """Raise :class:`ConfigError` naming the first argument of :func:`rasterize_gaussians` that is wrong."""
    def fail(message: str) -> None:
        raise ConfigError(f"rasterize_gaussians: {message}")

    for name, value in (("width", width), ("height", height), ("tile_size", tile_size)):
        if not isinstance(value, int) or value <= 0:
            fail(f"{name} must be a positive int, got {value!r}")
    if means2d.dim() != 3 or means2d.shape[-1] != 2:
        fail(f"means2d must be [C, N, 2], got {tuple(means2d.shape)}")
    n_cameras, n_gaussians = means2d.shape[:2]
    if tuple(conics.shape) != (n_cameras, n_gaussians, 3):
        fail(f"conics must be [C, N, 3] = {(n_cameras, n_gaussians, 3)}, got {tuple(conics.shape)}")
    if colors.dim() != 3 or tuple(colors.shape[:2]) != (n_cameras, n_gaussians) or colors.shape[2] == 0:
        fail(f"colors must be [C, N, D] with C, N = {n_cameras}, {n_gaussians}, got {tuple(colors.shape)}")
    if tuple(opacities.shape) != (n_cameras, n_gaussians):
        fail(f"opacities must be [C, N] = {(n_cameras, n_gaussians)}, got {tuple(opacities.shape)}")
    floats = {"means2d": means2d, "conics": conics, "colors": colors, "opacities": opacities}
    if backgrounds is not None:
        if tuple(backgrounds.shape) != (n_cameras, colors.shape[2]):
            fail(f"backgrounds must be [C, D] = {(n_cameras, colors.shape[2])}, got {tuple(backgrounds.shape)}")
        floats["backgrounds"] = backgrounds
    for name, tensor in floats.items():
        if tensor.dtype != means2d.dtype or not tensor.is_floating_point():
            fail(f"{name} must be floating point with means2d's dtype {means2d.dtype}, got {tensor.dtype}")
    tiles_w, tiles_h = tile_grid(width, height, tile_size)
    if tuple(isect_offsets.shape) != (n_cameras, tiles_h, tiles_w) or isect_offsets.dtype != torch.int32:
        fail(f"isect_offsets must be int32 [C, tiles_h, tiles_w] = {(n_cameras, tiles_h, tiles_w)}, "
             f"got {isect_offsets.dtype} {tuple(isect_offsets.shape)}")
    if flatten_ids.dim() != 1 or flatten_ids.dtype != torch.int64:
        fail(f"flatten_ids must be a 1-D int64 tensor, got {flatten_ids.dtype} {tuple(flatten_ids.shape)}")


def rasterize_gaussians_reference(
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
    """PyTorch reference of :func:`rasterize_gaussians` (same arguments, shapes and results).

    Vectorized over tiles and chunks of each tile's list (``REFERENCE_CHUNK`` Gaussians);
    tiles leave the loop once every pixel has stopped or their list is exhausted. The
    backward pass is hand-written (:class:`_RasterizeReference`), in the input dtype.
    """
    return _RasterizeReference.apply(means2d, conics, colors, opacities, backgrounds, width, height,
                                     tile_size, isect_offsets, flatten_ids, absgrad)


class _TileLayout:
    """Pixels grouped by tile: tile ``t = (c * tiles_h + ty) * tiles_w + tx``, pixel ``q`` row-major in it."""

    def __init__(self, n_cameras: int, width: int, height: int, tile_size: int, isect_offsets: torch.Tensor,
                 n_isects: int, dtype: torch.dtype):
        device = isect_offsets.device
        self.n_cameras, self.width, self.height, self.tile_size = n_cameras, width, height, tile_size
        self.tiles_w, self.tiles_h = tile_grid(width, height, tile_size)
        self.n_tiles = n_cameras * self.tiles_w * self.tiles_h
        self.starts = isect_offsets.reshape(-1).long()
        self.ends = torch.cat([self.starts[1:], torch.tensor([n_isects], device=device)])
        local = torch.arange(tile_size * tile_size, device=device)
        tile = torch.arange(self.n_tiles, device=device) % (self.tiles_w * self.tiles_h)
        pixel_x = (tile % self.tiles_w * tile_size)[:, None] + local % tile_size
        pixel_y = (tile // self.tiles_w * tile_size)[:, None] + local // tile_size
        self.inside = (pixel_x < width) & (pixel_y < height)
        self.centre_x = pixel_x.to(dtype) + 0.5
        self.centre_y = pixel_y.to(dtype) + 0.5

    def to_tiles(self, image: torch.Tensor) -> torch.Tensor:
        """``[C, H, W, *F]`` -> ``[tiles, pixels, *F]``, zero outside the image."""
        size = self.tile_size
        padded = image.new_zeros((self.n_cameras, self.tiles_h * size, self.tiles_w * size) + image.shape[3:])
        padded[:, : self.height, : self.width] = image
        tiled = padded.reshape((self.n_cameras, self.tiles_h, size, self.tiles_w, size) + image.shape[3:])
        return tiled.transpose(2, 3).reshape((self.n_tiles, size * size) + image.shape[3:])

    def to_image(self, tiled: torch.Tensor) -> torch.Tensor:
        """``[tiles, pixels, *F]`` -> ``[C, H, W, *F]``."""
        size = self.tile_size
        grid = tiled.reshape((self.n_cameras, self.tiles_h, self.tiles_w, size, size) + tiled.shape[2:])
        image = grid.transpose(2, 3).reshape((self.n_cameras, self.tiles_h * size, self.tiles_w * size)
                                             + tiled.shape[2:])
        return image[:, : self.height, : self.width]

    def steps(self, tiles: torch.Tensor):
        """Split a tile index tensor into steps of at most ``REFERENCE_STEP_ELEMENTS`` work elements."""
        per_step = max(1, REFERENCE_STEP_ELEMENTS // (self.tile_size * self.tile_size * REFERENCE_CHUNK))
        return torch.split(tiles, per_step)


class _Chunk:
    """One chunk of ``REFERENCE_CHUNK`` list entries for a set of tiles: alphas per (tile, pixel, slot)."""

    def __init__(self, layout: _TileLayout, tiles: torch.Tensor, chunk: int, flatten_ids: torch.Tensor,
                 means: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor):
        slot = layout.starts[tiles, None] + chunk * REFERENCE_CHUNK + torch.arange(REFERENCE_CHUNK,
                                                                                    device=tiles.device)
        in_list = slot < layout.ends[tiles, None]
        self.ids = flatten_ids[slot.clamp(max=flatten_ids.numel() - 1)]
        mean = means[self.ids]
        conic = conics[self.ids]
        self.opacity = opacities[self.ids][:, None, :]
        self.dx = mean[:, None, :, 0] - layout.centre_x[tiles][:, :, None]
        self.dy = mean[:, None, :, 1] - layout.centre_y[tiles][:, :, None]
        self.a, self.b, self.c = (conic[:, None, :, i] for i in range(3))
        sigma = 0.5 * (self.a * self.dx * self.dx + self.c * self.dy * self.dy) + self.b * self.dx * self.dy
        self.vis = torch.exp(-sigma)
        self.raw_alpha = self.opacity * self.vis
        alpha = self.raw_alpha.clamp(max=ALPHA_MAX)
        self.valid = (sigma >= 0) & (alpha >= ALPHA_MIN) & in_list[:, None, :]
        self.alpha = torch.where(self.valid, alpha, 0.0)


def _forward_chunks(layout: _TileLayout, flatten_ids, means, conics, colors, opacities):
    """Front-to-back compositing of every tile: ``(colour [tiles,P,D], T [tiles,P], last_end [tiles,P])``."""
    n_pixels = layout.tile_size * layout.tile_size
    dtype = means.dtype
    transmittance = torch.ones(layout.n_tiles, n_pixels, dtype=dtype, device=means.device)
    colour = torch.zeros(layout.n_tiles, n_pixels, colors.shape[-1], dtype=dtype, device=means.device)
    last_end = torch.zeros(layout.n_tiles, n_pixels, dtype=torch.int32, device=means.device)
    alive = layout.inside.clone()
    slots = torch.arange(REFERENCE_CHUNK, device=means.device)
    lengths = layout.ends - layout.starts
    active = torch.nonzero(lengths > 0).squeeze(1)
    chunk = 0
    while active.numel():
        for tiles in layout.steps(active):
            part = _Chunk(layout, tiles, chunk, flatten_ids, means, conics, opacities)
            t_in = transmittance[tiles]
            was_alive = alive[tiles]
            t_incl = t_in[:, :, None] * torch.cumprod(1.0 - part.alpha, dim=-1)
            # Transmittance never rises along the list and skipped entries keep it, so the
            # first entry at or below the threshold is a valid Gaussian: the stopping one.
            before_stop = t_incl > TRANSMITTANCE_MIN
            contributes = part.valid & before_stop & was_alive[:, :, None]
            t_excl = torch.cat([t_in[:, :, None], t_incl[:, :, :-1]], dim=-1)
            weight = torch.where(contributes, part.alpha * t_excl, 0.0)
            colour[tiles] += torch.bmm(weight, colors[part.ids])
            t_out = torch.where(before_stop, t_incl, t_in[:, :, None]).amin(-1)
            transmittance[tiles] = torch.where(was_alive, t_out, t_in)
            last = torch.where(contributes, slots, -1).amax(-1)
            last_end[tiles] = torch.where(last >= 0, chunk * REFERENCE_CHUNK + last + 1, last_end[tiles]).int()
            alive[tiles] = was_alive & before_stop.all(-1)
        chunk += 1
        active = active[(lengths[active] > chunk * REFERENCE_CHUNK) & alive[active].any(dim=1)]
    return colour, transmittance, last_end


class _RasterizeReference(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, width, height, tile_size,
                isect_offsets, flatten_ids, absgrad):
        n_cameras, n_gaussians = means2d.shape[:2]
        layout = _TileLayout(n_cameras, width, height, tile_size, isect_offsets, flatten_ids.numel(), means2d.dtype)
        flat = (means2d.reshape(-1, 2), conics.reshape(-1, 3), colors.reshape(n_cameras * n_gaussians, colors.shape[-1]),
                opacities.reshape(-1))
        colour, transmittance, last_end = _forward_chunks(layout, flatten_ids, *flat)
        if backgrounds is not None:
            camera = torch.arange(layout.n_tiles, device=means2d.device) // (layout.tiles_w * layout.tiles_h)
            colour = colour + transmittance[:, :, None] * backgrounds[camera][:, None, :]
        ctx.layout = layout
        ctx.absgrad = absgrad
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, flatten_ids, transmittance, last_end)
        render_colors = layout.to_image(colour).contiguous()
        render_alphas = (1.0 - layout.to_image(transmittance))[..., None].contiguous()
        return render_colors, render_alphas

    @staticmethod
    def backward(ctx, grad_colors, grad_alphas):
        means2d, conics, colors, opacities, backgrounds, flatten_ids, t_final, last_end = ctx.saved_tensors
        layout: _TileLayout = ctx.layout
        n_cameras, n_gaussians = means2d.shape[:2]
        grad_pixels = layout.to_tiles(grad_colors)
        grad_alpha_pixels = layout.to_tiles(grad_alphas[..., 0])
        camera = torch.arange(layout.n_tiles, device=means2d.device) // (layout.tiles_w * layout.tiles_h)
        behind = -grad_alpha_pixels * t_final
        if backgrounds is not None:
            behind = behind + (grad_pixels * backgrounds[camera][:, None, :]).sum(-1) * t_final
        flat = (means2d.reshape(-1, 2), conics.reshape(-1, 3), colors.reshape(n_cameras * n_gaussians, colors.shape[-1]),
                opacities.reshape(-1))
        grads = _backward_chunks(layout, flatten_ids, *flat, t_final, last_end, grad_pixels, behind)
        v_means, v_conics, v_colors, v_opacities, v_means_abs = grads
        if ctx.absgrad:
            means2d.absgrad = v_means_abs.reshape(means2d.shape)
        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            per_tile = (grad_pixels * t_final[:, :, None]).sum(1)
            v_backgrounds = torch.zeros_like(backgrounds).index_add_(0, camera, per_tile)
        needs = ctx.needs_input_grad
        return (v_means.reshape(means2d.shape) if needs[0] else None,
                v_conics.reshape(conics.shape) if needs[1] else None,
                v_colors.reshape(colors.shape) if needs[2] else None,
                v_opacities.reshape(opacities.shape) if needs[3] else None,
                v_backgrounds, None, None, None, None, None, None)


def _backward_chunks(layout: _TileLayout, flatten_ids, means, conics, colors, opacities,
                     t_final, last_end, grad_pixels, behind):
    """Walk each tile's chunks back to front; per-Gaussian gradients, each ``[C*N, ...]``.

    ``behind [tiles, P]`` is ``g . (colour composited behind)`` at the last contributor,
    with ``-dL/d(alpha) * T_final`` folded in (``alpha = 1 - T_final`` depends on every alpha).
    """
    v_means, v_means_abs = torch.zeros_like(means), torch.zeros_like(means)
    v_conics, v_colors, v_opacities = torch.zeros_like(conics), torch.zeros_like(colors), torch.zeros_like(opacities)
    slots = torch.arange(REFERENCE_CHUNK, device=means.device)
    chunks_needed = (last_end.amax(dim=1).long() + REFERENCE_CHUNK - 1) // REFERENCE_CHUNK
    t_after = t_final.clone()
    behind = behind.clone()
    for chunk in range(int(chunks_needed.max()) - 1 if chunks_needed.numel() else -1, -1, -1):
        active = torch.nonzero(chunks_needed > chunk).squeeze(1)
        for tiles in layout.steps(active):
            part = _Chunk(layout, tiles, chunk, flatten_ids, means, conics, opacities)
            contributes = part.valid & (chunk * REFERENCE_CHUNK + slots < last_end[tiles][:, :, None])
            alpha = torch.where(contributes, part.alpha, 0.0)
            one_minus = 1.0 - alpha
            products = torch.cumprod(one_minus, dim=-1)
            t_start = t_after[tiles] / products[:, :, -1]
            t_excl = t_start[:, :, None] * torch.cat([torch.ones_like(products[:, :, :1]), products[:, :, :-1]], -1)
            weight = alpha * t_excl
            grad = grad_pixels[tiles]
            chunk_colors = colors[part.ids]
            grad_dot_color = torch.bmm(grad, chunk_colors.transpose(1, 2))
            weighted = weight * grad_dot_color
            running = torch.cumsum(weighted, dim=-1)
            total = running[:, :, -1:]
            behind_each = behind[tiles][:, :, None] + (total - running)
            v_alpha = torch.where(contributes, t_excl * grad_dot_color - behind_each / one_minus, 0.0)
            through = contributes & (part.raw_alpha <= ALPHA_MAX)
            v_sigma = torch.where(through, -part.raw_alpha * v_alpha, 0.0)
            v_opacity = torch.where(through, part.vis * v_alpha, 0.0).sum(1)
            dx, dy = part.dx, part.dy
            v_mean_x = v_sigma * (part.a * dx + part.b * dy)
            v_mean_y = v_sigma * (part.b * dx + part.c * dy)
            ids = part.ids.reshape(-1)
            v_means.index_add_(0, ids, torch.stack([v_mean_x.sum(1), v_mean_y.sum(1)], -1).reshape(-1, 2))
            v_means_abs.index_add_(0, ids, torch.stack([v_mean_x.abs().sum(1), v_mean_y.abs().sum(1)], -1)
                                   .reshape(-1, 2))
            v_conic = torch.stack([0.5 * (v_sigma * dx * dx).sum(1), (v_sigma * dx * dy).sum(1),
                                   0.5 * (v_sigma * dy * dy).sum(1)], -1)
            v_conics.index_add_(0, ids, v_conic.reshape(-1, 3))
            v_colors.index_add_(0, ids, torch.bmm(weight.transpose(1, 2), grad).reshape(-1, colors.shape[1]))
            v_opacities.index_add_(0, ids, v_opacity.reshape(-1))
            t_after[tiles] = t_start
            behind[tiles] = behind[tiles] + total[:, :, 0]
    return v_means, v_conics, v_colors, v_opacities, v_means_abs
