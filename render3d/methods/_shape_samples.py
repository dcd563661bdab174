"""Training samples for the implicit-surface methods, labelled once per fit.

The labels (winding numbers, signed distances) are the expensive part of a fit, so they are
computed once in ``setup`` and training steps draw random batches from them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from render3d.errors import ConfigError


@dataclass
class LabelledSamples:
    """Points in the normalised frame with their labels, for every shape.

    Attributes:
        points: ``[M, 3]`` float32.
        targets: ``[M]`` float32: 1/0 inside/outside (``occupancy``) or the signed distance
            (negative inside, ``sdf``).
        shape_index: ``[M]`` int64 shape of each sample.
    """

    points: torch.Tensor
    targets: torch.Tensor
    shape_index: torch.Tensor

    def to(self, device: torch.device) -> "LabelledSamples":
        return LabelledSamples(self.points.to(device), self.targets.to(device), self.shape_index.to(device))


def sample_counts(n_samples: int, uniform_fraction: float) -> tuple[int, int]:
    """``(near samples per noise scale, uniform samples)`` for ``n_samples`` per shape, two scales."""
    if not 0.0 <= uniform_fraction <= 1.0:
        raise ConfigError(f"uniform_fraction must be in [0, 1], got {uniform_fraction!r}")
    n_uniform = int(round(n_samples * uniform_fraction))
    return (n_samples - n_uniform) // 2, n_uniform


def labelled_samples(meshes: list, label: str, *, n_samples: int, uniform_fraction: float,
                     near_stds: tuple[float, float], bound: float, seed: int) -> LabelledSamples:
    """Near-surface samples at two noise scales plus uniform samples in ``[-bound, bound]^3``
    for each mesh (normalised frame), labelled by ``inside`` (generalised winding numbers) for
    ``label="occupancy"`` or by ``signed_distance`` for ``label="sdf"``.

    Args:
        meshes: ``trimesh.Trimesh`` per shape.
        n_samples: samples per shape.
        near_stds: standard deviations of the Gaussian offsets from surface samples.
        seed: NumPy seed of the sampling (the same seed gives the same samples).
    """
    from render3d.geometry import inside, sample_surface, signed_distance

    n_near, n_uniform = sample_counts(n_samples, uniform_fraction)
    rng = np.random.default_rng(seed)
    points, targets, index = [], [], []
    for shape, mesh in enumerate(meshes):
        surface, _ = sample_surface(mesh, 2 * n_near, seed=int(rng.integers(2**31)))
        stds = np.repeat(np.asarray(near_stds, dtype=np.float64), n_near)[:, None]
        near = surface + rng.standard_normal(surface.shape) * stds
        uniform = rng.uniform(-bound, bound, size=(n_uniform, 3))
        query = np.clip(np.concatenate([near, uniform]), -bound, bound)
        labels = inside(mesh, query).astype(np.float32) if label == "occupancy" else signed_distance(mesh, query)
        points.append(torch.from_numpy(query).float())
        targets.append(torch.as_tensor(np.asarray(labels), dtype=torch.float32))
        index.append(torch.full((len(query),), shape, dtype=torch.int64))
    return LabelledSamples(torch.cat(points), torch.cat(targets), torch.cat(index))
