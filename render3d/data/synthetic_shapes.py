"""Procedural test shapes for implicit-surface benchmarks, generated on demand (nothing is shipped).

- :func:`make_body_mesh`: a watertight, human-like body in metres (1.75 m tall, A-pose) with
  five thin fingers per hand (about 1.8 cm across), about 14k vertices: the smooth union of
  capsules and ellipsoids, meshed by marching cubes of its signed distance and decimated.
- :func:`make_shape_collection`: five simple watertight meshes of one family (a shape space
  to learn), :func:`write_shape_collection` to put them in a folder, one ``.ply`` per shape,
  and :func:`make_unseen_shape`, a sixth member for reconstruction by latent optimisation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["body_sdf", "make_body_mesh", "make_shape_collection", "make_unseen_shape", "write_shape_collection"]

BODY_BBOX = ((-0.72, -0.2, -0.05), (1.14, 1.66, 1.81))  # metres: a cube around the body, with a margin


def _capsule(points: torch.Tensor, start, end, radius: float) -> torch.Tensor:
    """Signed distance ``[N]`` to the capsule of ``radius`` around segment start-end."""
    a = torch.tensor(start, dtype=points.dtype)
    b = torch.tensor(end, dtype=points.dtype)
    axis = b - a
    t = ((points - a) @ axis / (axis @ axis)).clamp(0.0, 1.0)
    return (points - a - t[:, None] * axis).norm(dim=1) - radius


def _ellipsoid(points: torch.Tensor, center, radii) -> torch.Tensor:
    """Approximate signed distance ``[N]`` to an axis-aligned ellipsoid (Quilez's bound)."""
    radii = torch.tensor(radii, dtype=points.dtype)
    local = points - torch.tensor(center, dtype=points.dtype)
    k0 = (local / radii).norm(dim=1)
    k1 = (local / radii**2).norm(dim=1)
    return k0 * (k0 - 1.0) / k1.clamp_min(1e-12)


def _smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Polynomial smooth minimum of two distances, blending within ``k``."""
    h = (k - (a - b).abs()).clamp_min(0.0) / k
    return torch.minimum(a, b) - h * h * k / 4.0


def _hand(points: torch.Tensor, side: float) -> torch.Tensor:
    """Palm, four fingers and a thumb of the hand on ``side`` (+1 left, -1 right), A-pose."""
    wrist = np.array([0.56 * side, 0.0, 0.97])
    down = np.array([0.45 * side, 0.0, -0.89])  # along the forearm
    forward = np.array([0.0, 1.0, 0.0])  # palms face the thighs: the hand spans down x forward
    palm_end = wrist + 0.085 * down
    palm = torch.minimum(_capsule(points, wrist + 0.01 * down - 0.022 * forward, palm_end - 0.024 * forward, 0.018),
                         _capsule(points, wrist + 0.01 * down + 0.022 * forward, palm_end + 0.024 * forward, 0.018))
    hand = _smooth_union(palm, _capsule(points, wrist + 0.02 * down, palm_end - 0.01 * down, 0.024), 0.01)
    fingers = None
    for offset, length, spread in ((-0.036, 0.055, -0.3), (-0.012, 0.075, -0.1), (0.012, 0.08, 0.1), (0.036, 0.07, 0.3)):
        base = palm_end + offset * forward - 0.008 * down
        direction = np.cos(spread) * down + np.sin(spread) * forward
        finger = _capsule(points, tuple(base), tuple(base + length * direction), 0.009)
        fingers = finger if fingers is None else torch.minimum(fingers, finger)
    thumb_base = wrist + 0.03 * down + 0.035 * forward
    thumb_dir = 0.6 * down + 0.8 * forward
    fingers = torch.minimum(fingers, _capsule(points, tuple(thumb_base), tuple(thumb_base + 0.06 * thumb_dir), 0.0105))
    return _smooth_union(hand, fingers, 0.008)


def body_sdf(points: torch.Tensor) -> torch.Tensor:
    """Approximate signed distance ``[N]`` (negative inside, metres) of the procedural body at ``[N, 3]``."""
    points = points.to(torch.float32)
    trunk = _smooth_union(_ellipsoid(points, (0.0, 0.0, 1.2), (0.17, 0.11, 0.26)),
                          _ellipsoid(points, (0.0, 0.0, 0.93), (0.16, 0.105, 0.14)), 0.08)
    head = _smooth_union(_ellipsoid(points, (0.0, 0.01, 1.63), (0.075, 0.09, 0.11)),
                         _capsule(points, (0.0, 0.0, 1.42), (0.0, 0.0, 1.56), 0.05), 0.04)
    body = _smooth_union(trunk, head, 0.04)
    for side in (1.0, -1.0):
        leg = _smooth_union(_capsule(points, (0.09 * side, 0.0, 0.9), (0.1 * side, 0.0, 0.5), 0.07),
                            _capsule(points, (0.1 * side, 0.0, 0.5), (0.1 * side, -0.01, 0.1), 0.05), 0.03)
        foot = _capsule(points, (0.1 * side, -0.02, 0.06), (0.11 * side, 0.16, 0.035), 0.04)
        arm = _smooth_union(_capsule(points, (0.18 * side, 0.0, 1.38), (0.38 * side, 0.0, 1.17), 0.045),
                            _capsule(points, (0.38 * side, 0.0, 1.17), (0.56 * side, 0.0, 0.97), 0.036), 0.02)
        limbs = _smooth_union(_smooth_union(leg, foot, 0.03), _smooth_union(arm, _hand(points, side), 0.015), 0.001)
        body = _smooth_union(body, limbs, 0.05)
    return body


def make_body_mesh(vertices: int = 14_000, resolution: int = 256):
    """The procedural body as a watertight ``trimesh.Trimesh`` in metres, about ``vertices`` vertices.

    Marching cubes of :func:`body_sdf` at ``resolution`` cells per axis of :data:`BODY_BBOX`
    (7.3 mm cells, 2.5 per finger width; found by MISE), then quadric decimation (the
    ``fast-simplification`` package, part of the ``shapes`` extra) to ``2 * vertices - 4``
    faces, which keeps the fingers while flattening the mesh where it is smooth.
    """
    from render3d.mise import extract_mesh_mise

    dense = extract_mesh_mise(body_sdf, BODY_BBOX, resolution, 0.0, inside="below")
    return dense.simplify_quadric_decimation(face_count=2 * vertices - 4)


# The shape-space family: a body of revolution (waist and top radii, 0.8 high) with a ring
# handle of varying thickness, all watertight. The unseen member lies inside the ranges the five
# training members span (DeepSDF reconstructs unseen shapes of the categories it learned).
COLLECTION_PARAMETERS = ((0.12, 0.3, 0.04), (0.3, 0.15, 0.04), (0.14, 0.16, 0.06), (0.28, 0.3, 0.06), (0.2, 0.22, 0.03))
UNSEEN_PARAMETERS = (0.2, 0.24, 0.05)
_COLLECTION_BOX = [[-0.6, -0.5, -0.5], [0.7, 0.5, 0.5]]


def _vessel_sdf(waist: float, top: float, handle: float):
    """Signed distance ``[N,3] -> [N]`` of a family member: radius ``waist`` at mid-height
    growing quadratically to ``top`` at both ends, a ring handle of thickness ``handle``."""
    def sdf(points: torch.Tensor) -> torch.Tensor:
        height = points[:, 2]
        radius = waist + (top - waist) * (height / 0.4).clamp(-1.0, 1.0) ** 2
        column = torch.maximum(points[:, :2].norm(dim=1) - radius, height.abs() - 0.4)
        ring = torch.stack([points[:, 0] - top - 0.05, points[:, 2]], 1).norm(dim=1) - 0.12
        return torch.minimum(column, torch.stack([ring, points[:, 1]], 1).norm(dim=1) - handle)

    return sdf


def _vessel_mesh(parameters: tuple[float, float, float], resolution: int):
    from render3d.mesh import extract_mesh

    return extract_mesh(_vessel_sdf(*parameters), _COLLECTION_BOX, resolution, 0.0, inside="below")


def make_shape_collection(resolution: int = 64) -> dict[str, object]:
    """Five watertight meshes of one family (:data:`COLLECTION_PARAMETERS`), so a shared
    decoder can learn them: name -> ``trimesh.Trimesh``."""
    return {f"shape_{index}": _vessel_mesh(parameters, resolution)
            for index, parameters in enumerate(COLLECTION_PARAMETERS)}


def make_unseen_shape(resolution: int = 64):
    """The family member no collection mesh is (:data:`UNSEEN_PARAMETERS`): the shape a
    decoder fitted to the collection reconstructs by latent optimisation."""
    return _vessel_mesh(UNSEEN_PARAMETERS, resolution)


def write_shape_collection(folder, resolution: int = 64) -> list[Path]:
    """Write :func:`make_shape_collection`'s meshes to ``folder/shape_<i>.ply``; the paths."""
    from render3d.mesh import export_mesh

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [export_mesh(mesh, folder / f"{name}.ply") for name, mesh in make_shape_collection(resolution).items()]
