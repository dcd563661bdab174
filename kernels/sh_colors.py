"""Triton kernels for :func:`render3d.ops.sh_colors`: forward, hand-written backward,
launchers and the autograd Function.

Both kernels hold the SH basis of a block of directions as a ``[BLOCK, KP]`` tile (``KP``:
the number of active basis functions rounded up to a power of two, at least 2) next to the
coefficient tiles of the same Gaussians. The forward runs one program per ``BLOCK``
(camera, Gaussian) pairs. The backward runs one program per ``BLOCK`` Gaussians and loops over
the cameras, summing the coefficient gradients in registers: deterministic, without atomics
or a ``[C,N,K,3]`` buffer. All arithmetic is float32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from render3d.kernels._variants import declare
from render3d.ops.sh_colors import DIRECTION_EPS
from render3d.ops.spherical_harmonics import _C0, _C1, _C2, _C3, num_sh_bases

__all__ = ["sh_colors_triton"]

BLOCK = 64

# The basis constants of render3d.ops.spherical_harmonics, as compile-time constants.
C0 = tl.constexpr(_C0)
C1 = tl.constexpr(_C1)
C20, C21, C22, C23, C24 = (tl.constexpr(value) for value in _C2)
C30, C31, C32, C33, C34, C35, C36 = (tl.constexpr(value) for value in _C3)
EPS = tl.constexpr(DIRECTION_EPS)


@triton.jit
def _put(basis, d_x, d_y, d_z, cols, index: tl.constexpr, value, value_x, value_y, value_z):
    """Write one basis function and its partial derivatives into column ``index`` of the tiles."""
    column = cols[None, :] == index
    return (
        tl.where(column, value[:, None], basis),
        tl.where(column, value_x[:, None], d_x),
        tl.where(column, value_y[:, None], d_y),
        tl.where(column, value_z[:, None], d_z),
    )


@triton.jit
def _sh_tiles(x, y, z, cols, DEGREE: tl.constexpr):
    """``[BLOCK, KP]`` tiles of the basis at unit directions ``(x, y, z)`` and of its partial
    derivatives with respect to x, y and z; columns past the active count are zero."""
    zero = x * 0.0
    tile = zero[:, None] * cols[None, :].to(tl.float32)
    b, bx, by, bz = _put(tile, tile, tile, tile, cols, 0, zero + C0, zero, zero, zero)
    if DEGREE >= 1:
        b, bx, by, bz = _put(b, bx, by, bz, cols, 1, y * (-C1), zero, zero - C1, zero)
        b, bx, by, bz = _put(b, bx, by, bz, cols, 2, z * C1, zero, zero, zero + C1)
        b, bx, by, bz = _put(b, bx, by, bz, cols, 3, x * (-C1), zero - C1, zero, zero)
    if DEGREE >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        b, bx, by, bz = _put(b, bx, by, bz, cols, 4, xy * C20, y * C20, x * C20, zero)
        b, bx, by, bz = _put(b, bx, by, bz, cols, 5, yz * C21, zero, z * C21, y * C21)
        b, bx, by, bz = _put(b, bx, by, bz, cols, 6, (2.0 * zz - xx - yy) * C22,
                             x * (-2.0 * C22), y * (-2.0 * C22), z * (4.0 * C22))  # fmt: skip
        b, bx, by, bz = _put(b, bx, by, bz, cols, 7, xz * C23, z * C23, zero, x * C23)
        b, bx, by, bz = _put(b, bx, by, bz, cols, 8, (xx - yy) * C24, x * (2.0 * C24), y * (-2.0 * C24), zero)
    if DEGREE >= 3:
        b, bx, by, bz = _put(b, bx, by, bz, cols, 9, y * C30 * (3.0 * xx - yy),
                             xy * (6.0 * C30), (xx - yy) * (3.0 * C30), zero)  # fmt: skip
        b, bx, by, bz = _put(b, bx, by, bz, cols, 10, xy * C31 * z, yz * C31, xz * C31, xy * C31)
        b, bx, by, bz = _put(b, bx, by, bz, cols, 11, y * C32 * (4.0 * zz - xx - yy),
                             xy * (-2.0 * C32), (4.0 * zz - xx - 3.0 * yy) * C32, yz * (8.0 * C32))  # fmt: skip
        b, bx, by, bz = _put(b, bx, by, bz, cols, 12, z * C33 * (2.0 * zz - 3.0 * xx - 3.0 * yy),
                             xz * (-6.0 * C33), yz * (-6.0 * C33), (6.0 * zz - 3.0 * xx - 3.0 * yy) * C33)  # fmt: skip
        b, bx, by, bz = _put(b, bx, by, bz, cols, 13, x * C34 * (4.0 * zz - xx - yy),
                             (4.0 * zz - 3.0 * xx - yy) * C34, xy * (-2.0 * C34), xz * (8.0 * C34))  # fmt: skip
        b, bx, by, bz = _put(b, bx, by, bz, cols, 14, z * C35 * (xx - yy),
                             xz * (2.0 * C35), yz * (-2.0 * C35), (xx - yy) * C35)  # fmt: skip
        b, bx, by, bz = _put(b, bx, by, bz, cols, 15, x * C36 * (xx - 3.0 * yy),
                             (xx - yy) * (3.0 * C36), xy * (-6.0 * C36), zero)  # fmt: skip
    return b, bx, by, bz


@triton.jit
def _unit_direction(dirs_ptr, pair, mask):
    """Direction ``/ max(|direction|, EPS)``, that divisor, and whether the length passed EPS."""
    dx = tl.load(dirs_ptr + pair * 3, mask=mask, other=1.0)
    dy = tl.load(dirs_ptr + pair * 3 + 1, mask=mask, other=0.0)
    dz = tl.load(dirs_ptr + pair * 3 + 2, mask=mask, other=0.0)
    length = tl.sqrt_rn(dx * dx + dy * dy + dz * dz)
    long_enough = length >= EPS
    divisor = tl.where(long_enough, length, EPS)
    return tl.div_rn(dx, divisor), tl.div_rn(dy, divisor), tl.div_rn(dz, divisor), divisor, long_enough


@triton.jit
def _coefficient_tiles(coeffs_ptr, gaussian, mask, cols, K, BASES: tl.constexpr):
    """``[BLOCK, KP]`` tiles of the active coefficients of each channel (zero past ``BASES``)."""
    tile_mask = mask[:, None] & (cols[None, :] < BASES)
    base = coeffs_ptr + gaussian[:, None] * (K * 3) + cols[None, :] * 3
    return (
        tl.load(base, mask=tile_mask, other=0.0),
        tl.load(base + 1, mask=tile_mask, other=0.0),
        tl.load(base + 2, mask=tile_mask, other=0.0),
    )


def _tile_width(degree: int) -> int:
    """Tile columns: the active basis count rounded up to a power of two, at least 2."""
    return max(2, triton.next_power_of_2(num_sh_bases(degree)))


def _degree_constexprs(degree: int) -> dict[str, int]:
    """The constexprs of both kernels for one SH degree."""
    return {"DEGREE": degree, "BASES": num_sh_bases(degree), "KP": _tile_width(degree), "BLOCK": BLOCK}


DEGREES = (0, 1, 2, 3)


@declare(
    types={"coeffs_ptr dirs_ptr colors_ptr": "*fp32", "total": ["i32", "i64"], "N K": "i32"},
    constexprs=[_degree_constexprs(degree) for degree in DEGREES],
)
@triton.jit
def _sh_colors_fwd(
    coeffs_ptr, dirs_ptr, colors_ptr, total, N, K,
    DEGREE: tl.constexpr, BASES: tl.constexpr, KP: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    pair = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = pair < total
    gaussian = pair % N
    cols = tl.arange(0, KP)
    x, y, z, _, _ = _unit_direction(dirs_ptr, pair, mask)
    basis, _, _, _ = _sh_tiles(x, y, z, cols, DEGREE)
    c_r, c_g, c_b = _coefficient_tiles(coeffs_ptr, gaussian, mask, cols, K, BASES)
    tl.store(colors_ptr + pair * 3, tl.maximum(tl.sum(basis * c_r, axis=1) + 0.5, 0.0), mask=mask)
    tl.store(colors_ptr + pair * 3 + 1, tl.maximum(tl.sum(basis * c_g, axis=1) + 0.5, 0.0), mask=mask)
    tl.store(colors_ptr + pair * 3 + 2, tl.maximum(tl.sum(basis * c_b, axis=1) + 0.5, 0.0), mask=mask)


@declare(
    types={"coeffs_ptr dirs_ptr g_colors_ptr g_coeffs_ptr g_dirs_ptr": "*fp32", "C N K": "i32"},
    constexprs=[_degree_constexprs(degree) for degree in DEGREES],
    options={"num_warps": 8},  # degree 3 at 4 warps: 255 registers and 28 B of spill on sm_90; now ~150, none
)
@triton.jit
def _sh_colors_bwd(
    coeffs_ptr, dirs_ptr, g_colors_ptr, g_coeffs_ptr, g_dirs_ptr, C, N, K,
    DEGREE: tl.constexpr, BASES: tl.constexpr, KP: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    gaussian = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = gaussian < N
    cols = tl.arange(0, KP)
    c_r, c_g, c_b = _coefficient_tiles(coeffs_ptr, gaussian, mask, cols, K, BASES)
    acc_r = tl.zeros((BLOCK, KP), dtype=tl.float32)
    acc_g = tl.zeros((BLOCK, KP), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK, KP), dtype=tl.float32)
    pair = gaussian  # int64: advanced by N per camera
    for _ in range(C):
        x, y, z, divisor, long_enough = _unit_direction(dirs_ptr, pair, mask)
        basis, b_x, b_y, b_z = _sh_tiles(x, y, z, cols, DEGREE)
        # The clamp at 0 passes the gradient where the unclamped colour is >= 0.
        g_r = tl.load(g_colors_ptr + pair * 3, mask=mask, other=0.0)
        g_g = tl.load(g_colors_ptr + pair * 3 + 1, mask=mask, other=0.0)
        g_b = tl.load(g_colors_ptr + pair * 3 + 2, mask=mask, other=0.0)
        g_r = tl.where(tl.sum(basis * c_r, axis=1) + 0.5 >= 0.0, g_r, 0.0)
        g_g = tl.where(tl.sum(basis * c_g, axis=1) + 0.5 >= 0.0, g_g, 0.0)
        g_b = tl.where(tl.sum(basis * c_b, axis=1) + 0.5 >= 0.0, g_b, 0.0)
        acc_r += basis * g_r[:, None]
        acc_g += basis * g_g[:, None]
        acc_b += basis * g_b[:, None]
        g_basis = c_r * g_r[:, None] + c_g * g_g[:, None] + c_b * g_b[:, None]
        g_x = tl.sum(g_basis * b_x, axis=1)
        g_y = tl.sum(g_basis * b_y, axis=1)
        g_z = tl.sum(g_basis * b_z, axis=1)
        # unit = d / |d|: remove the radial part (only where |d| was not replaced by EPS).
        radial = tl.where(long_enough, x * g_x + y * g_y + z * g_z, 0.0)
        tl.store(g_dirs_ptr + pair * 3, (g_x - x * radial) / divisor, mask=mask)
        tl.store(g_dirs_ptr + pair * 3 + 1, (g_y - y * radial) / divisor, mask=mask)
        tl.store(g_dirs_ptr + pair * 3 + 2, (g_z - z * radial) / divisor, mask=mask)
        pair += N
    tile_mask = mask[:, None] & (cols[None, :] < BASES)
    base = g_coeffs_ptr + gaussian[:, None] * (K * 3) + cols[None, :] * 3
    tl.store(base, acc_r, mask=tile_mask)
    tl.store(base + 1, acc_g, mask=tile_mask)
    tl.store(base + 2, acc_b, mask=tile_mask)


class _SHColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coeffs, dirs, degree):
        C, N, K = dirs.shape[0], coeffs.shape[0], coeffs.shape[1]
        colors = torch.empty(C, N, 3, device=dirs.device)
        total = C * N
        if total:
            _sh_colors_fwd[(triton.cdiv(total, BLOCK),)](
                coeffs, dirs, colors, total, N, K,
                **_degree_constexprs(degree),
            )  # fmt: skip
        ctx.save_for_backward(coeffs, dirs)
        ctx.degree = degree
        return colors

    @staticmethod
    def backward(ctx, g_colors):
        coeffs, dirs = ctx.saved_tensors
        if not any(ctx.needs_input_grad[:2]):
            return None, None, None
        C, N, K = dirs.shape[0], coeffs.shape[0], coeffs.shape[1]
        # Coefficients past the active degree are never written: they keep zero gradient.
        g_coeffs = torch.zeros_like(coeffs)
        g_dirs = torch.empty_like(dirs)
        if C * N:
            degree = ctx.degree
            _sh_colors_bwd[(triton.cdiv(N, BLOCK),)](
                coeffs, dirs, g_colors.contiguous(), g_coeffs, g_dirs, C, N, K,
                **_degree_constexprs(degree),
            )  # fmt: skip
        # Degree 0 colours do not depend on the direction: no gradient, as in the reference.
        return (
            g_coeffs if ctx.needs_input_grad[0] else None,
            g_dirs if ctx.needs_input_grad[1] and ctx.degree > 0 else None,
            None,
        )


def sh_colors_triton(coeffs: torch.Tensor, dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Triton implementation of :func:`render3d.ops.sh_colors` (same arguments and output).
    Computes in float32; the colours and gradients come back in the dtype of ``coeffs``."""
    colors = _SHColors.apply(coeffs.float().contiguous(), dirs.float().contiguous(), int(degree))
    return colors.to(coeffs.dtype)
