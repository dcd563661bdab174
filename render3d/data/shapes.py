"""Shapes as training data for implicit surfaces: a mesh, a point cloud, or a folder of meshes.

Accepted inputs (:data:`SHAPE_EXTENSIONS`):

- a mesh file, ``.obj .ply .off .stl .glb`` (read by trimesh; a GLB scene is flattened with its
  node transforms; duplicate vertices are merged, so an STL triangle soup becomes one surface);
- a point cloud: a ``.ply`` with vertices only (``nx ny nz`` vertex properties are its normals
  unless all zero, as in 3DGS splat files),
  ``.xyz`` / ``.pts`` text with ``x y z`` or ``x y z nx ny nz`` per line (``#`` comments and a
  leading point-count line are skipped), ``.npy`` holding ``[N, 3]`` or ``[N, 6]``, or ``.npz``
  with ``points [N, 3]`` and optionally ``normals [N, 3]``;
- a folder of mesh files: a shape collection (one shape per file, sorted by name).

Every shape is normalised on its own: ``unit = (world - center) / scale`` with ``center`` the
centre of its bounding box and ``scale`` the longest side of that box, so the shape fits in
``[-0.5, 0.5]^3``; ``world = unit * scale + center`` undoes it (:meth:`ShapeData.to_world`).
The cube ``[-SHAPE_BOUND, SHAPE_BOUND]^3`` is the domain fields are trained and meshed on.

A mesh that is not watertight is accepted: inside/outside comes from generalised winding
numbers (:mod:`render3d.geometry`), which degrade gracefully near holes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render3d.errors import DataError

__all__ = [
    "MESH_FILE_EXTENSIONS",
    "MIN_POINTS",
    "POINT_FILE_EXTENSIONS",
    "SHAPE_BOUND",
    "SHAPE_EXTENSIONS",
    "ShapeData",
    "is_shape_path",
    "load_shapes",
]

MESH_FILE_EXTENSIONS = (".obj", ".ply", ".off", ".stl", ".glb")
POINT_FILE_EXTENSIONS = (".ply", ".xyz", ".pts", ".npy", ".npz")
SHAPE_EXTENSIONS = tuple(dict.fromkeys(MESH_FILE_EXTENSIONS + POINT_FILE_EXTENSIONS))
SHAPE_BOUND = 0.55
MIN_POINTS = 100


@dataclass
class ShapeData:
    """One or more normalised shapes and the transforms back to their input coordinates.

    Attributes:
        root: the file or folder given to :func:`load_shapes`.
        kind: ``"mesh"`` (one mesh file), ``"points"`` (one point cloud) or ``"collection"``
            (a folder of meshes).
        names: one per shape, the file stem.
        meshes: ``trimesh.Trimesh`` per shape in normalised coordinates; empty for ``"points"``.
        points: ``[N, 3]`` float32 normalised points (kind ``"points"`` only, else None).
        normals: ``[N, 3]`` float32 unit normals (kind ``"points"`` when the file has them).
        centers: ``[S, 3]`` float32 bounding-box centre per shape, in input units.
        scales: ``[S]`` float32 longest bounding-box side per shape, in input units.
        watertight: per shape; always False for a point cloud.
    """

    root: Path
    kind: str
    names: list[str]
    meshes: list
    points: torch.Tensor | None
    normals: torch.Tensor | None
    centers: torch.Tensor
    scales: torch.Tensor
    watertight: list[bool]

    def __len__(self) -> int:
        return len(self.names)

    def to_world(self, points_unit, index: int = 0):
        """Map normalised points ``[N, 3]`` of shape ``index`` back to input coordinates.

        Accepts a tensor (result on its device and dtype) or an array (float64 result).
        """
        if isinstance(points_unit, torch.Tensor):
            center = self.centers[index].to(points_unit.device, points_unit.dtype)
            return points_unit * self.scales[index].to(points_unit.device, points_unit.dtype) + center
        points = np.asarray(points_unit, dtype=np.float64)
        return points * float(self.scales[index]) + self.centers[index].double().numpy()

    def to_unit(self, points_world, index: int = 0):
        """Map input-coordinate points ``[N, 3]`` of shape ``index`` into the normalised frame."""
        if isinstance(points_world, torch.Tensor):
            center = self.centers[index].to(points_world.device, points_world.dtype)
            return (points_world - center) / self.scales[index].to(points_world.device, points_world.dtype)
        points = np.asarray(points_world, dtype=np.float64)
        return (points - self.centers[index].double().numpy()) / float(self.scales[index])

    def world_mesh(self, index: int = 0):
        """Shape ``index``'s mesh in input coordinates (a new ``trimesh.Trimesh``)."""
        mesh = self.meshes[index].copy()
        mesh.vertices = self.to_world(np.asarray(mesh.vertices), index)
        return mesh

    def describe(self) -> list[str]:
        """Human-readable lines for ``render3d info``: sizes, watertightness, bounds in input units."""
        if self.kind == "points":
            lo, hi = self._world_bounds(np.asarray(self.points, dtype=np.float64), 0)
            return [
                f"{self.root}: point cloud, {len(self.points)} points, normals: "
                f"{'yes' if self.normals is not None else 'no'}",
                f"  bounds: {lo} .. {hi}",
            ]
        lines = [f"{self.root}: shape collection, {len(self)} meshes"] if self.kind == "collection" else []
        for index, (name, mesh) in enumerate(zip(self.names, self.meshes)):
            lo, hi = self._world_bounds(np.asarray(mesh.vertices), index)
            closed = "watertight" if self.watertight[index] else "not watertight (winding numbers decide inside)"
            title = f"{self.root}: mesh" if self.kind == "mesh" else f"  {name}:"
            lines.append(f"{title} {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {closed}")
            lines.append(f"{'  ' if self.kind == 'mesh' else '    '}bounds: {lo} .. {hi}")
        return lines

    def _world_bounds(self, unit_points: np.ndarray, index: int) -> tuple[list[float], list[float]]:
        world = self.to_world(unit_points, index)
        return [round(float(v), 4) for v in world.min(0)], [round(float(v), 4) for v in world.max(0)]


def is_shape_path(path) -> bool:
    """True for a shape file (by extension) or a folder of mesh files that is no image dataset.

    A folder counts as an image dataset (False here) when it has ``transforms_train.json``,
    ``transforms.json``, a COLMAP model or image files, even if it also holds a mesh (e.g. a
    NeRF-synthetic scene with its ground-truth mesh).
    """
    from render3d.data.colmap import find_colmap_model
    from render3d.data.images import photo_folder

    root = Path(path)
    if root.is_file():
        return root.suffix.lower() in SHAPE_EXTENSIONS
    if not root.is_dir() or not _mesh_files(root):
        return False
    image_markers = (root / "transforms_train.json").is_file() or (root / "transforms.json").is_file()
    return not (image_markers or find_colmap_model(root) is not None or photo_folder(root) is not None)


def load_shapes(path) -> ShapeData:
    """Load and normalise the shape(s) at ``path`` (see the module docstring for formats).

    Raises:
        DataError: one line naming the file: a missing path, an unsupported extension, a file
            that cannot be read or holds no triangles (mesh extensions), NaN/inf coordinates,
            a degenerate (zero-size) shape, a point cloud with fewer than :data:`MIN_POINTS`
            points, or a folder with no mesh files or an unreadable one.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_dir():
        files = _mesh_files(root)
        if not files:
            raise DataError(
                f"{root}: no mesh files in the folder (looked for {', '.join(MESH_FILE_EXTENSIONS)})"
            )
        return _mesh_shapes(root, "collection", files, [_read_mesh_file(file) for file in files])
    suffix = root.suffix.lower()
    if suffix not in SHAPE_EXTENSIONS:
        raise DataError(f"{root}: unsupported shape file extension {root.suffix!r} (use one of {', '.join(SHAPE_EXTENSIONS)})")
    if suffix in (".xyz", ".pts", ".npy", ".npz"):
        return _point_shapes(root, *_read_point_file(root))
    loaded = _read_any(root)
    if suffix == ".ply" and _is_point_cloud(loaded):
        return _point_shapes(root, *_ply_points(root, loaded))
    return _mesh_shapes(root, "mesh", [root], [_as_mesh(root, loaded)])


def _mesh_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in MESH_FILE_EXTENSIONS)


def _read_any(path: Path):
    """trimesh's reading of ``path``: a Trimesh, a PointCloud, or a Scene flattened to a Trimesh."""
    import trimesh

    try:
        loaded = trimesh.load(path, process=False)
        if isinstance(loaded, trimesh.Scene):
            loaded = loaded.to_mesh() if len(loaded.geometry) else trimesh.Trimesh()
    except Exception as error:  # trimesh raises many unrelated types for a malformed file
        message = str(error).splitlines()[0] if str(error) else ""
        raise DataError(f"{path}: cannot read it as a mesh ({type(error).__name__}: {message})") from None
    return loaded


def _is_point_cloud(loaded) -> bool:
    import trimesh

    return isinstance(loaded, trimesh.PointCloud) or (isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) == 0
                                                     and len(loaded.vertices) > 0)


def _read_mesh_file(path: Path):
    return _as_mesh(path, _read_any(path))


def _as_mesh(path: Path, loaded):
    """A processed (vertices merged) ``trimesh.Trimesh`` after checking it is a usable surface."""
    import trimesh

    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise DataError(f"{path}: not a mesh or an empty mesh (no triangles)")
    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    if not np.all(np.isfinite(vertices)):
        raise DataError(f"{path}: the mesh has NaN or infinite vertex coordinates")
    mesh = trimesh.Trimesh(vertices=vertices, faces=np.asarray(loaded.faces, dtype=np.int64), process=True)
    if len(mesh.faces) == 0 or float(mesh.area) <= 0.0:
        raise DataError(f"{path}: empty mesh (its triangles have no area)")
    return mesh


def _read_point_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Points ``[N, 3]`` and optional normals ``[N, 3]`` (float64) of an .xyz/.pts/.npy/.npz file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "points" not in archive.files:
                    raise DataError(f"{path}: an .npz point cloud needs a 'points' array (found {archive.files})")
                points = np.asarray(archive["points"], dtype=np.float64)
                normals = np.asarray(archive["normals"], dtype=np.float64) if "normals" in archive.files else None
            return _checked_columns(path, points, normals)
        if suffix == ".npy":
            table = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        else:
            table = _read_text_table(path)
    except DataError:
        raise
    except (OSError, ValueError, TypeError) as error:
        message = str(error).splitlines()[0] if str(error) else ""
        raise DataError(f"{path}: cannot read it as a point cloud ({type(error).__name__}: {message})") from None
    if table.ndim != 2 or table.shape[1] not in (3, 6):
        raise DataError(f"{path}: expected a [N, 3] or [N, 6] table of x y z [nx ny nz], got shape {list(table.shape)}")
    return _checked_columns(path, table[:, :3], table[:, 3:] if table.shape[1] == 6 else None)


def _read_text_table(path: Path) -> np.ndarray:
    """``[N, C]`` numbers of a text point file; a first line with a single number (a count) is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].replace(",", " ").split()
        if fields:
            rows.append([float(value) for value in fields])
    if rows and len(rows[0]) == 1:
        rows = rows[1:]
    if not rows or len({len(row) for row in rows}) != 1:
        raise DataError(f"{path}: expected the same number of values (3 or 6) on every line")
    return np.asarray(rows, dtype=np.float64)


def _ply_points(path: Path, loaded) -> tuple[np.ndarray, np.ndarray | None]:
    points = np.asarray(loaded.vertices, dtype=np.float64)
    normals = None
    vertex = loaded.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    if vertex is not None and all(name in (vertex.dtype.names or ()) for name in ("nx", "ny", "nz")):
        normals = np.stack([np.asarray(vertex[name], dtype=np.float64).reshape(-1) for name in ("nx", "ny", "nz")], 1)
    return _checked_columns(path, points, normals)


def _checked_columns(path: Path, points: np.ndarray, normals: np.ndarray | None):
    if points.ndim != 2 or points.shape[1] != 3:
        raise DataError(f"{path}: points must be [N, 3], got shape {list(points.shape)}")
    if len(points) < MIN_POINTS:
        raise DataError(f"{path}: {len(points)} points; a point cloud needs at least {MIN_POINTS}")
    if not np.all(np.isfinite(points)):
        raise DataError(f"{path}: the point cloud has NaN or infinite coordinates")
    if normals is not None and normals.shape == points.shape and not np.any(normals):
        normals = None  # all zero: a placeholder (3DGS splat files write nx = ny = nz = 0)
    if normals is not None:
        if normals.shape != points.shape:
            raise DataError(f"{path}: normals must be [N, 3] like the points, got shape {list(normals.shape)}")
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        if not np.all(np.isfinite(normals)) or not np.all(length > 0):
            raise DataError(f"{path}: the normals have NaN, infinite or zero-length entries")
        normals = normals / length
    return points, normals


def _normalisation(path: Path, points: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = points.min(axis=0), points.max(axis=0)
    scale = float(np.max(hi - lo))
    if not scale > 0.0:
        raise DataError(f"{path}: degenerate shape: all points coincide (zero-size bounding box)")
    return (lo + hi) / 2.0, scale


def _point_shapes(root: Path, points: np.ndarray, normals: np.ndarray | None) -> ShapeData:
    center, scale = _normalisation(root, points)
    return ShapeData(
        root=root,
        kind="points",
        names=[root.stem],
        meshes=[],
        points=torch.from_numpy((points - center) / scale).float(),
        normals=None if normals is None else torch.from_numpy(normals).float(),
        centers=torch.tensor(center[None], dtype=torch.float32),
        scales=torch.tensor([scale], dtype=torch.float32),
        watertight=[False],
    )


def _mesh_shapes(root: Path, kind: str, files: list[Path], meshes: list) -> ShapeData:
    centers, scales, normalised = [], [], []
    for file, mesh in zip(files, meshes):
        center, scale = _normalisation(file, np.asarray(mesh.vertices))
        unit = mesh.copy()
        unit.vertices = (np.asarray(mesh.vertices) - center) / scale
        centers.append(center)
        scales.append(scale)
        normalised.append(unit)
    return ShapeData(
        root=root,
        kind=kind,
        names=[file.stem for file in files],
        meshes=normalised,
        points=None,
        normals=None,
        centers=torch.tensor(np.stack(centers), dtype=torch.float32),
        scales=torch.tensor(scales, dtype=torch.float32),
        watertight=[bool(mesh.is_watertight) for mesh in normalised],
    )
