"""View-dependent colours of 3D Gaussians from spherical-harmonics coefficients.

``colour = max(0.5 + sum_{k < (degree+1)^2} coeffs[:, k] * basis_k(dir / |dir|), 0)``: the
original 3D Gaussian Splatting convention (the +0.5 offset makes zero coefficients mid-grey),
with the basis of :mod:`render3d.ops.spherical_harmonics`. Coefficients past
``(degree+1)^2`` are ignored (they receive zero gradient), so a model can raise its active
degree during training without reallocating.

Example::

    >>> coeffs = torch.zeros(100, 16, 3)
    >>> dirs = torch.randn(2, 100, 3)
    >>> sh_colors(coeffs, dirs, degree=1).shape
    torch.Size([2, 100, 3])
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton
from render3d.ops.spherical_harmonics import num_sh_bases, spherical_harmonics_basis

__all__ = ["sh_colors", "sh_colors_reference", "DIRECTION_EPS"]

# Directions shorter than this are divided by it instead of their length (as
# torch.nn.functional.normalize does), so a zero direction gives the degree-0 colour.
DIRECTION_EPS = 1e-12


def sh_colors(coeffs: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """Evaluate per-Gaussian spherical-harmonics colours along view directions.

    Args:
        coeffs: ``[N,K,3]`` float SH coefficients per Gaussian and RGB channel, with
            ``K >= (degree+1)**2`` (3DGS order: ``f_dc`` first, then ``f_rest``).
        dirs: ``[C,N,3]`` float view directions ``mean - camera centre``, any length
            (normalised here).
        degree: active SH degree, 0 to 3.

    Returns:
        ``[C,N,3]`` colours in the dtype of ``coeffs``, clamped below at 0 (not above).
        Differentiable with respect to ``coeffs`` and ``dirs`` (through the normalisation).
        The Triton kernel computes in float32.

    Raises:
        ConfigError: bad shapes, too few coefficients for ``degree``, an unknown degree,
            mismatched devices or dtypes.
    """
    _validate(coeffs, dirs, degree)
    if use_triton(coeffs, dirs):
        from render3d.kernels.sh_colors import sh_colors_triton

        return sh_colors_triton(coeffs, dirs, degree)
    return sh_colors_reference(coeffs, dirs, degree)


def sh_colors_reference(coeffs: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """The PyTorch specification of :func:`sh_colors` (same arguments and output)."""
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(DIRECTION_EPS)
    basis = spherical_harmonics_basis(unit, degree)  # [C,N,B]
    active = coeffs[:, : num_sh_bases(degree)]  # [N,B,3]
    raw = (basis.unsqueeze(-1) * active).sum(-2)  # [C,N,3]; faster on CPU than a batched matmul
    return torch.clamp_min(raw + 0.5, 0.0)


def _validate(coeffs, dirs, degree) -> None:
    if degree not in (0, 1, 2, 3):
        raise ConfigError(f"sh_colors: degree must be 0, 1, 2 or 3, got {degree!r}")
    for name, tensor, shape in (("coeffs", coeffs, "[N,K,3]"), ("dirs", dirs, "[C,N,3]")):
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
            raise ConfigError(f"sh_colors: {name} must be a floating-point tensor")
        if tensor.dim() != 3 or tensor.shape[-1] != 3:
            raise ConfigError(f"sh_colors: {name} must have shape {shape}, got {list(tensor.shape)}")
    if coeffs.shape[0] != dirs.shape[1]:
        raise ConfigError(f"sh_colors: coeffs has {coeffs.shape[0]} Gaussians but dirs has {dirs.shape[1]}")
    if coeffs.shape[1] < num_sh_bases(degree):
        raise ConfigError(
            f"sh_colors: degree {degree} needs {num_sh_bases(degree)} coefficients per Gaussian, "
            f"coeffs has {coeffs.shape[1]}"
        )
    if coeffs.device != dirs.device:
        raise ConfigError(f"sh_colors: coeffs is on {coeffs.device} but dirs is on {dirs.device}")
    if coeffs.dtype != dirs.dtype:
        raise ConfigError(f"sh_colors: coeffs is {coeffs.dtype} but dirs is {dirs.dtype}")
