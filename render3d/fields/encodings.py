"""Input encodings of 3-D points for coordinate MLPs (seed §10.2.1)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from render3d.errors import ConfigError

FOURIER_KINDS = ("positional", "gaussian")


class FourierFeatures(torch.nn.Module):
    """``x -> [x, sin(2π B x), cos(2π B x)]`` so that an MLP can fit high frequencies.

    Args:
        n_frequencies: frequencies per axis (``positional``) or in total (``gaussian``);
            0 passes ``x`` through unchanged.
        kind: ``"positional"`` (NeRF's octaves ``2^k``, ``k < n_frequencies``, on each axis;
            ``B`` is ``[3F, 3]`` block-diagonal, scaled so that the lowest octave has period
            ``2 * max_period_extent``) or ``"gaussian"`` (random Fourier features of Tancik
            et al.: ``B ~ N(0, sigma^2)``, ``[F, 3]``, drawn from PyTorch's global generator).
        sigma: standard deviation of the Gaussian ``B`` (``gaussian`` only), in cycles per
            unit length.
        max_period_extent: the extent of the input domain (positional only): the lowest
            octave has frequency ``1 / (2 * max_period_extent)`` so it never wraps.

    Shapes: ``forward(x [..., 3]) -> [..., n_output_dims]`` with
    ``n_output_dims = 3 + 2 * rows(B)``; the first 3 outputs are ``x`` itself (so a geometric
    initialisation can act on them alone).
    """

    def __init__(self, n_frequencies: int, kind: str = "positional", *, sigma: float = 1.0,
                 max_period_extent: float = 1.0) -> None:
        super().__init__()
        if isinstance(n_frequencies, bool) or not isinstance(n_frequencies, int) or n_frequencies < 0:
            raise ConfigError(f"FourierFeatures: n_frequencies must be a non-negative integer, got {n_frequencies!r}")
        if kind not in FOURIER_KINDS:
            raise ConfigError(f"FourierFeatures: kind must be one of {', '.join(FOURIER_KINDS)}, got {kind!r}")
        if kind == "positional":
            octaves = 2.0 ** torch.arange(n_frequencies, dtype=torch.float32) / (2.0 * max_period_extent)
            matrix = torch.kron(octaves[:, None], torch.eye(3))  # [3F, 3]: frequency-major, axis-minor
        else:
            if not sigma > 0:
                raise ConfigError(f"FourierFeatures: sigma must be positive, got {sigma!r}")
            matrix = torch.randn(n_frequencies, 3) * sigma
        self.register_buffer("matrix", matrix)
        self.n_output_dims = 3 + 2 * matrix.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        if self.matrix.shape[0] == 0:
            return x
        phase = (2.0 * math.pi) * (x @ self.matrix.t().to(x.dtype))
        return torch.cat([x, torch.sin(phase), torch.cos(phase)], dim=-1)


def hash_grid_config(config: dict) -> dict:
    """tcnn-style hash-grid config (for :class:`render3d.ops.hash_encoding.HashGrid`) from a method's
    ``hash_levels``, ``hash_features``, ``log2_hashmap_size``, ``base_resolution`` and ``max_resolution``
    options (ConfigError on levels outside 1..32 or ``max_resolution < base_resolution``)."""
    levels = int(config["hash_levels"])
    base = int(config["base_resolution"])
    if not 1 <= levels <= 32 or base < 1 or config["max_resolution"] < base:
        raise ConfigError("hash_levels must be in 1..32 and max_resolution >= base_resolution >= 1")
    return {
        "otype": "HashGrid",
        "n_levels": levels,
        "n_features_per_level": int(config["hash_features"]),
        "log2_hashmap_size": int(config["log2_hashmap_size"]),
        "base_resolution": base,
        "per_level_scale": math.exp(math.log(config["max_resolution"] / base) / max(levels - 1, 1)),
    }
