"""Geometric queries against triangle meshes: winding numbers, inside/outside, signed distance,
surface samples.

Inside/outside comes from generalised winding numbers (Jacobson et al. 2013), computed by
libigl's fast winding number (Barill et al. 2018: a tree of dipole expansions, about
O(log F) per query), so meshes with holes, self-intersections or several components work: the
winding number is 1 inside a closed, outward-oriented surface, 0 outside, and varies smoothly
near a hole. Distances come from libigl's AABB-tree closest-point query. libigl is the
``shapes`` extra (``pip install 'render3d[shapes]'``); it loads only when a query runs.

Input points may be a ``torch.Tensor`` or anything ``numpy.asarray`` accepts, shape ``[N, 3]``;
results follow the input: a tensor gives a float32 (or bool) tensor on the input's device, an
array gives a float64 (or bool) array. ``mesh`` is a ``trimesh.Trimesh``.
"""
from __future__ import annotations

import numpy as np
import torch

from render3d.errors import BackendError, ConfigError

__all__ = ["inside", "sample_surface", "signed_distance", "winding_numbers"]


def winding_numbers(mesh, points):
    """Generalised winding number ``[N]`` of ``mesh`` at each point ``[N, 3]``.

    About 1 inside and 0 outside an outward-oriented closed mesh (-1 inside an inward-oriented
    one), fractional near holes.
    """
    igl = _import_igl()
    vertices, faces = _mesh_arrays(mesh)
    query = _points_array(points)
    values = igl.fast_winding_number(vertices, faces, query) if len(query) else np.zeros(0)
    return _like(points, np.asarray(values, dtype=np.float64))


def inside(mesh, points):
    """Bool ``[N]``: ``|winding number| > 0.5`` (so a mesh with flipped orientation works too)."""
    winding = winding_numbers(mesh, _points_array(points))
    return _like(points, np.abs(winding) > 0.5)


def signed_distance(mesh, points):
    """Signed distance ``[N]`` to ``mesh``: negative inside, positive outside (DeepSDF's sign).

    The magnitude is the exact distance to the nearest point of the surface (an AABB-tree
    query); the sign is :func:`inside`'s, so it is defined for non-watertight meshes too.
    """
    igl = _import_igl()
    vertices, faces = _mesh_arrays(mesh)
    query = _points_array(points)
    if not len(query):
        return _like(points, np.zeros(0))
    squared, _, _ = igl.point_mesh_squared_distance(query, vertices, faces)
    distance = np.sqrt(np.maximum(np.asarray(squared, dtype=np.float64), 0.0))
    sign = np.where(np.abs(igl.fast_winding_number(vertices, faces, query)) > 0.5, -1.0, 1.0)
    return _like(points, sign * distance)


def sample_surface(mesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-uniform samples on ``mesh`` with the unit normal of the face each lies on.

    Returns:
        points float64 ``[n, 3]`` and normals float64 ``[n, 3]``; the same ``seed`` gives the
        same samples.
    """
    from trimesh.sample import sample_surface as trimesh_sample_surface

    points, face_index = trimesh_sample_surface(mesh, int(n), seed=seed)
    normals = np.asarray(mesh.face_normals, dtype=np.float64)[face_index]
    return np.asarray(points, dtype=np.float64), normals


def _import_igl():
    try:
        import igl
    except ImportError:
        raise BackendError("winding numbers and signed distances need libigl: pip install 'render3d[shapes]'") from None
    return igl


def _mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous float64 vertices ``[V, 3]`` and int64 faces ``[F, 3]`` of a trimesh mesh."""
    faces = getattr(mesh, "faces", None)
    if faces is None or len(faces) == 0:
        raise ConfigError(f"mesh: expected a trimesh.Trimesh with triangles, got {type(mesh).__name__}")
    return (np.ascontiguousarray(mesh.vertices, dtype=np.float64),
            np.ascontiguousarray(faces, dtype=np.int64))


def _points_array(points) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    array = np.ascontiguousarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ConfigError(f"points: expected shape [N, 3], got {list(array.shape)}")
    return array


def _like(points, values: np.ndarray):
    """``values`` as a tensor on ``points``' device when ``points`` is a tensor, else as is."""
    if isinstance(points, torch.Tensor):
        tensor = torch.from_numpy(values)
        return tensor.to(points.device, torch.float32 if tensor.is_floating_point() else torch.bool)
    return values
