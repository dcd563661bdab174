"""Real spherical-harmonics basis of unit directions, degrees 0 to 3 (1, 4, 9 or 16 terms).

The constants and term order are the ones 3D Gaussian Splatting's PLY files assume
(``f_dc_*`` is the degree-0 coefficient, ``f_rest_*`` the rest in this order), so that
``colour = 0.5 + sum_k coeffs[k] * basis[k]`` means the same thing here as there.
NeRF uses the same basis to encode view directions.

Example::

    >>> dirs = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    >>> spherical_harmonics_basis(dirs, degree=3).shape
    torch.Size([5, 16])
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.errors import ConfigError

__all__ = ["spherical_harmonics_basis", "num_sh_bases", "sh_rotation_matrix"]

_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_bases(degree: int) -> int:
    """Number of basis functions up to ``degree``: ``(degree + 1) ** 2``."""
    return (degree + 1) ** 2


def spherical_harmonics_basis(dirs: Tensor, degree: int) -> Tensor:
    """Evaluate the real SH basis at unit directions.

    Args:
        dirs: ``[..., 3]`` float unit vectors (not renormalised here).
        degree: 0, 1, 2 or 3.

    Returns:
        ``[..., (degree+1)**2]`` basis values, same dtype as ``dirs``; differentiable.
    """
    if degree not in (0, 1, 2, 3):
        raise ConfigError(f"degree must be 0, 1, 2 or 3, got {degree!r}")
    if dirs.shape[-1] != 3:
        raise ConfigError(f"dirs must have shape [..., 3], got {list(dirs.shape)}")
    x, y, z = dirs.unbind(-1)
    terms = [torch.full_like(x, _C0)]
    if degree >= 1:
        terms += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        terms += [
            _C2[0] * xy,
            _C2[1] * yz,
            _C2[2] * (2.0 * zz - xx - yy),
            _C2[3] * xz,
            _C2[4] * (xx - yy),
        ]
    if degree >= 3:
        terms += [
            _C3[0] * y * (3.0 * xx - yy),
            _C3[1] * xy * z,
            _C3[2] * y * (4.0 * zz - xx - yy),
            _C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            _C3[4] * x * (4.0 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(terms, dim=-1)


def sh_rotation_matrix(rotation: Tensor, degree: int) -> Tensor:
    """The ``[K, K]`` matrix ``D`` (``K = (degree+1)**2``) that rotates SH coefficients:
    if ``f(d) = basis(d) @ c`` then ``f(R^T d) = basis(d) @ (D @ c)``, i.e. ``D @ c`` are the
    coefficients of the function turned by ``rotation`` (what Wigner-D matrices do, block by
    block, since each degree is closed under rotation).

    Found by least squares on a fixed spread of directions (many more than ``K``), so it is
    exact to float64 rounding without per-degree formulas.

    Args:
        rotation: ``[3, 3]`` rotation matrix. degree: 0, 1, 2 or 3.

    Returns:
        ``[K, K]`` float64 block-diagonal matrix.
    """
    rotation = torch.as_tensor(rotation, dtype=torch.float64).cpu()
    if rotation.shape != (3, 3):
        raise ConfigError(f"rotation must have shape [3, 3], got {list(rotation.shape)}")
    count = 256  # a Fibonacci sphere: well spread, deterministic
    index = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * index / count
    radius = (1.0 - z * z).sqrt()
    angle = index * (torch.pi * (3.0 - 5.0 ** 0.5))
    dirs = torch.stack([radius * angle.cos(), radius * angle.sin(), z], dim=-1)
    sampled = spherical_harmonics_basis(dirs, degree)
    turned = spherical_harmonics_basis(dirs @ rotation, degree)  # rows are (R^T d)^T
    return torch.linalg.lstsq(sampled, turned).solution
