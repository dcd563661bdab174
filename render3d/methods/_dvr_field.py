"""DVR's two fields over the scene box: occupancy logits f(x) and a texture field c(x).

Both read world points mapped into the cube ``[-1, 1]^3`` by the box's centre and its largest
half-extent. The occupancy field is an :class:`~render3d.fields.ImplicitField` started as a
sphere (its geometric initialisation ``g(x) ≈ |x| - r``, used as ``f = -g``: positive, i.e.
occupied, inside). The texture field is a small MLP on the point and its hash-grid features:
it is only evaluated at the surface points, one per ray, so the fast-learning grid costs little
there, while the occupancy field, evaluated at every march sample, stays a smooth MLP by default.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.errors import ConfigError
from render3d.fields import ImplicitField
from render3d.fields.encodings import hash_grid_config

ENCODINGS = ("fourier", "hash")


class OccupancyTextureField(torch.nn.Module):
    """Occupancy logits ``[N]`` and colours ``[N,3]`` at world points ``[N,3]``.

    Args:
        aabb: ``[2,3]`` world box; the fields live in the cube around it (points outside are
            valid inputs, the hash grid clamps them onto its cube).
        config: the ``dvr`` method config (encodings, widths, initial radius).
    """

    def __init__(self, aabb: Tensor, config: dict) -> None:
        super().__init__()
        if config["encoding"] not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {config['encoding']!r}")
        if not 0.0 < config["init_radius"] < 1.0:
            raise ConfigError(f"init_radius must be in (0, 1) (a fraction of the box's half size), got {config['init_radius']!r}")
        self.register_buffer("center", (aabb[0] + aabb[1]) * 0.5)
        self.register_buffer("half_size", ((aabb[1] - aabb[0]) * 0.5).max())
        hash_config = hash_grid_config(config) if config["encoding"] == "hash" else None
        self.occupancy = ImplicitField(
            encoding=config["encoding"],
            bound=1.0,
            hidden_dim=int(config["hidden_dim"]),
            n_layers=int(config["n_layers"]),
            n_frequencies=int(config["n_frequencies"]),
            hash_config=hash_config,
            geometric_init=True,
            init_radius=float(config["init_radius"]),
        )
        from render3d.ops.hash_encoding import HashGrid

        self.texture_encoding = HashGrid(hash_grid_config(config))
        width = self.texture_encoding.n_output_dims + 3
        layers = []
        for _ in range(int(config["texture_layers"])):
            layers += [torch.nn.Linear(width, int(config["texture_hidden_dim"])), torch.nn.ReLU(inplace=True)]
            width = int(config["texture_hidden_dim"])
        self.texture_mlp = torch.nn.Sequential(*layers, torch.nn.Linear(width, 3))

    def normalised(self, points: Tensor) -> Tensor:
        """World ``[N,3]`` → the fields' cube ``[-1,1]^3`` (the box fits inside it)."""
        return (points - self.center) / self.half_size

    def logits(self, points: Tensor) -> Tensor:
        """``[N]`` occupancy logits at world ``points [N,3]`` (> 0 inside; probability ``sigmoid``)."""
        return -self.occupancy(self.normalised(points))

    def color(self, points: Tensor) -> Tensor:
        """``[N,3]`` colours in [0,1] at world ``points [N,3]``."""
        x = self.normalised(points)
        features = torch.cat([x, self.texture_encoding(((x + 1.0) * 0.5).clamp(0.0, 1.0))], dim=-1)
        return torch.sigmoid(self.texture_mlp(features))

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """``occupancy`` (the implicit field), ``texture_grid`` and ``texture_mlp`` parameters."""
        return {
            "occupancy": list(self.occupancy.parameters()),
            "texture_grid": list(self.texture_encoding.parameters()),
            "texture_mlp": list(self.texture_mlp.parameters()),
        }
