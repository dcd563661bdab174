"""One scalar field ``f: [N,3] -> [N]`` for occupancy logits, signed distances and DVR.

The field works in a normalised cube ``[-bound, bound]^3`` (the shape methods train in it);
callers map world points in and out. An MLP reads an encoding of the point (the raw point,
Fourier features, or the hash grid — always with the raw point as its first 3 inputs), and
optionally a per-shape latent code (DeepSDF's auto-decoder: the codes are an
``nn.Embedding`` owned by the method, one row per shape).

Second derivatives (the Eikonal term): the MLP and Fourier features are smooth (softplus);
the hash grid's Triton kernel is only once differentiable, so :meth:`ImplicitField.forward`
with ``second_order=True`` encodes with :func:`~render3d.ops.hash_encoding.hash_encode_reference`,
which is twice differentiable on any device.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from render3d.errors import ConfigError
from render3d.fields.encodings import FourierFeatures

ENCODINGS = ("none", "fourier", "hash")
ACTIVATIONS = ("softplus", "relu")


class ImplicitField(torch.nn.Module):
    """An MLP scalar field on an encoding of normalised points, with optional latent codes.

    Args:
        encoding: ``"none"`` (raw xyz), ``"fourier"`` (:class:`FourierFeatures`, positional)
            or ``"hash"`` (:class:`~render3d.ops.hash_encoding.HashGrid` over the cube).
        bound: half-size of the cube the field lives in (hash-grid inputs are mapped from
            ``[-bound, bound]^3`` onto ``[0,1]^3``, points outside are clamped onto it).
        hidden_dim, n_layers: MLP width and number of hidden layers (>= 1).
        activation: ``"softplus"`` (``beta=softplus_beta``; smooth, for SDFs and Eikonal
            terms) or ``"relu"``.
        n_frequencies: Fourier octaves per axis (``fourier`` only).
        hash_config: tcnn-style hash-grid config (``hash`` only).
        latent_dim: size of the per-shape code appended to the encoding (0: none).
        geometric_init: IGR/SAL's initialisation, ``f(x) ≈ |x| - init_radius`` at start
            (needs ``softplus`` or ``relu``; extra inputs — Fourier/hash features, codes —
            start with zero weights so that only ``x`` matters, as in NeuS).
        init_radius: radius of that initial sphere.

    Shapes: ``forward(points [N,3], codes [N,latent_dim] | None) -> [N]`` (points' dtype).
    """

    def __init__(self, *, encoding: str = "fourier", bound: float = 1.0, hidden_dim: int = 128, n_layers: int = 4,
                 activation: str = "softplus", softplus_beta: float = 100.0, n_frequencies: int = 6,
                 hash_config: dict | None = None, latent_dim: int = 0, geometric_init: bool = False,
                 init_radius: float = 0.5) -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        for name, value, low in (("hidden_dim", hidden_dim, 1), ("n_layers", n_layers, 1), ("latent_dim", latent_dim, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if not bound > 0:
            raise ConfigError(f"bound must be positive, got {bound!r}")
        self.bound = float(bound)
        self.encoding_kind = encoding
        self.latent_dim = latent_dim
        self.fourier = FourierFeatures(n_frequencies if encoding == "fourier" else 0, max_period_extent=2 * bound)
        self.hash_grid = None
        self.active_levels: int | None = None  # coarse-to-fine (set_active_levels); None: every level
        in_dim = self.fourier.n_output_dims
        if encoding == "hash":
            from render3d.ops.hash_encoding import HashGrid

            self.hash_grid = HashGrid(dict(hash_config or {}))
            in_dim += self.hash_grid.n_output_dims
        in_dim += latent_dim
        widths = [in_dim] + [hidden_dim] * n_layers + [1]
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activation = torch.nn.Softplus(beta=softplus_beta) if activation == "softplus" else torch.nn.ReLU()
        if geometric_init:
            self._geometric_init(init_radius)

    @torch.no_grad()
    def _geometric_init(self, radius: float) -> None:
        """SAL's initialisation (Atzmon & Lipman 2020): hidden layers ``N(0, 2/out)``, zero
        biases, last layer ``N(sqrt(pi/in), 1e-4)`` with bias ``-radius``, so that the ReLU
        network approximates ``|x| - radius``. Inputs beyond xyz get zero first-layer weights."""
        *hidden, last = self.linears
        for layer in hidden:
            torch.nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(layer.out_features))
            torch.nn.init.zeros_(layer.bias)
        hidden[0].weight[:, 3:] = 0.0
        torch.nn.init.normal_(last.weight, math.sqrt(math.pi) / math.sqrt(last.in_features), 1e-4)
        torch.nn.init.constant_(last.bias, -radius)

    def set_active_levels(self, levels: int | None) -> None:
        """Coarse-to-fine: only the ``levels`` coarsest hash-grid levels reach the MLP (the
        others read as zero, so neither they nor their first-layer weights get gradients);
        ``None`` enables every level."""
        if self.hash_grid is None:
            raise ConfigError("ImplicitField: active levels need the hash encoding")
        n_levels = self.hash_grid.layout.n_levels
        if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= n_levels):
            raise ConfigError(f"ImplicitField: active levels must be in 1..{n_levels} or None, got {levels!r}")
        self.active_levels = None if levels == n_levels else levels

    def _level_mask(self, features: Tensor) -> Tensor | float:
        """``[L*F]`` ones on the active levels' features, zeros above them (1.0: all active)."""
        if self.active_levels is None:
            return 1.0
        per_level = self.hash_grid.layout.n_features_per_level
        mask = torch.zeros(features.shape[-1], dtype=features.dtype, device=features.device)
        mask[: self.active_levels * per_level] = 1.0
        return mask

    def encode(self, points: Tensor, codes: Tensor | None = None, *, second_order: bool = False) -> Tensor:
        """``[N, in_dim]`` MLP input: xyz, Fourier or hash features, then the code."""
        parts = [self.fourier(points)]
        if self.hash_grid is not None:
            from render3d.ops.hash_encoding import hash_encode, hash_encode_reference

            unit = ((points / self.bound + 1.0) * 0.5).clamp(0.0, 1.0).to(self.hash_grid.params.dtype)
            encode = hash_encode_reference if second_order else hash_encode
            features = encode(unit, self.hash_grid.params, self.hash_grid.layout).to(points.dtype)
            parts.append(features * self._level_mask(features))
        if self.latent_dim:
            if codes is None or codes.shape != (points.shape[0], self.latent_dim):
                got = None if codes is None else tuple(codes.shape)
                raise ConfigError(f"ImplicitField: codes must have shape [{points.shape[0]}, {self.latent_dim}], got {got}")
            parts.append(codes.to(points.dtype))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def forward(self, points: Tensor, codes: Tensor | None = None, *, second_order: bool = False) -> Tensor:
        """Field values ``[N]`` at normalised ``points [N,3]``.

        Args:
            codes: ``[N, latent_dim]`` latent codes (required iff ``latent_dim > 0``).
            second_order: the caller will differentiate the input gradient again (Eikonal
                terms): the hash grid then runs its twice-differentiable reference.
        """
        if points.dim() != 2 or points.shape[1] != 3:
            raise ConfigError(f"ImplicitField: points must have shape [N, 3], got {tuple(points.shape)}")
        h = self.encode(points, codes, second_order=second_order)
        *hidden, last = self.linears
        for layer in hidden:
            h = self.activation(layer(h))
        return last(h).squeeze(-1)


def field_gradient(field: Callable[[Tensor], Tensor], points: Tensor, *,
                   create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Values ``[N]`` and spatial gradients ``[N,3]`` of ``field`` at ``points [N,3]``.

    Works with or without an enclosing ``torch.no_grad``. With ``create_graph=True`` the
    gradient is itself differentiable (Eikonal and normal losses); pass a field that is
    twice differentiable then (e.g. ``partial(field, second_order=True)``).
    """
    with torch.enable_grad():
        leaf = points.detach().requires_grad_(True) if not points.requires_grad else points
        values = field(leaf)
        (grad,) = torch.autograd.grad(values.sum(), leaf, create_graph=create_graph)
    if not create_graph:
        values, grad = values.detach(), grad.detach()
    return values, grad
