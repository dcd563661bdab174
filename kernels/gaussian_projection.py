"""Triton kernels for :func:`render3d.ops.project_gaussians`: forward, hand-written backward,
launchers and the autograd Function.

One program handles ``BLOCK`` (camera, Gaussian) pairs of the flattened ``C x N`` grid; pair
``i`` is camera ``i // N``, Gaussian ``i % N``. The backward recomputes the forward
quantities of each pair (cheaper than saving them) and applies the chain rule through the
conic, the 2D covariance, the clamped Jacobian, ``R(q) S`` and the quaternion normalisation.
Per-pair gradients are written to ``[C,N,*]`` buffers and summed over cameras by the
launcher, so the result is deterministic (no atomics). All arithmetic is float32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from render3d.kernels._variants import declare, product
from render3d.ops.gaussian_projection import FRUSTUM_MARGIN

__all__ = ["project_gaussians_triton"]

BLOCK = 128


@triton.jit
def _pair_indices(total, N, BLOCK: tl.constexpr):
    """Flat pair index, its mask, camera index and Gaussian index (int64)."""
    pair = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = pair < total
    cam = pair // N
    return pair, mask, cam, pair - cam * N


@triton.jit
def _load_camera(w2c_ptr, K_ptr, cam, mask):
    """Rotation rows, translation and ``fx, fy, cx, cy`` of each pair's camera."""
    base = w2c_ptr + cam * 16
    w00 = tl.load(base + 0, mask=mask, other=1.0)
    w01 = tl.load(base + 1, mask=mask, other=0.0)
    w02 = tl.load(base + 2, mask=mask, other=0.0)
    t0 = tl.load(base + 3, mask=mask, other=0.0)
    w10 = tl.load(base + 4, mask=mask, other=0.0)
    w11 = tl.load(base + 5, mask=mask, other=1.0)
    w12 = tl.load(base + 6, mask=mask, other=0.0)
    t1 = tl.load(base + 7, mask=mask, other=0.0)
    w20 = tl.load(base + 8, mask=mask, other=0.0)
    w21 = tl.load(base + 9, mask=mask, other=0.0)
    w22 = tl.load(base + 10, mask=mask, other=1.0)
    t2 = tl.load(base + 11, mask=mask, other=0.0)
    kb = K_ptr + cam * 9
    fx = tl.load(kb + 0, mask=mask, other=1.0)
    cx = tl.load(kb + 2, mask=mask, other=0.0)
    fy = tl.load(kb + 4, mask=mask, other=1.0)
    cy = tl.load(kb + 5, mask=mask, other=0.0)
    return w00, w01, w02, w10, w11, w12, w20, w21, w22, t0, t1, t2, fx, fy, cx, cy


@triton.jit
def _load_vec3(ptr, index, mask):
    return (
        tl.load(ptr + index * 3, mask=mask, other=0.0),
        tl.load(ptr + index * 3 + 1, mask=mask, other=0.0),
        tl.load(ptr + index * 3 + 2, mask=mask, other=0.0),
    )


@triton.jit
def _normalised_quat(quats_ptr, g, mask):
    """Unit quaternion ``wxyz`` and the norm it was divided by."""
    qw = tl.load(quats_ptr + g * 4, mask=mask, other=1.0)
    qx = tl.load(quats_ptr + g * 4 + 1, mask=mask, other=0.0)
    qy = tl.load(quats_ptr + g * 4 + 2, mask=mask, other=0.0)
    qz = tl.load(quats_ptr + g * 4 + 3, mask=mask, other=0.0)
    norm = tl.sqrt_rn(qw * qw + qx * qx + qy * qy + qz * qz)
    return tl.div_rn(qw, norm), tl.div_rn(qx, norm), tl.div_rn(qy, norm), tl.div_rn(qz, norm), norm


@triton.jit
def _rotation(w, x, y, z):
    """Row-major rotation matrix of a unit quaternion."""
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    return (
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    )  # fmt: skip


@triton.jit
def _row_times_rs(r0, r1, r2, m00, m01, m02, m10, m11, m12, m20, m21, m22):
    """Row vector ``r`` times the 3x3 matrix ``m`` (row-major)."""
    return r0 * m00 + r1 * m10 + r2 * m20, r0 * m01 + r1 * m11 + r2 * m21, r0 * m02 + r1 * m12 + r2 * m22


@declare(
    types={"means_ptr quats_ptr log_scales_ptr w2c_ptr K_ptr means2d_ptr conics_ptr depths_ptr comps_ptr": "*fp32",
           "radii_ptr": "*i32", "total": ["i32", "i64"], "N": "i32",
           "width height margin_x extent_x margin_y extent_y near far eps2d radius_clip": "fp32"},
    constexprs=product(ANTIALIASED=[False, True], BLOCK=[BLOCK]),
)
@triton.jit
def _project_fwd(
    means_ptr, quats_ptr, log_scales_ptr, w2c_ptr, K_ptr,
    means2d_ptr, conics_ptr, depths_ptr, radii_ptr, comps_ptr,
    total, N, width, height, margin_x, extent_x, margin_y, extent_y,
    near, far, eps2d, radius_clip,
    ANTIALIASED: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    pair, mask, cam, g = _pair_indices(total, N, BLOCK)
    w00, w01, w02, w10, w11, w12, w20, w21, w22, t0, t1, t2, fx, fy, cx, cy = _load_camera(w2c_ptr, K_ptr, cam, mask)
    m0, m1, m2 = _load_vec3(means_ptr, g, mask)
    x = w00 * m0 + w01 * m1 + w02 * m2 + t0
    y = w10 * m0 + w11 * m1 + w12 * m2 + t1
    z = w20 * m0 + w21 * m1 + w22 * m2 + t2
    in_depth = (z > near) & (z < far)
    inv_z = tl.div_rn(1.0, tl.where(in_depth, z, 1.0))
    u = x * inv_z
    v = y * inv_z
    uc = tl.minimum(tl.maximum(u, tl.div_rn(-(cx + margin_x), fx)), tl.div_rn(extent_x - cx, fx))
    vc = tl.minimum(tl.maximum(v, tl.div_rn(-(cy + margin_y), fy)), tl.div_rn(extent_y - cy, fy))
    j00 = fx * inv_z
    j02 = fx * uc * inv_z
    j11 = fy * inv_z
    j12 = fy * vc * inv_z
    a0, a1, a2 = j00 * w00 - j02 * w20, j00 * w01 - j02 * w21, j00 * w02 - j02 * w22
    b0, b1, b2 = j11 * w10 - j12 * w20, j11 * w11 - j12 * w21, j11 * w12 - j12 * w22

    qw, qx, qy, qz, _ = _normalised_quat(quats_ptr, g, mask)
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = _rotation(qw, qx, qy, qz)
    l0, l1, l2 = _load_vec3(log_scales_ptr, g, mask)
    s0, s1, s2 = tl.exp(l0), tl.exp(l1), tl.exp(l2)
    p0, p1, p2 = _row_times_rs(a0, a1, a2, r00 * s0, r01 * s1, r02 * s2, r10 * s0, r11 * s1, r12 * s2,
                               r20 * s0, r21 * s1, r22 * s2)  # fmt: skip
    q0, q1, q2 = _row_times_rs(b0, b1, b2, r00 * s0, r01 * s1, r02 * s2, r10 * s0, r11 * s1, r12 * s2,
                               r20 * s0, r21 * s1, r22 * s2)  # fmt: skip
    var_x = p0 * p0 + p1 * p1 + p2 * p2
    cov_xy = p0 * q0 + p1 * q1 + p2 * q2
    var_y = q0 * q0 + q1 * q1 + q2 * q2

    a = var_x + eps2d
    c = var_y + eps2d
    det = a * c - cov_xy * cov_xy
    invertible = in_depth & (det > 0)
    inv_det = tl.div_rn(1.0, tl.where(invertible, det, 1.0))
    px = fx * u + cx
    py = fy * v + cy
    half_trace = 0.5 * (a + c)
    largest = half_trace + tl.sqrt_rn(tl.maximum(half_trace * half_trace - det, 0.0))
    radius = tl.ceil(3.0 * tl.sqrt_rn(tl.maximum(largest, 0.0)))
    on_image = (px + radius > 0) & (px - radius < width) & (py + radius > 0) & (py - radius < height)
    valid = invertible & (radius > radius_clip) & on_image

    if ANTIALIASED:
        ratio = (var_x * var_y - cov_xy * cov_xy) * inv_det
        comp = tl.where(valid & (ratio > 0), tl.sqrt_rn(tl.maximum(ratio, 0.0)), 0.0)
    else:
        comp = tl.where(valid, 1.0, 0.0)
    tl.store(means2d_ptr + pair * 2, tl.where(valid, px, 0.0), mask=mask)
    tl.store(means2d_ptr + pair * 2 + 1, tl.where(valid, py, 0.0), mask=mask)
    tl.store(conics_ptr + pair * 3, tl.where(valid, c * inv_det, 0.0), mask=mask)
    tl.store(conics_ptr + pair * 3 + 1, tl.where(valid, -cov_xy * inv_det, 0.0), mask=mask)
    tl.store(conics_ptr + pair * 3 + 2, tl.where(valid, a * inv_det, 0.0), mask=mask)
    tl.store(depths_ptr + pair, tl.where(valid, z, 0.0), mask=mask)
    tl.store(radii_ptr + pair, tl.where(valid, radius, 0.0).to(tl.int32), mask=mask)
    tl.store(comps_ptr + pair, comp, mask=mask)


@declare(
    types={"means_ptr quats_ptr log_scales_ptr w2c_ptr K_ptr g_means2d_ptr g_conics_ptr g_depths_ptr g_comps_ptr "
           "g_means_ptr g_quats_ptr g_log_scales_ptr": "*fp32",
           "radii_ptr": "*i32", "total": ["i32", "i64"], "N": "i32",
           "margin_x extent_x margin_y extent_y eps2d": "fp32"},
    constexprs=product(ANTIALIASED=[False, True], BLOCK=[BLOCK]),
)
@triton.jit
def _project_bwd(
    means_ptr, quats_ptr, log_scales_ptr, w2c_ptr, K_ptr, radii_ptr,
    g_means2d_ptr, g_conics_ptr, g_depths_ptr, g_comps_ptr,
    g_means_ptr, g_quats_ptr, g_log_scales_ptr,
    total, N, margin_x, extent_x, margin_y, extent_y, eps2d,
    ANTIALIASED: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    pair, mask, cam, g = _pair_indices(total, N, BLOCK)
    valid = tl.load(radii_ptr + pair, mask=mask, other=0) > 0
    w00, w01, w02, w10, w11, w12, w20, w21, w22, t0, t1, t2, fx, fy, cx, cy = _load_camera(w2c_ptr, K_ptr, cam, mask)
    m0, m1, m2 = _load_vec3(means_ptr, g, mask)
    # Recompute the forward; culled pairs use z = 1 and are zeroed at the end.
    x = w00 * m0 + w01 * m1 + w02 * m2 + t0
    y = w10 * m0 + w11 * m1 + w12 * m2 + t1
    z = tl.where(valid, w20 * m0 + w21 * m1 + w22 * m2 + t2, 1.0)
    inv_z = 1.0 / z
    u = x * inv_z
    v = y * inv_z
    lo_u = -(cx + margin_x) / fx
    hi_u = (extent_x - cx) / fx
    lo_v = -(cy + margin_y) / fy
    hi_v = (extent_y - cy) / fy
    uc = tl.minimum(tl.maximum(u, lo_u), hi_u)
    vc = tl.minimum(tl.maximum(v, lo_v), hi_v)
    j00 = fx * inv_z
    j02 = fx * uc * inv_z
    j11 = fy * inv_z
    j12 = fy * vc * inv_z
    a0, a1, a2 = j00 * w00 - j02 * w20, j00 * w01 - j02 * w21, j00 * w02 - j02 * w22
    b0, b1, b2 = j11 * w10 - j12 * w20, j11 * w11 - j12 * w21, j11 * w12 - j12 * w22
    qw, qx, qy, qz, qnorm = _normalised_quat(quats_ptr, g, mask)
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = _rotation(qw, qx, qy, qz)
    l0, l1, l2 = _load_vec3(log_scales_ptr, g, mask)
    s0, s1, s2 = tl.exp(l0), tl.exp(l1), tl.exp(l2)
    m00, m01, m02 = r00 * s0, r01 * s1, r02 * s2
    m10, m11, m12 = r10 * s0, r11 * s1, r12 * s2
    m20, m21, m22 = r20 * s0, r21 * s1, r22 * s2
    p0, p1, p2 = _row_times_rs(a0, a1, a2, m00, m01, m02, m10, m11, m12, m20, m21, m22)
    q0, q1, q2 = _row_times_rs(b0, b1, b2, m00, m01, m02, m10, m11, m12, m20, m21, m22)
    var_x = p0 * p0 + p1 * p1 + p2 * p2
    cov_xy = p0 * q0 + p1 * q1 + p2 * q2
    var_y = q0 * q0 + q1 * q1 + q2 * q2
    a = var_x + eps2d
    c = var_y + eps2d
    inv_det = 1.0 / tl.where(valid, a * c - cov_xy * cov_xy, 1.0)
    con_a = c * inv_det
    con_b = -cov_xy * inv_det
    con_c = a * inv_det

    # Output cotangents, zero for culled pairs.
    g_px = tl.where(valid, tl.load(g_means2d_ptr + pair * 2, mask=mask, other=0.0), 0.0)
    g_py = tl.where(valid, tl.load(g_means2d_ptr + pair * 2 + 1, mask=mask, other=0.0), 0.0)
    g_ca = tl.where(valid, tl.load(g_conics_ptr + pair * 3, mask=mask, other=0.0), 0.0)
    g_cb = tl.where(valid, tl.load(g_conics_ptr + pair * 3 + 1, mask=mask, other=0.0), 0.0)
    g_cc = tl.where(valid, tl.load(g_conics_ptr + pair * 3 + 2, mask=mask, other=0.0), 0.0)
    g_z = tl.where(valid, tl.load(g_depths_ptr + pair, mask=mask, other=0.0), 0.0)

    # conic = inverse of [[a, cov], [cov, c]]: d(conic) = -conic d(Sigma2d) conic.
    g_var_x = -(g_ca * con_a * con_a + g_cb * con_a * con_b + g_cc * con_b * con_b)
    g_var_y = -(g_ca * con_b * con_b + g_cb * con_b * con_c + g_cc * con_c * con_c)
    g_cov = -(2.0 * g_ca * con_a * con_b + g_cb * (con_a * con_c + con_b * con_b) + 2.0 * g_cc * con_b * con_c)
    if ANTIALIASED:
        g_comp = tl.where(valid, tl.load(g_comps_ptr + pair, mask=mask, other=0.0), 0.0)
        ratio = (var_x * var_y - cov_xy * cov_xy) * inv_det
        positive = ratio > 0
        g_ratio = tl.where(positive, g_comp * 0.5 / tl.sqrt(tl.where(positive, ratio, 1.0)), 0.0) * inv_det
        g_var_x += g_ratio * (var_y - ratio * c)
        g_var_y += g_ratio * (var_x - ratio * a)
        g_cov += g_ratio * 2.0 * cov_xy * (ratio - 1.0)

    # var_x = |p|^2, cov = p.q, var_y = |q|^2 with p, q the rows of J W R S.
    gp0 = 2.0 * g_var_x * p0 + g_cov * q0
    gp1 = 2.0 * g_var_x * p1 + g_cov * q1
    gp2 = 2.0 * g_var_x * p2 + g_cov * q2
    gq0 = g_cov * p0 + 2.0 * g_var_y * q0
    gq1 = g_cov * p1 + 2.0 * g_var_y * q1
    gq2 = g_cov * p2 + 2.0 * g_var_y * q2

    # p = a M, q = b M with M = R S: gradients of the rows a, b of J W ...
    ga0 = gp0 * m00 + gp1 * m01 + gp2 * m02
    ga1 = gp0 * m10 + gp1 * m11 + gp2 * m12
    ga2 = gp0 * m20 + gp1 * m21 + gp2 * m22
    gb0 = gq0 * m00 + gq1 * m01 + gq2 * m02
    gb1 = gq0 * m10 + gq1 * m11 + gq2 * m12
    gb2 = gq0 * m20 + gq1 * m21 + gq2 * m22
    # ... and of M (g_M[j][k] = a_j gp_k + b_j gq_k), then of R and S.
    gm00, gm01, gm02 = a0 * gp0 + b0 * gq0, a0 * gp1 + b0 * gq1, a0 * gp2 + b0 * gq2
    gm10, gm11, gm12 = a1 * gp0 + b1 * gq0, a1 * gp1 + b1 * gq1, a1 * gp2 + b1 * gq2
    gm20, gm21, gm22 = a2 * gp0 + b2 * gq0, a2 * gp1 + b2 * gq1, a2 * gp2 + b2 * gq2
    g_l0 = (gm00 * r00 + gm10 * r10 + gm20 * r20) * s0
    g_l1 = (gm01 * r01 + gm11 * r11 + gm21 * r21) * s1
    g_l2 = (gm02 * r02 + gm12 * r12 + gm22 * r22) * s2
    gr00, gr01, gr02 = gm00 * s0, gm01 * s1, gm02 * s2
    gr10, gr11, gr12 = gm10 * s0, gm11 * s1, gm12 * s2
    gr20, gr21, gr22 = gm20 * s0, gm21 * s1, gm22 * s2
    g_qw = 2.0 * (-qz * gr01 + qy * gr02 + qz * gr10 - qx * gr12 - qy * gr20 + qx * gr21)
    g_qx = 2.0 * (qy * gr01 + qz * gr02 + qy * gr10 - 2.0 * qx * gr11 - qw * gr12 + qz * gr20 + qw * gr21
                  - 2.0 * qx * gr22)  # fmt: skip
    g_qy = 2.0 * (-2.0 * qy * gr00 + qx * gr01 + qw * gr02 + qx * gr10 + qz * gr12 - qw * gr20 + qz * gr21
                  - 2.0 * qy * gr22)  # fmt: skip
    g_qz = 2.0 * (-2.0 * qz * gr00 - qw * gr01 + qx * gr02 + qw * gr10 - 2.0 * qz * gr11 + qy * gr12
                  + qx * gr20 + qy * gr21)  # fmt: skip
    # Through the normalisation q / |q|: remove the radial part, divide by |q|.
    radial = qw * g_qw + qx * g_qx + qy * g_qy + qz * g_qz
    g_qw = (g_qw - qw * radial) / qnorm
    g_qx = (g_qx - qx * radial) / qnorm
    g_qy = (g_qy - qy * radial) / qnorm
    g_qz = (g_qz - qz * radial) / qnorm

    # a = j00 W0 - j02 W2, b = j11 W1 - j12 W2 with j00 = fx/z, j02 = fx uc/z, ...
    g_j00 = ga0 * w00 + ga1 * w01 + ga2 * w02
    g_j02 = -(ga0 * w20 + ga1 * w21 + ga2 * w22)
    g_j11 = gb0 * w10 + gb1 * w11 + gb2 * w12
    g_j12 = -(gb0 * w20 + gb1 * w21 + gb2 * w22)
    g_inv_z = g_j00 * fx + g_j02 * fx * uc + g_j11 * fy + g_j12 * fy * vc
    # u feeds means2d directly and J through the clamp (which passes gradient inside its range).
    g_u = g_px * fx + tl.where((u >= lo_u) & (u <= hi_u), g_j02 * fx * inv_z, 0.0)
    g_v = g_py * fy + tl.where((v >= lo_v) & (v <= hi_v), g_j12 * fy * inv_z, 0.0)
    g_inv_z += g_u * x + g_v * y
    g_x = g_u * inv_z
    g_y = g_v * inv_z
    g_zz = g_z - g_inv_z * inv_z * inv_z
    g_m0 = w00 * g_x + w10 * g_y + w20 * g_zz
    g_m1 = w01 * g_x + w11 * g_y + w21 * g_zz
    g_m2 = w02 * g_x + w12 * g_y + w22 * g_zz

    tl.store(g_means_ptr + pair * 3, tl.where(valid, g_m0, 0.0), mask=mask)
    tl.store(g_means_ptr + pair * 3 + 1, tl.where(valid, g_m1, 0.0), mask=mask)
    tl.store(g_means_ptr + pair * 3 + 2, tl.where(valid, g_m2, 0.0), mask=mask)
    tl.store(g_quats_ptr + pair * 4, tl.where(valid, g_qw, 0.0), mask=mask)
    tl.store(g_quats_ptr + pair * 4 + 1, tl.where(valid, g_qx, 0.0), mask=mask)
    tl.store(g_quats_ptr + pair * 4 + 2, tl.where(valid, g_qy, 0.0), mask=mask)
    tl.store(g_quats_ptr + pair * 4 + 3, tl.where(valid, g_qz, 0.0), mask=mask)
    tl.store(g_log_scales_ptr + pair * 3, tl.where(valid, g_l0, 0.0), mask=mask)
    tl.store(g_log_scales_ptr + pair * 3 + 1, tl.where(valid, g_l1, 0.0), mask=mask)
    tl.store(g_log_scales_ptr + pair * 3 + 2, tl.where(valid, g_l2, 0.0), mask=mask)


def _frustum_args(width: int, height: int) -> tuple[float, float, float, float]:
    """``margin_x, extent_x, margin_y, extent_y``: the clamp is ``[-(c + margin), extent - c] / f``."""
    return (
        FRUSTUM_MARGIN * width,
        width * (1 + FRUSTUM_MARGIN),
        FRUSTUM_MARGIN * height,
        height * (1 + FRUSTUM_MARGIN),
    )


class _ProjectGaussians(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, log_scales, w2c, K, width, height, near, far, eps2d, antialiased, radius_clip):
        C, N = w2c.shape[0], means.shape[0]
        device = means.device
        means2d = torch.empty(C, N, 2, device=device)
        conics = torch.empty(C, N, 3, device=device)
        depths = torch.empty(C, N, device=device)
        radii = torch.empty(C, N, device=device, dtype=torch.int32)
        comps = torch.empty(C, N, device=device)
        total = C * N
        if total:
            _project_fwd[(triton.cdiv(total, BLOCK),)](
                means, quats, log_scales, w2c, K, means2d, conics, depths, radii, comps,
                total, N, float(width), float(height), *_frustum_args(width, height),
                float(near), float(far), float(eps2d), float(radius_clip),
                ANTIALIASED=bool(antialiased), BLOCK=BLOCK,
            )  # fmt: skip
        ctx.save_for_backward(means, quats, log_scales, w2c, K, radii)
        ctx.size = (width, height)
        ctx.eps2d = float(eps2d)
        ctx.antialiased = bool(antialiased)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii, comps

    @staticmethod
    def backward(ctx, g_means2d, g_conics, g_depths, _g_radii, g_comps):
        means, quats, log_scales, w2c, K, radii = ctx.saved_tensors
        needed = ctx.needs_input_grad[:3]
        if not any(needed):
            return (None,) * 12
        C, N = radii.shape
        device = means.device
        g_means = torch.empty(C, N, 3, device=device)
        g_quats = torch.empty(C, N, 4, device=device)
        g_log_scales = torch.empty(C, N, 3, device=device)
        total = C * N
        if total:
            _project_bwd[(triton.cdiv(total, BLOCK),)](
                means, quats, log_scales, w2c, K, radii,
                g_means2d.contiguous(), g_conics.contiguous(), g_depths.contiguous(), g_comps.contiguous(),
                g_means, g_quats, g_log_scales,
                total, N, *_frustum_args(*ctx.size), ctx.eps2d,
                ANTIALIASED=ctx.antialiased, BLOCK=BLOCK,
            )  # fmt: skip
        grads = [grad.sum(0) if flag else None for grad, flag in zip((g_means, g_quats, g_log_scales), needed)]
        return (*grads,) + (None,) * 9


def project_gaussians_triton(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    w2c: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    antialiased: bool = False,
    radius_clip: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Triton implementation of :func:`render3d.ops.project_gaussians` (same arguments and
    outputs). Computes in float32; floating outputs and gradients come back in the dtype of
    ``means``. Gradients flow to ``means``, ``quats`` and ``log_scales`` only."""
    dtype = means.dtype
    means2d, conics, depths, radii, comps = _ProjectGaussians.apply(
        means.float().contiguous(), quats.float().contiguous(), log_scales.float().contiguous(),
        w2c.detach().float().contiguous(), K.detach().float().contiguous(),
        int(width), int(height), near, far, eps2d, antialiased, radius_clip,
    )  # fmt: skip
    return {
        "means2d": means2d.to(dtype),
        "conics": conics.to(dtype),
        "depths": depths.to(dtype),
        "radii": radii,
        "compensations": comps.to(dtype),
    }
