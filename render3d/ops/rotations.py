"""Rotation parameterisations and their conversions, with safe gradients at zero angle.

- Axis-angle ``[..., 3]``: direction = axis, norm = angle in radians (SMPL's pose vector).
  Rodrigues ``R = I + a K + b K^2`` with ``a = sin(t)/t`` and ``b = (1 - cos t)/t^2``; near
  ``t = 0`` both use their Taylor series, so the value *and* the gradient are exact at zero
  (``d R / d aa = [e_i]_x`` there), where ``sqrt`` of a squared norm would give NaN.
- 6D ``[..., 6]`` (Zhou et al. 2019): the first two columns of ``R`` concatenated,
  ``(r00, r10, r20, r01, r11, r21)``; back to ``R`` by Gram-Schmidt. Continuous, so it is
  the parameterisation of choice for regression and fitting.
- Quaternions ``[..., 4]`` in ``wxyz`` order (the engine's convention); any non-zero norm
  is accepted and normalised.

Matrices act on column vectors (``x' = R x``). These are small elementwise ops with no
kernel: PyTorch's fused elementwise code is already memory-bound on them.
"""
from __future__ import annotations

import torch

from render3d.errors import ConfigError

# Below this squared angle the Taylor series are exact to float64 rounding: the first omitted
# term of sin(t)/t is t^6/5040 < 1e-21 here.
_SMALL_ANGLE_SQ = 1e-6


def _check_last(tensor: torch.Tensor, size: int, name: str, where: str) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.dim() < 1 or tensor.shape[-1] != size:
        raise ConfigError(f"{where}: {name} must have shape [..., {size}], got {tuple(getattr(tensor, 'shape', ()))}")


def _check_matrix(matrix: torch.Tensor, where: str, name: str = "matrix") -> None:
    if not isinstance(matrix, torch.Tensor) or matrix.dim() < 2 or matrix.shape[-2:] != (3, 3):
        raise ConfigError(f"{where}: {name} must have shape [..., 3, 3], got {tuple(getattr(matrix, 'shape', ()))}")


def _skew(v: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` cross-product matrix ``[v]_x`` of ``v [..., 3]``."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*v.shape[:-1], 3, 3)


def _sinc_terms(theta_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sin(t)/t``, ``(1 - cos t)/t^2`` and ``cos(t)`` from ``t^2``, with a Taylor branch at
    small angles that keeps both the value and its gradient finite at ``t = 0``."""
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = safe_sq.sqrt()
    fourth = theta_sq * theta_sq
    a = torch.where(small, 1 - theta_sq / 6 + fourth / 120, theta.sin() / theta)
    b = torch.where(small, 0.5 - theta_sq / 24 + fourth / 720, (1 - theta.cos()) / safe_sq)
    cos = torch.where(small, 1 - theta_sq / 2 + fourth / 24, theta.cos())
    return a, b, cos


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: ``[..., 3]`` axis-angle to ``[..., 3, 3]`` rotation matrices.

    Differentiable everywhere, including at zero angle (module doc)."""
    _check_last(axis_angle, 3, "axis_angle", "axis_angle_to_matrix")
    a, b, _ = _sinc_terms((axis_angle * axis_angle).sum(-1))
    k = _skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` axis-angle to ``[..., 4]`` unit quaternions ``wxyz`` (``w >= 0`` for
    angles up to pi). Safe gradient at zero angle."""
    _check_last(axis_angle, 3, "axis_angle", "axis_angle_to_quaternion")
    half_sq = (axis_angle * axis_angle).sum(-1) / 4
    a, _, cos = _sinc_terms(half_sq)  # sin(t/2)/(t/2), cos(t/2)
    return torch.cat([cos[..., None], 0.5 * a[..., None] * axis_angle], -1)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` quaternions ``wxyz`` (any non-zero norm) to ``[..., 3]`` axis-angle with
    angle in ``[0, pi]`` (``q`` and ``-q`` give the same result). Safe gradient at zero angle."""
    _check_last(quaternion, 4, "quaternion", "quaternion_to_axis_angle")
    q = quaternion / quaternion.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, xyz = q[..., 0], q[..., 1:]
    sin_sq = (xyz * xyz).sum(-1)
    small = sin_sq < _SMALL_ANGLE_SQ
    sin_half = torch.where(small, torch.ones_like(sin_sq), sin_sq).sqrt()
    half = torch.atan2(sin_half, w)
    # angle / sin(angle/2) = 2 atan2(s, w) / s with s = sin(angle/2); near zero
    # atan2(s, w) = s/w - s^3/(3 w^3) + ..., so the ratio is 2/w (1 - s^2/(3 w^2)).
    scale = torch.where(small, 2 / w * (1 - sin_sq / (3 * w * w)), 2 * half / sin_half)
    return scale[..., None] * xyz


def quaternion_multiply(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``first * second`` of ``[..., 4]`` quaternions ``wxyz`` (broadcast):
    the rotation ``second`` followed by ``first``; norms multiply."""
    _check_last(first, 4, "first", "quaternion_multiply")
    _check_last(second, 4, "second", "quaternion_multiply")
    w1, x1, y1, z1 = first.unbind(-1)
    w2, x2, y2, z2 = second.unbind(-1)
    return torch.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], -1)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` quaternions ``wxyz`` (normalised here) to ``[..., 3, 3]`` matrices."""
    _check_last(quaternion, 4, "quaternion", "quaternion_to_matrix")
    w, x, y, z = (quaternion / quaternion.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, -1).view(*quaternion.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` rotation matrices to ``[..., 4]`` unit quaternions ``wxyz`` with
    ``w >= 0``.

    Shepperd's method: of the four candidates (from ``1 + trace`` and ``1 + 2 R_ii - trace``)
    the one with the largest ``|q_i|`` is used, so no division by a small number happens."""
    _check_matrix(matrix, "matrix_to_quaternion")
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    four_sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    # Candidate i is q scaled by 4 q_i; rows hold (w, x, y, z) times 4 q_i.
    candidates = torch.stack([
        torch.stack([four_sq[..., 0], m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], four_sq[..., 1], m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], four_sq[..., 2], m[..., 2, 1] + m[..., 1, 2]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 2, 0] + m[..., 0, 2], m[..., 2, 1] + m[..., 1, 2], four_sq[..., 3]], -1),
    ], -2)
    best = four_sq.argmax(-1)
    chosen = candidates.gather(-2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = chosen / (2 * four_sq.gather(-1, best[..., None]).clamp_min(1e-12).sqrt())
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` rotation matrices to ``[..., 3]`` axis-angle (angle in ``[0, pi]``)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def rotation_6d_to_matrix(rotation_6d: torch.Tensor) -> torch.Tensor:
    """``[..., 6]`` (first two columns of R) to ``[..., 3, 3]`` by Gram-Schmidt (Zhou et al.)."""
    _check_last(rotation_6d, 6, "rotation_6d", "rotation_6d_to_matrix")
    first, second = rotation_6d[..., :3], rotation_6d[..., 3:]
    b1 = torch.nn.functional.normalize(first, dim=-1)
    b2 = torch.nn.functional.normalize(second - (b1 * second).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` to ``[..., 6]``: the first two columns, column-major."""
    _check_matrix(matrix, "matrix_to_rotation_6d")
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], -1)


def rigid_transform(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """``[..., 4, 4]`` homogeneous transforms from ``rotation [..., 3, 3]`` and
    ``translation [..., 3]`` (broadcast together)."""
    _check_matrix(rotation, "rigid_transform", "rotation")
    _check_last(translation, 3, "translation", "rigid_transform")
    try:
        batch = torch.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
    except RuntimeError:
        raise ConfigError(f"rigid_transform: rotation {tuple(rotation.shape)} and translation "
                          f"{tuple(translation.shape)} have batch shapes that do not broadcast") from None
    top = torch.cat([rotation.expand(*batch, 3, 3), translation.expand(*batch, 3)[..., None]], -1)
    bottom = torch.zeros(*top.shape[:-2], 1, 4, dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], -2)
