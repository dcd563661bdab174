"""Scene contraction: all of space into a cube of side 4 (mip-NeRF 360, in nerfacto's L∞ form).

A world point ``x`` is first normalised by an *inner box* ``[lo, hi]``, which becomes
``[-1, 1]^3``: ``u = (x - lo) * scale - 1`` with ``scale = 2 / (hi - lo)``. Then, with
``n = ||u||_inf``::

    contract(u) = u                       if n <= 1
                = u * ((2 - 1 / n) / n)   otherwise

so the inner box keeps its (linear) resolution and everything beyond it, out to infinity, fills
the shell between the cubes of half-size 1 and 2; a point ``r`` inner half-sizes away lands at
``2 - 1/r``. The L∞ norm keeps the cube's faces flat, so an axis-aligned grid over
``[-2, 2]^3`` tiles the contracted space without waste.

The float32 operations and their order (the ray-marching kernel follows them exactly):
``u = (x - lo) * scale - 1``, ``n = max(max(|u_x|, |u_y|), |u_z|)``,
``u * ((2 - 1 / n) / n)`` where ``n > 1``.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CONTRACTED_HALF_SIZE", "contract", "inner_normalisation", "uncontract"]

# The contracted space is [-CONTRACTED_HALF_SIZE, CONTRACTED_HALF_SIZE]^3.
CONTRACTED_HALF_SIZE = 2.0
# Inverse contraction clamps the L∞ norm below 2: 2 - 1e-4 is 10^4 inner half-sizes away.
_UNCONTRACT_LIMIT = 2.0 - 1e-4


def inner_normalisation(inner_aabb: Tensor) -> tuple[Tensor, Tensor]:
    """``lo [3]`` and ``scale [3] = 2 / (hi - lo)`` (float32) of an inner box ``[2,3]``."""
    box = inner_aabb.to(torch.float32)
    return box[0], 2.0 / (box[1] - box[0])


def contract(points: Tensor, lo: Tensor, scale: Tensor) -> Tensor:
    """World ``points [..., 3]`` → contracted coordinates ``[..., 3]`` in ``[-2, 2]^3``.

    Args:
        points: float32 world points.
        lo, scale: ``[3]`` float32 from :func:`inner_normalisation` (or the same numbers
            rounded to float32 elsewhere, as the marching spec carries them).
    """
    u = (points - lo) * scale - 1.0
    a = u.abs()
    n = torch.maximum(torch.maximum(a[..., 0], a[..., 1]), a[..., 2])
    safe = n.clamp(min=1.0)  # n <= 1 keeps u; the clamp only keeps the unused branch finite
    factor = (2.0 - 1.0 / safe) / safe
    return torch.where((n > 1.0)[..., None], u * factor[..., None], u)


def uncontract(coords: Tensor, lo: Tensor, scale: Tensor) -> Tensor:
    """Contracted ``coords [..., 3]`` (in ``[-2, 2]^3``) → world points ``[..., 3]``.

    The inverse of :func:`contract` (up to rounding) for ``||coords||_inf < 2``; norms
    closer to 2 than ``1e-4`` are clamped, i.e. mapped 10^4 inner half-sizes away.
    """
    m = coords.abs().amax(dim=-1)
    clamped = m.clamp(min=1.0, max=_UNCONTRACT_LIMIT)
    n = 1.0 / (2.0 - clamped)  # the L∞ norm before contraction
    factor = torch.where(m > 1.0, n / m.clamp(min=1.0), torch.ones_like(m))
    u = coords * factor[..., None]
    return (u + 1.0) / scale + lo
