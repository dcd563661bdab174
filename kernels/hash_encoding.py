"""Triton kernels for the multiresolution hash encoding (tiny-cuda-nn ``HashGrid`` semantics).

The specification and the PyTorch reference are in :mod:`render3d.ops.hash_encoding`; the
level layout reaches these kernels as small per-level tables (scale as float64, resolution,
size, offset as int64, hashed as int32). One program handles ``BLOCK`` points and loops over
the levels and the 8 corners, like tcnn's kernels (which put one level per block instead).

- Positions: ``fma(x, scale, 0.5)`` computed in float64 and rounded once to float32, exactly
  as the reference, so cells and indices agree bit for bit.
- Indices: int64 throughout; the hash multiplies in int64 (wrapping) and keeps the low bits
  with the power-of-two mask of the level, which equals tcnn's uint32 arithmetic.
- Backward: one kernel; the table gradient is accumulated with atomics into a buffer the
  launcher zeroes, the input gradient (only when asked) is summed per point over levels.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from render3d.kernels._variants import declare, product
from render3d.ops.hash_encoding import FEATURES_PER_LEVEL_CHOICES

PRIME_Y = tl.constexpr(2654435761)
PRIME_Z = tl.constexpr(805459861)
BLOCK_POINTS = 128

Levels = tuple[tuple[float, int, int, int, bool], ...]


@triton.jit
def _level_cell(x_ptr, points, mask, scale_ptr, resolution_ptr, size_ptr, offset_ptr, hashed_ptr, level):
    """Per-level constants and each point's cell: integer corner 0 and fractions."""
    scale = tl.load(scale_ptr + level)
    resolution = tl.load(resolution_ptr + level)
    size = tl.load(size_ptr + level)
    offset = tl.load(offset_ptr + level)
    hashed = tl.load(hashed_ptr + level)
    px = (tl.load(x_ptr + points * 3 + 0, mask=mask, other=0.0).to(tl.float64) * scale + 0.5).to(tl.float32)
    py = (tl.load(x_ptr + points * 3 + 1, mask=mask, other=0.0).to(tl.float64) * scale + 0.5).to(tl.float32)
    pz = (tl.load(x_ptr + points * 3 + 2, mask=mask, other=0.0).to(tl.float64) * scale + 0.5).to(tl.float32)
    fx = tl.floor(px)
    fy = tl.floor(py)
    fz = tl.floor(pz)
    return (scale, resolution, size, offset, hashed, fx.to(tl.int64), fy.to(tl.int64), fz.to(tl.int64),
            px - fx, py - fy, pz - fz)


@triton.jit
def _corner_entry(cx, cy, cz, resolution, size, offset, hashed):
    """Flat-table entry of corner ``(cx, cy, cz)`` (int64): tcnn's ``grid_index`` + offset."""
    hashed_raw = cx ^ (cy * PRIME_Y) ^ (cz * PRIME_Z)
    dense_raw = cx + cy * resolution + cz * resolution * resolution
    raw = tl.where(hashed != 0, hashed_raw, dense_raw)
    power_of_two = (size & (size - 1)) == 0
    # Dense levels that are not powers of two satisfy raw < 2 * size (see the reference's _wrap).
    wrapped = tl.where(power_of_two, raw & (size - 1), tl.where(raw >= size, raw - size, raw))
    return wrapped + offset


@triton.jit
def _corner(corner: tl.constexpr, ix, iy, iz, wx, wy, wz):
    """Integer coordinates and trilinear weight of corner ``4*dz + 2*dy + dx``."""
    dx: tl.constexpr = corner & 1
    dy: tl.constexpr = (corner >> 1) & 1
    dz: tl.constexpr = (corner >> 2) & 1
    weight_x = wx if dx else 1.0 - wx
    weight_y = wy if dy else 1.0 - wy
    weight_z = wz if dz else 1.0 - wz
    return ix + dx, iy + dy, iz + dz, weight_z * weight_y * weight_x


# Positions, table and outputs share one float dtype; the level tables are fixed (see _level_tables).
_LEVEL_TYPES = {"scale_ptr": "*fp64", "resolution_ptr size_ptr offset_ptr": "*i64", "hashed_ptr": "*i32",
                "n_points n_levels": "i32"}


@declare(
    types={"x_ptr table_ptr out_ptr": ["*fp32", "*fp64"], **_LEVEL_TYPES},
    constexprs=product(F=FEATURES_PER_LEVEL_CHOICES, BLOCK=[BLOCK_POINTS]),
)
@triton.jit
def _hash_encode_fwd_kernel(
    x_ptr, table_ptr, out_ptr, scale_ptr, resolution_ptr, size_ptr, offset_ptr, hashed_ptr, n_points, n_levels,
    F: tl.constexpr, BLOCK: tl.constexpr,
):
    points = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = points < n_points
    features = tl.arange(0, F)
    for level in range(n_levels):
        _, resolution, size, offset, hashed, ix, iy, iz, wx, wy, wz = _level_cell(
            x_ptr, points, mask, scale_ptr, resolution_ptr, size_ptr, offset_ptr, hashed_ptr, level)
        acc = tl.zeros([BLOCK, F], dtype=tl.float32)
        for corner in tl.static_range(8):
            cx, cy, cz, weight = _corner(corner, ix, iy, iz, wx, wy, wz)
            entry = _corner_entry(cx, cy, cz, resolution, size, offset, hashed)
            values = tl.load(table_ptr + entry[:, None] * F + features[None, :], mask=mask[:, None], other=0.0)
            acc += weight[:, None] * values
        tl.store(out_ptr + points[:, None] * (n_levels * F) + level * F + features[None, :],
                 acc.to(out_ptr.dtype.element_ty), mask=mask[:, None])


@declare(
    types={"x_ptr table_ptr grad_out_ptr grad_table_ptr grad_x_ptr": ["*fp32", "*fp64"], **_LEVEL_TYPES},
    constexprs=[row for row in product(F=FEATURES_PER_LEVEL_CHOICES, BLOCK=[BLOCK_POINTS], TABLE_GRAD=[False, True],
                                       INPUT_GRAD=[False, True]) if row["TABLE_GRAD"] or row["INPUT_GRAD"]],
)
@triton.jit
def _hash_encode_bwd_kernel(
    x_ptr, table_ptr, grad_out_ptr, grad_table_ptr, grad_x_ptr, scale_ptr, resolution_ptr, size_ptr,
    offset_ptr, hashed_ptr, n_points, n_levels,
    F: tl.constexpr, BLOCK: tl.constexpr, TABLE_GRAD: tl.constexpr, INPUT_GRAD: tl.constexpr,
):
    points = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = points < n_points
    features = tl.arange(0, F)
    grad_px = tl.zeros([BLOCK], dtype=tl.float32)
    grad_py = tl.zeros([BLOCK], dtype=tl.float32)
    grad_pz = tl.zeros([BLOCK], dtype=tl.float32)
    for level in range(n_levels):
        scale, resolution, size, offset, hashed, ix, iy, iz, wx, wy, wz = _level_cell(
            x_ptr, points, mask, scale_ptr, resolution_ptr, size_ptr, offset_ptr, hashed_ptr, level)
        grad = tl.load(grad_out_ptr + points[:, None] * (n_levels * F) + level * F + features[None, :],
                       mask=mask[:, None], other=0.0).to(tl.float32)
        dfx = tl.zeros([BLOCK], dtype=tl.float32)
        dfy = tl.zeros([BLOCK], dtype=tl.float32)
        dfz = tl.zeros([BLOCK], dtype=tl.float32)
        for corner in tl.static_range(8):
            cx, cy, cz, weight = _corner(corner, ix, iy, iz, wx, wy, wz)
            entry = _corner_entry(cx, cy, cz, resolution, size, offset, hashed)
            pointers = entry[:, None] * F + features[None, :]
            if TABLE_GRAD:
                # Pure accumulation, ordered with nothing else: relaxed atomics (no fences).
                tl.atomic_add(grad_table_ptr + pointers, weight[:, None] * grad, mask=mask[:, None], sem="relaxed")
            if INPUT_GRAD:
                values = tl.load(table_ptr + pointers, mask=mask[:, None], other=0.0).to(tl.float32)
                slope = tl.sum(values * grad, axis=1)
                # d(weight)/d(frac_axis): the other two axes' weights, signed by the corner side.
                wyz = (wy if (corner >> 1) & 1 else 1.0 - wy) * (wz if (corner >> 2) & 1 else 1.0 - wz)
                wxz = (wx if corner & 1 else 1.0 - wx) * (wz if (corner >> 2) & 1 else 1.0 - wz)
                wxy = (wx if corner & 1 else 1.0 - wx) * (wy if (corner >> 1) & 1 else 1.0 - wy)
                dfx += (slope * wyz) if corner & 1 else -(slope * wyz)
                dfy += (slope * wxz) if (corner >> 1) & 1 else -(slope * wxz)
                dfz += (slope * wxy) if (corner >> 2) & 1 else -(slope * wxy)
        if INPUT_GRAD:
            level_scale = scale.to(tl.float32)
            grad_px += dfx * level_scale
            grad_py += dfy * level_scale
            grad_pz += dfz * level_scale
    if INPUT_GRAD:
        tl.store(grad_x_ptr + points * 3 + 0, grad_px.to(grad_x_ptr.dtype.element_ty), mask=mask)
        tl.store(grad_x_ptr + points * 3 + 1, grad_py.to(grad_x_ptr.dtype.element_ty), mask=mask)
        tl.store(grad_x_ptr + points * 3 + 2, grad_pz.to(grad_x_ptr.dtype.element_ty), mask=mask)


@declare(
    types={"x_ptr weights_ptr": ["*fp32", "*fp64"], "entries_ptr": "*i64", **_LEVEL_TYPES},
    constexprs=[{"BLOCK": BLOCK_POINTS}],
)
@triton.jit
def _grid_indices_kernel(
    x_ptr, entries_ptr, weights_ptr, scale_ptr, resolution_ptr, size_ptr, offset_ptr, hashed_ptr, n_points, n_levels,
    BLOCK: tl.constexpr,
):
    points = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = points < n_points
    for level in range(n_levels):
        _, resolution, size, offset, hashed, ix, iy, iz, wx, wy, wz = _level_cell(
            x_ptr, points, mask, scale_ptr, resolution_ptr, size_ptr, offset_ptr, hashed_ptr, level)
        for corner in tl.static_range(8):
            cx, cy, cz, weight = _corner(corner, ix, iy, iz, wx, wy, wz)
            entry = _corner_entry(cx, cy, cz, resolution, size, offset, hashed)
            slot = points * (n_levels * 8) + level * 8 + corner
            tl.store(entries_ptr + slot, entry, mask=mask)
            tl.store(weights_ptr + slot, weight, mask=mask)


@functools.lru_cache(maxsize=64)
def _level_tables(levels: Levels, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The per-level tables on ``device``: scale f64, resolution/size/offset i64, hashed i32."""
    scales, resolutions, sizes, offsets, hashed = zip(*levels)
    return (
        torch.tensor(scales, dtype=torch.float64, device=device),
        torch.tensor(resolutions, dtype=torch.int64, device=device),
        torch.tensor(sizes, dtype=torch.int64, device=device),
        torch.tensor(offsets, dtype=torch.int64, device=device),
        torch.tensor(hashed, dtype=torch.int32, device=device),
    )


def _grid(n_points: int) -> tuple[int]:
    return (triton.cdiv(n_points, BLOCK_POINTS),)


def hash_encode_forward(x: torch.Tensor, table: torch.Tensor, levels: Levels) -> torch.Tensor:
    """Encode ``x [N, 3]`` (float32, in [0,1]^3) with ``table [n_entries, F]`` float32;
    returns ``[N, L*F]`` float32, level-major. ``levels``: see :func:`hash_encode_triton`."""
    x, table = x.contiguous(), table.contiguous()
    n_points, features = x.shape[0], table.shape[1]
    out = torch.empty((n_points, len(levels) * features), dtype=table.dtype, device=x.device)
    if n_points:
        _hash_encode_fwd_kernel[_grid(n_points)](
            x, table, out, *_level_tables(levels, x.device), n_points, len(levels), F=features, BLOCK=BLOCK_POINTS,
        )
    return out


def hash_encode_backward(
    x: torch.Tensor, table: torch.Tensor, levels: Levels, grad_out: torch.Tensor, table_grad: bool, input_grad: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(grad_x [N, 3] or None, grad_table [n_entries, F] or None)`` for ``grad_out [N, L*F]``.
    The table gradient is zeroed here, then accumulated with atomics."""
    x, table, grad_out = x.contiguous(), table.contiguous(), grad_out.contiguous()
    n_points, features = x.shape[0], table.shape[1]
    grad_table = torch.zeros_like(table) if table_grad else None
    grad_x = torch.empty_like(x) if input_grad else None
    if n_points and (table_grad or input_grad):
        _hash_encode_bwd_kernel[_grid(n_points)](
            x, table, grad_out, grad_table if table_grad else table, grad_x if input_grad else x,
            *_level_tables(levels, x.device), n_points, len(levels),
            F=features, BLOCK=BLOCK_POINTS, TABLE_GRAD=table_grad, INPUT_GRAD=input_grad,
        )
    elif input_grad:
        grad_x.zero_()
    return grad_x, grad_table


def grid_indices_triton(x: torch.Tensor, levels: Levels) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernels' corner entries ``[N, L, 8]`` int64 (into the ``[n_entries, F]`` table)
    and weights ``[N, L, 8]`` float32, to check against the reference bit for bit."""
    x = x.contiguous()
    n_points = x.shape[0]
    entries = torch.empty((n_points, len(levels), 8), dtype=torch.int64, device=x.device)
    weights = torch.empty((n_points, len(levels), 8), dtype=x.dtype, device=x.device)
    if n_points:
        _grid_indices_kernel[_grid(n_points)](
            x, entries, weights, *_level_tables(levels, x.device), n_points, len(levels), BLOCK=BLOCK_POINTS,
        )
    return entries, weights


class HashEncodeFunction(torch.autograd.Function):
    """``hash_encode_triton`` as an autograd Function (once differentiable)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, levels: Levels) -> torch.Tensor:
        ctx.save_for_backward(x, table)
        ctx.levels = levels
        return hash_encode_forward(x, table, levels)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, table = ctx.saved_tensors
        grad_x, grad_table = hash_encode_backward(
            x, table, ctx.levels, grad_out, ctx.needs_input_grad[1], ctx.needs_input_grad[0])
        return grad_x, grad_table, None


def hash_encode_triton(x: torch.Tensor, table: torch.Tensor, levels: Levels) -> torch.Tensor:
    """Differentiable hash encoding on the Triton kernels.

    Args:
        x: ``[N, 3]`` float32 positions in ``[0, 1]^3`` (float64 is accepted and computed
            in float32, positions included).
        table: ``[n_entries, F]`` table of x's dtype (tcnn's flat parameters viewed by entry).
        levels: per level ``(scale, resolution, size, offset, hashed)``, as produced by
            ``render3d.ops.hash_encoding.kernel_levels``.

    Returns:
        ``[N, L*F]`` in the table's dtype, level-major; gradients for ``x`` and ``table``
        (once differentiable: second derivatives need the reference,
        ``RENDER3D_BACKEND=torch``).
    """
    return HashEncodeFunction.apply(x, table, levels)
