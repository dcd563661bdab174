"""The opacity field of 3D Gaussians, splatted onto a regular grid (for marching cubes).

``density(x) = sum_i o_i exp(-(x - mu_i)^T Sigma_i^-1 (x - mu_i) / 2)``, evaluated only where a
term can matter: each Gaussian writes to the grid points inside the bounding box of the
ellipsoid where ``o_i exp(-q/2) >= 1/255`` (the rasterizer's alpha cut-off), so the work is the
sum of the Gaussians' footprints rather than ``grid points x Gaussians``. Each covariance is
widened by ``(spacing/2)^2 I`` first, so that no Gaussian thinner than the grid spacing falls
between grid points (the 3D analogue of the rasterizer's 2D low-pass).
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.ops.gaussian_projection import covariance_3d
from render3d.progress import progress_bar

ALPHA_CUTOFF = 1.0 / 255.0


@torch.no_grad()
def splat_density_volume(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    bbox: Tensor,
    resolution: tuple[int, int, int],
    *,
    pair_budget: int = 1 << 22,
    progress: bool = False,
) -> Tensor:
    """Splat Gaussians onto the grid ``bbox[0] + index * spacing`` (corners on the box corners).

    Args:
        means: ``[N,3]``; quats: ``[N,4]`` wxyz; log_scales: ``[N,3]``; opacities: ``[N]`` in [0,1].
        bbox: ``[2,3]`` box; resolution: samples per axis ``(X, Y, Z)``, each >= 2.
        pair_budget: most (Gaussian, grid point) pairs evaluated at once (bounds memory, also
            for a single Gaussian whose footprint is larger).

    Returns:
        ``[X,Y,Z]`` float32 density on the device of ``means``.
    """
    device = means.device
    shape = torch.tensor(resolution, device=device)
    box = torch.as_tensor(bbox, dtype=torch.float32, device=device)
    spacing = (box[1] - box[0]) / (shape - 1).float()
    volume = torch.zeros(tuple(resolution), dtype=torch.float32, device=device)

    covariance = covariance_3d(quats.float(), log_scales.float()) + torch.eye(3, device=device) * (0.5 * float(spacing.max())) ** 2
    reach = 2.0 * torch.log((opacities.float() / ALPHA_CUTOFF).clamp(min=1.0))  # q where o e^(-q/2) = cutoff
    half_extent = torch.sqrt(reach[:, None] * torch.diagonal(covariance, dim1=1, dim2=2))
    low = torch.ceil((means - half_extent - box[0]) / spacing).clamp(min=0).long()
    high = torch.minimum(torch.floor((means + half_extent - box[0]) / spacing).long(), shape - 1)
    extent = (high - low + 1).clamp(min=0)
    pairs = extent.prod(dim=1) * (opacities >= ALPHA_CUTOFF)
    selected = (pairs > 0).nonzero()[:, 0]
    if selected.numel() == 0:
        return volume
    precision = torch.linalg.inv(covariance[selected])
    means, opacities = means[selected].float(), opacities[selected].float()
    low, extent, pairs = low[selected], extent[selected], pairs[selected]

    ends = torch.cumsum(pairs, 0)
    total = int(ends[-1])
    flat = volume.view(-1)
    strides = torch.tensor([resolution[1] * resolution[2], resolution[2], 1], device=device)
    with progress_bar(total, "extract_mesh: splat Gaussians", enabled=progress, unit="pair") as bar:
        # Slices of the concatenated (Gaussian, grid point) pairs: memory stays bounded even
        # when one Gaussian's footprint alone is larger than the budget.
        for first in range(0, total, pair_budget):
            pair = torch.arange(first, min(first + pair_budget, total), device=device)
            owner = torch.searchsorted(ends, pair, right=True)
            local = pair - (ends[owner] - pairs[owner])
            size_y, size_z = extent[owner, 1], extent[owner, 2]
            offset = torch.stack([local // (size_y * size_z), (local // size_z) % size_y, local % size_z], dim=1)
            voxel = low[owner] + offset
            delta = box[0] + voxel.float() * spacing - means[owner]
            q = torch.einsum("pi,pij,pj->p", delta, precision[owner], delta)
            flat.index_add_(0, (voxel * strides).sum(dim=1), opacities[owner] * torch.exp(-0.5 * q))
            bar.update(pair.numel())
    return volume
