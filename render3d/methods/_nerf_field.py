"""The Instant-NGP radiance field: hash-grid features → density, + SH view encoding → colour."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from render3d.ops.contraction import CONTRACTED_HALF_SIZE, contract, inner_normalisation
from render3d.ops.hash_encoding import HashGrid
from render3d.ops.spherical_harmonics import num_sh_bases, spherical_harmonics_basis


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(min(x, 15)): Instant-NGP's density activation."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """``exp(x)`` with the gradient clamped as Instant-NGP does (stable early training)."""
    return _TruncExp.apply(x)


def _mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> torch.nn.Sequential:
    """Bias-free ReLU MLP with ``layers`` hidden layers (tiny-cuda-nn's FullyFusedMLP shape)."""
    modules, width = [], in_dim
    for _ in range(layers):
        modules += [torch.nn.Linear(width, hidden, bias=False), torch.nn.ReLU(inplace=True)]
        width = hidden
    modules.append(torch.nn.Linear(width, out_dim, bias=False))
    return torch.nn.Sequential(*modules)


class RadianceField(torch.nn.Module):
    """Density and view-dependent colour at world points inside ``aabb`` (everywhere when
    contracted).

    Args:
        aabb: ``[2,3]`` world box mapped onto the hash grid's unit cube; with
            ``config["contraction"]``, the inner box of the scene contraction
            (:mod:`render3d.ops.contraction`) whose ``[-2, 2]^3`` is the unit cube.
        config: the ``nerf`` method config (hash grid sizes, MLP width, SH degree, contraction).
    """

    def __init__(self, aabb: Tensor, config: dict) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone())
        self.contracted = bool(config["contraction"])
        levels = int(config["hash_levels"])
        base = int(config["base_resolution"])
        per_level_scale = math.exp(math.log(config["max_resolution"] / base) / max(levels - 1, 1))
        self.encoding = HashGrid(
            {
                "otype": "HashGrid",
                "n_levels": levels,
                "n_features_per_level": int(config["hash_features"]),
                "log2_hashmap_size": int(config["log2_hashmap_size"]),
                "base_resolution": base,
                "per_level_scale": per_level_scale,
            }
        )
        self.geo_feat_dim = int(config["geo_feat_dim"])
        self.sh_degree = int(config["sh_degree"])
        hidden = int(config["hidden_dim"])
        self.density_mlp = _mlp(self.encoding.n_output_dims, hidden, 1 + self.geo_feat_dim, 1)
        self.color_mlp = _mlp(num_sh_bases(self.sh_degree) + self.geo_feat_dim, hidden, 3, 2)

    def _unit(self, points: Tensor) -> Tensor:
        """World ``[N,3]`` → the grid's ``[0,1]^3`` (points outside the box are clamped onto it)."""
        if self.contracted:
            coords = contract(points.float(), *inner_normalisation(self.aabb))
            return (coords / CONTRACTED_HALF_SIZE + 1.0) * 0.5
        lo, hi = self.aabb[0], self.aabb[1]
        return ((points - lo) / (hi - lo)).clamp(0.0, 1.0)

    def geometry(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """``[N,3]`` world points → density ``[N]`` and geometry features ``[N, geo_feat_dim]``."""
        h = self.density_mlp(self.encoding(self._unit(points)))
        # The -1 bias starts empty space at density e^-1 rather than 1 (as nerfacc's NGP field).
        density = trunc_exp(h[:, 0] - 1.0)
        if not self.contracted:
            density = density * ((points >= self.aabb[0]) & (points <= self.aabb[1])).all(dim=-1)
        return density, h[:, 1:]

    def density(self, points: Tensor) -> Tensor:
        """``[N,3]`` world points → ``[N]`` volume density (0 outside the box unless contracted)."""
        return self.geometry(points)[0]

    def colour(self, geo: Tensor, dirs: Tensor) -> Tensor:
        """Geometry features ``[N, geo_feat_dim]`` seen along unit ``dirs [N,3]`` → colour ``[N,3]`` in [0,1]."""
        sh = spherical_harmonics_basis(dirs, self.sh_degree)
        return torch.sigmoid(self.color_mlp(torch.cat([sh, geo], dim=-1)))

    def forward(self, points: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """``points [N,3]``, unit ``dirs [N,3]`` → density ``[N]``, colour ``[N,3]`` in [0,1]."""
        density, geo = self.geometry(points)
        return density, self.colour(geo, dirs)
