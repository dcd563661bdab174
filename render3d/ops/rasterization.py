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

Both implementations process a list in chunks: for a chunk the per-(pixel, Gaussian) alphas
are computed at once, the transmittance after each Gaussian is ``T * cumprod(1 - alpha)``
(skipped Gaussians contribute ``1``), and the first entry whose transmittance reaches
``TRANSMITTANCE_MIN`` ends the pixel, exactly as the sequential rule. The forward pass records
per pixel the final transmittance and where its list ended (the reference: the stopping entry;
the kernel: one past the last contributor); the backward pass walks the chunks from the last
one any pixel needs back to the first, recovering the transmittance in front of a chunk as
``T_after / prod(1 - alpha)`` and accumulating the colour behind each Gaussian.

The Triton kernel runs one program per tile over the tile's list. The reference runs the same
lists cut down per 4x4 pixel block (entries provably skipped at every pixel of a block are
dropped, see :class:`_BlockLists`), so both have the same contributors per pixel; they differ
only in float rounding (``cumprod`` order).

``absgrad=True`` additionally sums, per Gaussian, the absolute value of each pixel's
contribution to ``dL/dmeans2d`` (per coordinate) and stores the ``[C, N, 2]`` result as the
attribute ``means2d.absgrad`` during backward (the densification statistic of
"AbsGS"/gsplat); each backward pass overwrites it.
"""
from __future__ import annotations

import math

import torch

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton
from render3d.ops.tile_binning import tile_grid

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4

# Reference work layout (tuned on the 2-core CPU, see benchmarks/RESULTS.md):
# list entries per chunk, pixel block edge, and (pixel, entry) pairs evaluated per step.
REFERENCE_CHUNK = 32
BLOCK_EDGE = 4
REFERENCE_STEP_ELEMENTS = 1 << 20


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
        colors: ``[C, N, D]`` float features to composite (RGB, RGB + depth, ...; the reference
            takes any ``D``, the Triton kernel at most 16).
        opacities: ``[C, N]`` float opacities in ``[0, 1]``.
        width, height: image size in pixels.
        tile_size: tile edge in pixels, the one used for binning (4, 8 or 16 for Triton).
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
        (torch.Size([1, 16, 16, 3]), 0.4877)
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

    Vectorized over 4x4 pixel blocks and chunks of ``REFERENCE_CHUNK`` list entries; a block
    leaves the loop once every pixel has stopped or its list is exhausted. The backward pass
    is hand-written (:class:`_RasterizeReference`) and runs in the input dtype.
    """
    return _RasterizeReference.apply(means2d, conics, colors, opacities, backgrounds, width, height,
                                     tile_size, isect_offsets, flatten_ids, absgrad)


class _BlockLists:
    """The reference's unit of work: tiles cut into ``block x block`` pixel blocks, each with its own list.

    A block's list is its tile's list (same order) without the Gaussians that are skipped at
    every pixel of the block: those whose ``alpha >= ALPHA_MIN`` region, the ellipse
    ``sigma <= log(opacity / ALPHA_MIN)``, misses the block's pixel centres by a safety margin
    far above float rounding (Gaussians with an indefinite or near-singular conic are kept in
    every block of their tiles). Dropping entries that contribute nothing changes no pixel's
    contributors, so results equal the per-tile algorithm's; it just evaluates 3-4x fewer
    (pixel, Gaussian) pairs and lets small blocks stop early.

    Blocks are numbered ``(tile, block_y, block_x)`` row-major, pixels row-major in a block.
    """

    def __init__(self, n_cameras: int, width: int, height: int, tile_size: int, isect_offsets: torch.Tensor,
                 flatten_ids: torch.Tensor, means: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor):
        device = means.device
        self.n_cameras, self.width, self.height, self.tile_size = n_cameras, width, height, tile_size
        self.tiles_w, self.tiles_h = tile_grid(width, height, tile_size)
        self.block = math.gcd(tile_size, BLOCK_EDGE)
        self.blocks_per_edge = tile_size // self.block
        tiles_per_camera = self.tiles_w * self.tiles_h
        blocks_per_tile = self.blocks_per_edge**2
        self.n_blocks = n_cameras * tiles_per_camera * blocks_per_tile
        block = torch.arange(self.n_blocks, device=device)
        tile, sub = block // blocks_per_tile, block % blocks_per_tile
        self.camera = tile // tiles_per_camera
        origin_x = (tile % tiles_per_camera) % self.tiles_w * tile_size + sub % self.blocks_per_edge * self.block
        origin_y = (tile % tiles_per_camera) // self.tiles_w * tile_size + sub // self.blocks_per_edge * self.block
        local = torch.arange(self.block * self.block, device=device)
        pixel_x = origin_x[:, None] + local % self.block
        pixel_y = origin_y[:, None] + local // self.block
        self.inside = (pixel_x < width) & (pixel_y < height)
        self.centre_x = pixel_x.to(means.dtype) + 0.5
        self.centre_y = pixel_y.to(means.dtype) + 0.5
        with torch.no_grad():
            self.starts, self.ends, self.ids = self._block_lists(isect_offsets, flatten_ids, means.detach(),
                                                                 conics.detach(), opacities.detach())

    def _block_lists(self, isect_offsets, flatten_ids, means, conics, opacities):
        """``(starts [blocks], ends [blocks], ids [E])`` int64: the block lists, concatenated."""
        device = means.device
        n_isects = flatten_ids.numel()
        tile_starts = isect_offsets.reshape(-1).long()
        tile_ends = torch.cat([tile_starts[1:], tile_starts.new_tensor([n_isects])])
        n_tiles = tile_starts.numel()
        tile_of = torch.repeat_interleave(torch.arange(n_tiles, device=device), tile_ends - tile_starts,
                                          output_size=n_isects)
        tile_in_camera = tile_of % (self.tiles_w * self.tiles_h)
        origin_x = (tile_in_camera % self.tiles_w * self.tile_size).to(means.dtype)
        origin_y = (tile_in_camera // self.tiles_w * self.tile_size).to(means.dtype)
        mean, conic, opacity = means[flatten_ids], conics[flatten_ids], opacities[flatten_ids]
        a, b, c = conic.unbind(-1)
        det = a * c - b * b
        bounded = (det > 1e-4 * a * c) & (a > 0)
        reach = torch.log(opacity.clamp(min=ALPHA_MIN) / ALPHA_MIN)
        safe_det = torch.where(bounded, det, torch.ones_like(det))
        half_w = torch.sqrt(2.0 * reach * c.abs() / safe_det) * 1.01 + 0.05
        half_h = torch.sqrt(2.0 * reach * a.abs() / safe_det) * 1.01 + 0.05
        last_block = self.blocks_per_edge - 1

        def block_range(centre, half, origin):
            low = torch.floor((centre - half - 0.5 - origin) / self.block)
            high = torch.floor((centre + half - 0.5 - origin) / self.block)
            low = torch.where(bounded, low, torch.zeros_like(low)).clamp(min=0)
            high = torch.where(bounded, high, torch.full_like(high, last_block)).clamp(max=last_block)
            return low.long(), high.long()

        low_x, high_x = block_range(mean[:, 0], half_w, origin_x)
        low_y, high_y = block_range(mean[:, 1], half_h, origin_y)
        sub = torch.arange(self.blocks_per_edge**2, device=device)
        sub_x, sub_y = sub % self.blocks_per_edge, sub // self.blocks_per_edge
        member = ((sub_x >= low_x[:, None]) & (sub_x <= high_x[:, None]) & (sub_y >= low_y[:, None])
                  & (sub_y <= high_y[:, None]) & (opacity >= ALPHA_MIN)[:, None])
        running = torch.cat([member.new_zeros(1, sub.numel(), dtype=torch.int64),
                             torch.cumsum(member.t().contiguous(), dim=1).t()])
        before_tile = running[tile_starts]
        block_counts = (running[tile_ends] - before_tile).reshape(-1)
        block_ends = torch.cumsum(block_counts, 0)
        block_starts = block_ends - block_counts
        entry, entry_sub = torch.nonzero(member, as_tuple=True)
        entry_tile = tile_of[entry]
        rank = running[entry + 1, entry_sub] - before_tile[entry_tile, entry_sub] - 1
        ids = torch.empty(entry.numel(), dtype=torch.int64, device=device)
        ids[block_starts[entry_tile * sub.numel() + entry_sub] + rank] = flatten_ids[entry]
        return block_starts, block_ends, ids

    def to_blocks(self, image: torch.Tensor) -> torch.Tensor:
        """``[C, H, W, *F]`` -> ``[blocks, pixels, *F]``, zero outside the image."""
        features = image.shape[3:]
        edge, size, count = self.block, self.tile_size, self.blocks_per_edge
        padded = image.new_zeros((self.n_cameras, self.tiles_h * size, self.tiles_w * size) + features)
        padded[:, : self.height, : self.width] = image
        split = padded.reshape((self.n_cameras, self.tiles_h, count, edge, self.tiles_w, count, edge) + features)
        order = (0, 1, 4, 2, 5, 3, 6) + tuple(range(7, 7 + len(features)))
        return split.permute(order).reshape((self.n_blocks, edge * edge) + features)

    def to_image(self, blocks: torch.Tensor) -> torch.Tensor:
        """``[blocks, pixels, *F]`` -> ``[C, H, W, *F]``."""
        features = blocks.shape[2:]
        edge, size, count = self.block, self.tile_size, self.blocks_per_edge
        split = blocks.reshape((self.n_cameras, self.tiles_h, self.tiles_w, count, count, edge, edge) + features)
        order = (0, 1, 3, 5, 2, 4, 6) + tuple(range(7, 7 + len(features)))
        image = split.permute(order).reshape((self.n_cameras, self.tiles_h * size, self.tiles_w * size) + features)
        return image[:, : self.height, : self.width]

    def steps(self, blocks: torch.Tensor):
        """Split a block index tensor into steps of about ``REFERENCE_STEP_ELEMENTS`` (pixel, slot) pairs."""
        per_step = max(1, REFERENCE_STEP_ELEMENTS // (self.block * self.block * REFERENCE_CHUNK))
        return torch.split(blocks, per_step)


class _Chunk:
    """One chunk of ``REFERENCE_CHUNK`` list entries for a set of blocks: alphas per (block, pixel, slot).

    ``-sigma`` is evaluated as ``(-a/2 * dx) * dx + (-c/2 * dy) * dy + (-b * dx) * dy``, bit for
    bit the documented expression (halving and negation are exact), with fewer passes.
    Slots past a block's list get opacity 0, hence are skipped like any faint Gaussian.
    """

    def __init__(self, lists: _BlockLists, blocks: torch.Tensor, chunk: int, means: torch.Tensor,
                 conics: torch.Tensor, opacities: torch.Tensor):
        slot = lists.starts[blocks, None] + chunk * REFERENCE_CHUNK + torch.arange(REFERENCE_CHUNK,
                                                                                    device=blocks.device)
        in_list = slot < lists.ends[blocks, None]
        self.ids = lists.ids.index_select(0, slot.clamp(max=lists.ids.numel() - 1).reshape(-1))
        mean = means.index_select(0, self.ids).reshape(slot.shape + (2,))
        conic = conics.index_select(0, self.ids).reshape(slot.shape + (3,))
        opacity = opacities.index_select(0, self.ids).reshape(slot.shape) * in_list
        self.dx = mean[:, None, :, 0] - lists.centre_x.index_select(0, blocks)[:, :, None]
        self.dy = mean[:, None, :, 1] - lists.centre_y.index_select(0, blocks)[:, :, None]
        self.a, self.b, self.c = (conic[:, None, :, i] for i in range(3))
        power = (-0.5 * self.a * self.dx).mul_(self.dx)
        power.add_((-0.5 * self.c * self.dy).mul_(self.dy)).add_((-self.b * self.dx).mul_(self.dy))
        self.vis = torch.exp(power)
        self.opacity = opacity[:, None, :]
        self.raw_alpha = self.opacity * self.vis
        self.valid = (power <= 0) & (self.raw_alpha >= ALPHA_MIN)
        self.alpha = self.raw_alpha.clamp(max=ALPHA_MAX).mul_(self.valid)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Rows of ``values [C*N, F]`` for this chunk's slots: ``[blocks, slots, F]``."""
        return values.index_select(0, self.ids).reshape(-1, REFERENCE_CHUNK, values.shape[-1])


def _forward_chunks(lists: _BlockLists, means, conics, colors, opacities):
    """Front-to-back compositing of every block.

    Returns ``colour [blocks, P, D]``, the final transmittance ``[blocks, P]`` and
    ``stop [blocks, P]`` int64: the list index of the entry that stopped the pixel (the list
    length if none did; 0 outside the image). The contributors are the valid entries before it.
    """
    n_pixels = lists.block * lists.block
    dtype, device = means.dtype, means.device
    transmittance = torch.ones(lists.n_blocks, n_pixels, dtype=dtype, device=device)
    colour = torch.zeros(lists.n_blocks, n_pixels, colors.shape[-1], dtype=dtype, device=device)
    lengths = lists.ends - lists.starts
    stop = torch.where(lists.inside, lengths[:, None], 0)
    alive = lists.inside.clone()
    active = torch.nonzero(lengths > 0).squeeze(1)
    chunk = 0
    while active.numel():
        for blocks in lists.steps(active):
            part = _Chunk(lists, blocks, chunk, means, conics, opacities)
            t_in = transmittance.index_select(0, blocks)
            was_alive = alive.index_select(0, blocks)
            t_start = torch.where(was_alive, t_in, 0.0)
            t_incl = torch.cumprod(1.0 - part.alpha, dim=-1).mul_(t_start[:, :, None])
            # Transmittance never rises along the list and skipped entries keep it, so the
            # first entry at or below the threshold is a valid Gaussian: the stopping one.
            before_stop = t_incl > TRANSMITTANCE_MIN
            t_excl = torch.cat([t_start[:, :, None], t_incl[:, :, :-1]], dim=-1)
            weight = t_excl.mul_(part.alpha).mul_(before_stop)
            colour.index_add_(0, blocks, torch.bmm(weight, part.gather(colors)))
            n_before = before_stop.sum(-1)
            last_kept = t_incl.gather(-1, (n_before - 1).clamp(min=0)[:, :, None])[:, :, 0]
            transmittance[blocks] = torch.where(was_alive & (n_before > 0), last_kept, t_in)
            stopped = was_alive & (n_before < REFERENCE_CHUNK)
            stop[blocks] = torch.where(stopped, n_before + chunk * REFERENCE_CHUNK, stop.index_select(0, blocks))
            alive[blocks] = was_alive & ~stopped
        chunk += 1
        active = active[(lengths[active] > chunk * REFERENCE_CHUNK) & alive[active].any(dim=1)]
    return colour, transmittance, stop


class _RasterizeReference(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, width, height, tile_size,
                isect_offsets, flatten_ids, absgrad):
        flat = _flatten(means2d, conics, colors, opacities)
        lists = _BlockLists(means2d.shape[0], width, height, tile_size, isect_offsets, flatten_ids,
                            flat[0], flat[1], flat[3])
        colour, transmittance, stop = _forward_chunks(lists, *flat)
        if backgrounds is not None:
            colour = colour + transmittance[:, :, None] * backgrounds[lists.camera][:, None, :]
        ctx.lists = lists
        ctx.absgrad = absgrad
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, transmittance, stop)
        render_colors = lists.to_image(colour).contiguous()
        render_alphas = (1.0 - lists.to_image(transmittance))[..., None].contiguous()
        return render_colors, render_alphas

    @staticmethod
    def backward(ctx, grad_colors, grad_alphas):
        means2d, conics, colors, opacities, backgrounds, t_final, stop = ctx.saved_tensors
        lists: _BlockLists = ctx.lists
        grad_pixels = lists.to_blocks(grad_colors)
        behind = -lists.to_blocks(grad_alphas[..., 0]) * t_final
        if backgrounds is not None:
            behind = behind + (grad_pixels * backgrounds[lists.camera][:, None, :]).sum(-1) * t_final
        flat = _flatten(means2d, conics, colors, opacities)
        grads = _backward_chunks(lists, *flat, t_final, stop, grad_pixels, behind, ctx.absgrad)
        n_channels = colors.shape[-1]
        v_means, v_conics, v_colors, v_opacities = grads[:, :2], grads[:, 2:5], grads[:, 5:5 + n_channels], \
            grads[:, 5 + n_channels]
        if ctx.absgrad:
            means2d.absgrad = grads[:, 6 + n_channels:].reshape(means2d.shape)
        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            per_block = (grad_pixels * t_final[:, :, None]).sum(1)
            v_backgrounds = torch.zeros_like(backgrounds).index_add_(0, lists.camera, per_block)
        needs = ctx.needs_input_grad
        return (v_means.reshape(means2d.shape) if needs[0] else None,
                v_conics.reshape(conics.shape) if needs[1] else None,
                v_colors.reshape(colors.shape) if needs[2] else None,
                v_opacities.reshape(opacities.shape) if needs[3] else None,
                v_backgrounds, None, None, None, None, None, None)


def _flatten(means2d, conics, colors, opacities):
    """Per-(camera, Gaussian) rows: ``[C*N, 2]``, ``[C*N, 3]``, ``[C*N, D]``, ``[C*N]``."""
    return (means2d.reshape(-1, 2), conics.reshape(-1, 3), colors.reshape(-1, colors.shape[-1]),
            opacities.reshape(-1))


def _backward_chunks(lists: _BlockLists, means, conics, colors, opacities, t_final, stop, grad_pixels, behind,
                     absgrad: bool):
    """Walk each block's chunks back to front; per-Gaussian gradients.

    ``behind [blocks, P]`` is ``g . (colour composited behind)`` at the last contributor,
    with ``-dL/d(alpha) * T_final`` folded in (``alpha = 1 - T_final`` depends on every alpha).
    Per-pixel terms are summed over the block's pixels before the scatter: with
    ``q = dL/dalpha * exp(-sigma)`` (0 where alpha is clamped or the entry does not contribute),
    ``dL/dsigma = -opacity * q``, so ``dL/dmean = -opacity * (a S_x + b S_y, b S_x + c S_y)``
    and ``dL/dconic = -opacity * (S_xx / 2, S_xy, S_yy / 2)`` with ``S_x = sum(q dx)``,
    ``S_xy = sum(q dx dy)`` etc. Returns ``[C*N, 2 + 3 + D + 1 (+ 2 with absgrad)]``: the
    gradients of mean, conic, colour, opacity (and the absolute mean gradient) side by side.
    """
    n_channels = colors.shape[1]
    grads = torch.zeros(means.shape[0], 6 + n_channels + (2 if absgrad else 0), dtype=means.dtype,
                        device=means.device)
    slots = torch.arange(REFERENCE_CHUNK, device=means.device)
    chunks_needed = (stop.amax(dim=1) + REFERENCE_CHUNK - 1) // REFERENCE_CHUNK
    t_after = t_final.clone()
    behind = behind.clone()
    for chunk in range(int(chunks_needed.max()) - 1 if chunks_needed.numel() else -1, -1, -1):
        active = torch.nonzero(chunks_needed > chunk).squeeze(1)
        for blocks in lists.steps(active):
            part = _Chunk(lists, blocks, chunk, means, conics, opacities)
            before_stop = chunk * REFERENCE_CHUNK + slots < stop.index_select(0, blocks)[:, :, None]
            alpha = part.alpha * before_stop
            one_minus = 1.0 - alpha
            products = torch.cumprod(one_minus, dim=-1)
            t_start = t_after.index_select(0, blocks) / products[:, :, -1]
            t_excl = torch.cat([t_start[:, :, None], products[:, :, :-1] * t_start[:, :, None]], -1)
            weight = alpha * t_excl
            grad = grad_pixels.index_select(0, blocks)
            grad_dot_color = torch.bmm(grad, part.gather(colors).transpose(1, 2))
            running = torch.cumsum(weight * grad_dot_color, dim=-1)
            total = running[:, :, -1:]
            behind_each = (total - running).add_(behind.index_select(0, blocks)[:, :, None])
            v_alpha = (t_excl * grad_dot_color).sub_(behind_each.div_(one_minus))
            through = (alpha > 0) & (part.raw_alpha <= ALPHA_MAX)
            q = torch.where(through, part.vis * v_alpha, 0.0)
            q_dx, q_dy = q * part.dx, q * part.dy
            sums = torch.stack([q_dx.sum(1), q_dy.sum(1), (q_dx * part.dx).sum(1), (q_dx * part.dy).sum(1),
                                (q_dy * part.dy).sum(1), q.sum(1)], -1)
            neg_opacity = -part.opacity[:, 0, :]
            a, b, c = part.a[:, 0, :], part.b[:, 0, :], part.c[:, 0, :]
            s_x, s_y, s_xx, s_xy, s_yy, s_1 = sums.unbind(-1)
            columns = [neg_opacity * (a * s_x + b * s_y), neg_opacity * (b * s_x + c * s_y),
                       0.5 * neg_opacity * s_xx, neg_opacity * s_xy, 0.5 * neg_opacity * s_yy]
            rows = [torch.stack(columns, -1), torch.bmm(weight.transpose(1, 2), grad), s_1[:, :, None]]
            if absgrad:
                v_sigma_abs = q.abs_() * part.opacity
                rows.append(torch.stack([(v_sigma_abs * (part.a * part.dx + part.b * part.dy).abs_()).sum(1),
                                         (v_sigma_abs * (part.b * part.dx + part.c * part.dy).abs_()).sum(1)], -1))
            grads.index_add_(0, part.ids, torch.cat(rows, -1).reshape(part.ids.numel(), -1))
            t_after[blocks] = t_start
            behind[blocks] = behind.index_select(0, blocks) + total[:, :, 0]
    return grads
