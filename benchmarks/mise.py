"""MISE vs dense grid evaluation of an implicit field, at 256^3 effective resolution.

    render3d bench mise [--quick] [--device cpu|cuda] [--json out.json]

For each field, the dense grid (:func:`render3d.mesh.sample_field` at ``R + 1`` samples per
axis) and MISE (:func:`render3d.mise.mise_volume` from 32^3 cells up to ``R``) compute the
volume over the training domain ``[-0.55, 0.55]^3``; marching cubes then meshes both
(untimed) to check that the meshes are identical. Fields:

- ``sphere``: the smooth analytic occupancy-like field ``0.35 - |x|`` (nearly free to
  evaluate, so MISE's bookkeeping dominates its time);
- ``torus``: an analytic torus, as above;
- ``mlp``: ``0.35 - |x| + 0.05 * MLP(x)``, a random softplus MLP (3 -> 64 -> 64 -> 1), a
  small network as occupancy and SDF fits use; its cost is what MISE saves.

``R`` is 256 (128 with ``quick``); one warm run at 32^3, then one timed run of each (dense
first). The table gives the fraction of the dense grid's points MISE evaluated, wall and
process CPU seconds of both and the wall-clock speed-up.
"""
from __future__ import annotations

import numpy as np
import torch

from render3d.benchmarks.timing import timed
from render3d.data.shapes import SHAPE_BOUND
from render3d.mesh import mesh_from_volume, sample_field
from render3d.mise import mise_volume

BBOX = [[-SHAPE_BOUND] * 3, [SHAPE_BOUND] * 3]
INITIAL_RESOLUTION = 32


def _fields(device: torch.device) -> dict:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(3, 64), torch.nn.Softplus(beta=10), torch.nn.Linear(64, 64), torch.nn.Softplus(beta=10),
        torch.nn.Linear(64, 1),
    ).to(device)

    def sphere(points):
        return 0.35 - points.norm(dim=-1)

    def torus(points):
        ring = torch.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2) - 0.3
        return 0.1 - torch.sqrt(ring**2 + points[:, 2] ** 2)

    def mlp_field(points):
        return 0.35 - points.norm(dim=-1) + 0.05 * mlp(points).squeeze(1)

    return {"sphere": sphere, "torus": torus, "mlp": mlp_field}


def bench(device: torch.device, quick: bool) -> list[dict]:
    """Rows ``{field, resolution, dense_points, mise_points, fraction, dense_s, mise_s,
    dense_cpu_s, mise_cpu_s, speedup, identical}``; prints them as a table."""
    resolution = 128 if quick else 256
    rows = []
    for name, field in _fields(device).items():
        mise_volume(field, BBOX, INITIAL_RESOLUTION, 0.0, initial_resolution=INITIAL_RESOLUTION, device=device)
        dense_s, dense_cpu_s, dense = timed(lambda: sample_field(field, BBOX, resolution + 1, device=device), device)
        mise_s, mise_cpu_s, (volume, evaluated) = timed(
            lambda: mise_volume(field, BBOX, resolution, 0.0, initial_resolution=INITIAL_RESOLUTION, device=device),
            device,
        )
        rows.append({
            "field": name,
            "device": str(device),
            "resolution": resolution,
            "dense_points": (resolution + 1) ** 3,
            "mise_points": evaluated,
            "fraction": evaluated / (resolution + 1) ** 3,
            "dense_s": dense_s,
            "mise_s": mise_s,
            "dense_cpu_s": dense_cpu_s,
            "mise_cpu_s": mise_cpu_s,
            "speedup": dense_s / mise_s,
            "identical": _same_mesh(volume, dense),
        })
    print_table(rows)
    return rows


def _same_mesh(volume: torch.Tensor, dense: torch.Tensor) -> bool:
    """Marching cubes of both volumes: the same faces, and vertices equal to 1e-6."""
    ours, theirs = mesh_from_volume(volume, BBOX, 0.0), mesh_from_volume(dense, BBOX, 0.0)
    return (ours.vertices.shape == theirs.vertices.shape and np.array_equal(ours.faces, theirs.faces)
            and bool(np.abs(ours.vertices - theirs.vertices).max(initial=0.0) <= 1e-6))


def print_table(rows: list[dict]) -> None:
    """One line per field."""
    print(f"{'field':>7} {'R':>4} {'dense pts':>10} {'MISE pts':>9} {'fraction':>8} {'dense s':>8} {'MISE s':>7} "
          f"{'speed-up':>8} {'dense cpu s':>11} {'MISE cpu s':>10} {'identical':>9}")
    for row in rows:
        print(f"{row['field']:>7} {row['resolution']:>4} {row['dense_points']:>10} {row['mise_points']:>9} "
              f"{row['fraction']:>8.2%} {row['dense_s']:>8.3f} {row['mise_s']:>7.3f} {row['speedup']:>7.2f}x "
              f"{row['dense_cpu_s']:>11.3f} {row['mise_cpu_s']:>10.3f} {str(row['identical']):>9}")
