"""Meshes from implicit fields, and mesh files in and out.

- :func:`extract_mesh` samples any field ``[N, 3] -> [N]`` on a regular grid in bounded-size
  chunks (:func:`sample_field`) and runs :func:`render3d.ops.marching_cubes.marching_cubes` on
  the result (:func:`mesh_from_volume`, also for volumes a method computes itself).
- :func:`keep_large_components` drops the small disconnected pieces ("floaters") that
  fitted fields leave around a scene.
- :func:`export_mesh` / :func:`load_mesh` write and read PLY, OBJ and GLB through ``trimesh``;
  writes are atomic.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from render3d.errors import ConfigError, DataError
from render3d.io.atomic import atomic_path
from render3d.ops.marching_cubes import marching_cubes
from render3d.progress import progress_bar

MESH_EXTENSIONS = (".ply", ".obj", ".glb")
_EXTENSION_LIST = ", ".join(MESH_EXTENSIONS)


def extract_mesh(
    field_fn: Callable[[torch.Tensor], torch.Tensor],
    bbox: torch.Tensor | Sequence[Sequence[float]],
    resolution: int | Sequence[int] = 256,
    level: float = 0.0,
    *,
    chunk_size: int = 2**18,
    device: torch.device | str | None = None,
    close_boundary: bool = False,
    inside: str = "above",
    progress: bool = False,
):
    """Mesh the level set ``field_fn(x) == level`` inside an axis-aligned box.

    The field is evaluated under ``torch.no_grad`` on the grid points
    ``bbox[0] + index * (bbox[1] - bbox[0]) / (resolution - 1)`` (so the grid's corners are the
    box's corners), at most ``chunk_size`` points per call, into one float32 volume on
    ``device``; only that volume and one chunk are in memory at a time.

    Args:
        field_fn: maps float32 points ``[N, 3]`` on ``device`` to values ``[N]`` or ``[N, 1]``
            (any real dtype; an ``nn.Module`` works).
        bbox: ``[2, 3]`` (min corner, max corner) of the box, max > min on every axis.
        resolution: samples per axis, an int or three ints, each >= 2.
        level: the iso-value.
        chunk_size: most points per ``field_fn`` call (>= 1).
        device: where points are made and the volume lives; default: the device of
            ``field_fn``'s first parameter when it is an ``nn.Module`` with parameters, else CPU.
        close_boundary: cap the surface where it leaves the box (watertight output).
        inside: ``"above"`` (occupancy: values greater than ``level`` are inside) or
            ``"below"`` (signed distance: values less than ``level`` are inside). Faces are
            wound with normals pointing out of the inside region.
        progress: show a progress bar (with ETA) over the field evaluations.

    Returns:
        ``trimesh.Trimesh`` with vertices ``[V, 3]`` (float64, as trimesh stores them) in bbox
        coordinates and int64 faces ``[F, 3]`` (unprocessed: vertex order as produced by
        marching cubes). Empty when the field never crosses ``level`` inside the box.

    Raises:
        ConfigError: a bad ``bbox``, ``resolution``, ``chunk_size`` or ``inside``, or a
            ``field_fn`` that returns the wrong shape or non-finite values.

    Example:
        >>> sphere = lambda p: p.norm(dim=-1) - 0.5
        >>> mesh = extract_mesh(sphere, [[-1, -1, -1], [1, 1, 1]], 64, inside="below")
    """
    volume = sample_field(field_fn, bbox, resolution, chunk_size=chunk_size, device=device, progress=progress)
    return mesh_from_volume(volume, bbox, level, close_boundary=close_boundary, inside=inside)


def sample_field(
    field_fn: Callable[[torch.Tensor], torch.Tensor],
    bbox: torch.Tensor | Sequence[Sequence[float]],
    resolution: int | Sequence[int] = 256,
    *,
    chunk_size: int = 2**18,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """``[X, Y, Z]`` float32 values of ``field_fn`` on the grid of :func:`extract_mesh`
    (same arguments and errors)."""
    box = _validated_bbox(bbox)
    shape = _validated_resolution(resolution)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"extract_mesh: chunk_size must be a positive integer, got {chunk_size!r}")
    device = _field_device(field_fn) if device is None else torch.device(device)
    return _sample_field(field_fn, box, shape, int(chunk_size), device, progress)


def mesh_from_volume(volume: torch.Tensor, bbox, level: float = 0.0, *, close_boundary: bool = False,
                     inside: str = "above"):
    """Marching cubes on a sampled ``[X, Y, Z]`` volume whose corner samples sit on the corners
    of ``bbox``; a ``trimesh.Trimesh`` as :func:`extract_mesh` returns."""
    import trimesh

    box = _validated_bbox(bbox)
    if not bool(torch.isfinite(volume).all()):
        raise ConfigError("extract_mesh: the volume has non-finite values (NaN or inf)")
    verts, faces = marching_cubes(volume, level, bbox=box, close_boundary=close_boundary, inside=inside)
    return trimesh.Trimesh(vertices=verts.cpu().numpy(), faces=faces.cpu().numpy(), process=False)


def _validated_bbox(bbox) -> np.ndarray:
    if isinstance(bbox, torch.Tensor):
        bbox = bbox.detach().cpu().double().numpy()
    try:
        box = np.asarray(bbox, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"extract_mesh: bbox must be numeric [2, 3], got {bbox!r}") from None
    if box.shape != (2, 3) or not np.all(np.isfinite(box)) or not np.all(box[1] > box[0]):
        raise ConfigError(f"extract_mesh: bbox must be finite [2, 3] with max > min per axis, got {box.tolist()}")
    return box


def _validated_resolution(resolution) -> tuple[int, int, int]:
    values = [resolution] * 3 if isinstance(resolution, (int, np.integer)) else list(resolution)
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2 for v in values):
        raise ConfigError(f"extract_mesh: resolution must be an int or 3 ints, each >= 2, got {resolution!r}")
    return tuple(int(v) for v in values)


def _field_device(field_fn) -> torch.device:
    if isinstance(field_fn, torch.nn.Module):
        for parameter in field_fn.parameters():
            return parameter.device
    return torch.device("cpu")


@torch.no_grad()
def _sample_field(field_fn, box: np.ndarray, shape, chunk_size: int, device, progress: bool) -> torch.Tensor:
    """``[X, Y, Z]`` float32 field values at the grid points of ``box`` (see extract_mesh)."""
    size_x, size_y, size_z = shape
    origin = torch.tensor(box[0], dtype=torch.float32, device=device)
    step = torch.tensor((box[1] - box[0]) / (np.array(shape) - 1), dtype=torch.float32, device=device)
    volume = torch.empty(shape, dtype=torch.float32, device=device)
    flat = volume.view(-1)
    bar = progress_bar(flat.numel(), "extract_mesh: field", enabled=progress, unit="pt")
    for start in range(0, flat.numel(), chunk_size):
        index = torch.arange(start, min(start + chunk_size, flat.numel()), device=device)
        row = index // size_z
        grid = torch.stack([row // size_y, row % size_y, index - row * size_z], dim=1)
        values = field_fn(grid.float() * step + origin)
        if not isinstance(values, torch.Tensor) or values.shape not in ((index.numel(),), (index.numel(), 1)):
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ConfigError(
                f"extract_mesh: field_fn must map [N, 3] points to [N] values, got {got} for N={index.numel()}"
            )
        if not bool(torch.isfinite(values).all()):
            raise ConfigError("extract_mesh: field_fn returned non-finite values (NaN or inf)")
        flat[start: start + index.numel()] = values.reshape(-1).to(device=device, dtype=torch.float32)
        bar.update(index.numel())
    bar.close()
    return volume


# Pieces smaller than this fraction of the largest piece's area are floaters by default.
MIN_COMPONENT_FRACTION = 0.02


def keep_large_components(mesh, min_fraction: float = MIN_COMPONENT_FRACTION, max_components: int | None = None):
    """The connected pieces of ``mesh`` whose surface area is at least ``min_fraction`` of the
    largest piece's, at most ``max_components`` of them (largest first).

    Pieces are edge-connected groups of faces (marching-cubes meshes share their vertices).
    A scene made of several real objects keeps all of them as long as each is at least
    ``min_fraction`` the size of the largest.

    Args:
        mesh: ``trimesh.Trimesh`` with ``F`` faces.
        min_fraction: in [0, 1]; 0 keeps every piece (up to ``max_components``).
        max_components: keep at most this many pieces (>= 1), or None for no limit.

    Returns:
        ``(trimesh.Trimesh, n_pieces_before, n_pieces_kept)``; the mesh holds only the kept
        faces and the vertices they use (face order and winding preserved).
    """
    import trimesh

    if not (isinstance(min_fraction, (int, float)) and 0.0 <= min_fraction <= 1.0):
        raise ConfigError(f"min_fraction must be a number in [0, 1], got {min_fraction!r}")
    if max_components is not None and (isinstance(max_components, bool) or not isinstance(max_components, int)
                                       or max_components < 1):
        raise ConfigError(f"max_components must be an integer >= 1 or None, got {max_components!r}")
    n_faces = len(mesh.faces)
    if n_faces == 0:
        return mesh, 0, 0
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=n_faces)
    areas = np.bincount(labels, weights=mesh.area_faces)
    order = np.argsort(-areas, kind="stable")
    kept = order[areas[order] >= min_fraction * areas[order[0]]]
    if max_components is not None:
        kept = kept[:max_components]
    face_mask = np.isin(labels, kept)
    faces = np.asarray(mesh.faces)[face_mask]
    used, new_faces = np.unique(faces, return_inverse=True)
    filtered = trimesh.Trimesh(vertices=np.asarray(mesh.vertices)[used], faces=new_faces.reshape(-1, 3), process=False)
    return filtered, len(areas), len(kept)


def export_mesh(mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` (a ``trimesh.Trimesh``) to ``path`` atomically; the format follows the extension.

    Supported: ``.ply`` (binary), ``.obj``, ``.glb``. The file appears only once complete; a
    failed write leaves no file (and no temporary) behind.

    Returns:
        ``Path(path)``.

    Raises:
        ConfigError: an unsupported extension or a mesh without faces.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_EXTENSIONS:
        raise ConfigError(f"export_mesh: {path}: unsupported extension {path.suffix!r} (use one of {_EXTENSION_LIST})")
    if len(getattr(mesh, "faces", ())) == 0:
        raise ConfigError(f"export_mesh: {path}: the mesh is empty (no faces); nothing to write")
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=suffix[1:])
    return path


def load_mesh(path: str | os.PathLike):
    """Read a PLY, OBJ or GLB file as one ``trimesh.Trimesh`` (scenes are concatenated, unprocessed).

    Raises:
        DataError: the file is missing, has an unsupported extension, cannot be parsed, or
            holds no triangles.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise DataError(f"load_mesh: {path}: no such file")
    if path.suffix.lower() not in MESH_EXTENSIONS:
        raise DataError(f"load_mesh: {path}: unsupported extension {path.suffix!r} (use one of {_EXTENSION_LIST})")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as error:  # trimesh raises many unrelated types for a malformed file
        raise DataError(f"load_mesh: {path}: cannot read mesh ({type(error).__name__}: {error})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise DataError(f"load_mesh: {path}: the file holds no triangles")
    return mesh
