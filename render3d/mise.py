"""Multiresolution IsoSurface Extraction (MISE, Mescheder et al. 2019, Occupancy Networks §3.3).

A dense grid at the final resolution spends almost all its field evaluations far from the
surface. MISE evaluates a coarse grid, then repeatedly halves the cell size, evaluating the
field only at the new grid points of cells that the surface may cross:

1. Evaluate every point of the coarse grid (``initial_resolution`` cells per axis).
2. A cell is *active* when its eight corners are not all on the same side of ``level``.
   While an active cell has a corner whose value was interpolated rather than evaluated,
   evaluate those corners and look again (this follows the surface out of the regions refined
   so far, so a surface crossing a cell face between two coarse samples is still found).
3. Halve the cells: trilinearly interpolate the volume to the finer grid, then evaluate the
   field at the new points of the active cells and of their 26 neighbours (the dilation guards
   against a surface that leaves an active cell through a face without changing any coarse
   corner's side). Repeat from 2 until ``resolution``.

An interpolated value lies between the evaluated corner values of its coarse cell, so it is on
their (common) side of the level. After the last step every cell that marching cubes
triangulates has all eight corners evaluated, and every other cell is on one side of the level,
so the mesh is the dense grid's mesh, vertex for vertex, wherever the coarse grid resolves the
surface: only a piece of surface that lies wholly inside inactive coarse cells (thinner than a
coarse cell, and touching no active cell) can be missed.

The grid is :func:`render3d.mesh.extract_mesh`'s: ``resolution`` counts *cells* per axis, so
the volume has ``resolution + 1`` samples per axis, at ``bbox[0] + index * (bbox[1] -
bbox[0]) / resolution`` (the same float32 coordinates as ``sample_field(field,
bbox, resolution + 1)``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from render3d.errors import ConfigError
from render3d.mesh import _field_device, _validated_bbox, mesh_from_volume

__all__ = ["cell_corners", "coarsest_resolution", "dilate_cells", "extract_mesh_mise", "mise_volume"]

_INSIDE_CHOICES = ("above", "below")


def mise_volume(
    field: Callable[[torch.Tensor], torch.Tensor],
    bbox: torch.Tensor | Sequence[Sequence[float]],
    resolution: int,
    level: float = 0.0,
    *,
    initial_resolution: int = 32,
    inside: str = "above",
    device: torch.device | str | None = None,
    chunk_size: int = 2**18,
) -> tuple[torch.Tensor, int]:
    """The ``[R+1, R+1, R+1]`` float32 volume of ``field`` on the grid, evaluated by MISE.

    Args:
        field: maps float32 points ``[N, 3]`` on ``device`` to values ``[N]`` or ``[N, 1]``;
            called under ``torch.no_grad`` with at most ``chunk_size`` points.
        bbox: ``[2, 3]`` (min corner, max corner) of the grid.
        resolution: cells per axis ``R`` of the final grid: ``initial_resolution * 2**k``.
        level: the iso-value.
        initial_resolution: cells per axis of the coarse grid that is evaluated in full (>= 1).
        inside: ``"above"`` (occupancy: values greater than ``level`` are inside) or
            ``"below"`` (signed distance); the surface and the volume do not depend on it
            except for samples exactly at ``level``, which are outside either way.
        device: where points and volume live; default as for ``extract_mesh``.
        chunk_size: most points per ``field`` call.

    Returns:
        ``(volume, n_evaluated)``: evaluated samples hold ``field``'s values, the others a
        trilinear interpolation on the correct side of ``level``; ``n_evaluated`` counts the
        points ``field`` was called on (each at most once).

    Raises:
        ConfigError: a bad ``bbox``, ``resolution`` (not ``initial_resolution`` times a power
            of two), ``initial_resolution``, ``inside`` or ``chunk_size``, or a ``field`` that
            returns the wrong shape or non-finite values.
    """
    box = _validated_bbox(bbox)
    for name, value in (("initial_resolution", initial_resolution), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"mise: {name} must be a positive integer, got {value!r}")
    if (isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < initial_resolution
            or resolution % initial_resolution or not _is_power_of_two(resolution // initial_resolution)):
        raise ConfigError(
            f"mise: resolution must be initial_resolution ({initial_resolution}) times a power of two, got {resolution!r}"
        )
    if inside not in _INSIDE_CHOICES:
        raise ConfigError(f"mise: inside={inside!r} must be one of {_INSIDE_CHOICES}")
    device = _field_device(field) if device is None else torch.device(device)
    grid = _Grid(field, box, int(resolution), float(level), inside == "above", device, int(chunk_size))
    return grid.run(int(initial_resolution))


def coarsest_resolution(resolution: int, limit: int) -> int:
    """The ``initial_resolution`` for :func:`mise_volume`: ``resolution`` (cells per axis)
    halved while it is even and above ``limit`` (a grid that cannot be halved stays whole)."""
    while resolution % 2 == 0 and resolution > limit:
        resolution //= 2
    return resolution


def extract_mesh_mise(
    field: Callable[[torch.Tensor], torch.Tensor],
    bbox: torch.Tensor | Sequence[Sequence[float]],
    resolution: int = 256,
    level: float = 0.0,
    *,
    initial_resolution: int = 32,
    inside: str = "above",
    device: torch.device | str | None = None,
    chunk_size: int = 2**18,
):
    """Mesh ``field == level`` by MISE + marching cubes: :func:`mise_volume` (same arguments)
    then :func:`render3d.mesh.mesh_from_volume`; a ``trimesh.Trimesh`` in bbox coordinates."""
    volume, _ = mise_volume(field, bbox, resolution, level, initial_resolution=initial_resolution, inside=inside,
                            device=device, chunk_size=chunk_size)
    return mesh_from_volume(volume, bbox, level, inside=inside)


class _Grid:
    """The refinement state: the volume at the current cell count and which samples were evaluated."""

    def __init__(self, field, box: np.ndarray, resolution: int, level: float, above: bool, device, chunk_size: int):
        self.field, self.resolution, self.level, self.above = field, resolution, level, above
        self.device, self.chunk_size = device, chunk_size
        self.origin = torch.tensor(box[0], dtype=torch.float32, device=device)
        self.step = torch.tensor((box[1] - box[0]) / resolution, dtype=torch.float32, device=device)
        self.n_evaluated = 0

    @torch.no_grad()
    def run(self, cells: int) -> tuple[torch.Tensor, int]:
        self.volume = torch.empty((cells + 1,) * 3, dtype=torch.float32, device=self.device)
        self.evaluated = torch.zeros((cells + 1,) * 3, dtype=torch.bool, device=self.device)
        self._evaluate(torch.ones_like(self.evaluated), cells)
        while True:
            active = self._settle(cells)
            if cells == self.resolution:
                return self.volume, self.n_evaluated
            self._subdivide(cells)
            cells *= 2
            self._evaluate(cell_corners(upsample_cells(dilate_cells(active))) & ~self.evaluated, cells)

    def _settle(self, cells: int) -> torch.Tensor:
        """Evaluate the interpolated corners of active cells until there are none; the active cells."""
        while True:
            active = _straddling(self._is_inside())
            missing = cell_corners(active) & ~self.evaluated
            if not bool(missing.any()):
                return active
            self._evaluate(missing, cells)

    def _subdivide(self, cells: int) -> None:
        """Trilinear interpolation to ``2 * cells`` cells per axis; old samples keep their flags."""
        fine = 2 * cells + 1
        self.volume = torch.nn.functional.interpolate(
            self.volume[None, None], size=(fine,) * 3, mode="trilinear", align_corners=True
        )[0, 0]
        evaluated = torch.zeros((fine,) * 3, dtype=torch.bool, device=self.device)
        evaluated[::2, ::2, ::2] = self.evaluated
        self.evaluated = evaluated

    def _is_inside(self) -> torch.Tensor:
        return self.volume > self.level if self.above else self.volume < self.level

    def _evaluate(self, mask: torch.Tensor, cells: int) -> None:
        """Call the field at the samples in ``mask`` (a ``[cells+1]^3`` bool grid), in chunks."""
        index = mask.reshape(-1).nonzero().squeeze(1)
        size = cells + 1
        stride = self.resolution // cells
        flat = self.volume.view(-1)
        for start in range(0, index.numel(), self.chunk_size):
            chunk = index[start: start + self.chunk_size]
            row = chunk // size
            grid = torch.stack([row // size, row % size, chunk - row * size], dim=1) * stride
            values = self.field(grid.float() * self.step + self.origin)
            if not isinstance(values, torch.Tensor) or values.shape not in ((chunk.numel(),), (chunk.numel(), 1)):
                got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                raise ConfigError(f"mise: field must map [N, 3] points to [N] values, got {got} for N={chunk.numel()}")
            if not bool(torch.isfinite(values).all()):
                raise ConfigError("mise: field returned non-finite values (NaN or inf)")
            flat[chunk] = values.reshape(-1).to(device=self.device, dtype=torch.float32)
        self.evaluated.view(-1)[index] = True
        self.n_evaluated += index.numel()


def _straddling(inside: torch.Tensor) -> torch.Tensor:
    """``[n, n, n]`` bool: cells of an ``[n+1]^3`` inside mask whose corners are mixed (any and
    all over each cell's 2x2x2 corners, one axis at a time)."""
    any_inside, all_inside = inside, inside
    for axis in range(3):
        size = any_inside.shape[axis] - 1
        any_inside = any_inside.narrow(axis, 0, size) | any_inside.narrow(axis, 1, size)
        all_inside = all_inside.narrow(axis, 0, size) & all_inside.narrow(axis, 1, size)
    return any_inside & ~all_inside


def cell_corners(cells: torch.Tensor) -> torch.Tensor:
    """``[n+1]^3`` bool: the grid points that are a corner of any cell in the ``[n]^3`` mask
    (one axis at a time)."""
    for axis in range(3):
        size = cells.shape[axis]
        shape = list(cells.shape)
        shape[axis] = size + 1
        points = torch.zeros(shape, dtype=torch.bool, device=cells.device)
        points.narrow(axis, 0, size).copy_(cells)
        points.narrow(axis, 1, size).logical_or_(cells)
        cells = points
    return cells


def dilate_cells(cells: torch.Tensor) -> torch.Tensor:
    """``[X,Y,Z]`` bool: the ``[X,Y,Z]`` bool cells and their 26 neighbours (a 3x3x3 dilation,
    axis by axis)."""
    for axis in range(3):
        grown = cells.clone()
        grown.narrow(axis, 1, cells.shape[axis] - 1).logical_or_(cells.narrow(axis, 0, cells.shape[axis] - 1))
        grown.narrow(axis, 0, cells.shape[axis] - 1).logical_or_(cells.narrow(axis, 1, cells.shape[axis] - 1))
        cells = grown
    return cells


def upsample_cells(cells: torch.Tensor) -> torch.Tensor:
    """``[2n]^3``: each cell of the ``[n]^3`` mask split into its eight children."""
    n = cells.shape[0]
    return cells[:, None, :, None, :, None].expand(n, 2, n, 2, n, 2).reshape(2 * n, 2 * n, 2 * n)


def _is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0
