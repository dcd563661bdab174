"""Marching cubes: a triangle mesh of the level set of a dense scalar volume.

Vectorized PyTorch only (no loop over cells), so the same code runs on CPU and CUDA tensors.
The output is not differentiable (``torch.no_grad``): vertex positions are a sampler's output,
not an op's.

Algorithm:

1. ``inside = volume > level`` (or ``<`` for ``inside="below"``), padded by one replicated
   layer at the upper end of each axis, so that every sample is corner 0 of a cell; each
   cell's 8-bit case index is assembled from that mask with three shifted uint8 adds.
2. Only *active* cells (case neither 0 nor 255) are processed further. Cells reaching into
   the padding (*virtual* cells) emit no triangles; they only own edges, as below.
3. Every grid edge whose endpoints differ gets exactly one vertex, placed by linear
   interpolation, kept at least ``EDGE_MARGIN`` (in cells) from both ends: a sample exactly at
   ``level`` would otherwise put the vertices of all its crossed edges on the same point, and
   mesh tools that merge coincident vertices turn the triangles between them into degenerate
   ones (an open mesh). An edge is owned by the cell whose corner 0 is its lower endpoint; that cell
   is active whenever the edge is crossed. A triangle corner on a cell's edge ``e`` finds the
   owner's rank among the active cells through a dense map over the grid, then the owner's
   vertex for ``e``'s axis, so cells sharing an edge share its vertex.
4. Ambiguous faces (inside corners on one diagonal only) are decided by the asymptotic
   decider: the inside corners are joined across the face when the bilinear interpolant's
   saddle value is inside, i.e. when ``(f00*f11 - f10*f01 > 0) == (corner 00 is inside)`` with
   ``f = volume - level``. Both cells sharing a face evaluate this from the same four values
   and agree, so closed surfaces come out as closed 2-manifolds (every edge in two faces).
5. Triangles come from tables built once from the cube geometry
   (:mod:`render3d.ops._mc_tables`) and are wound so that their right-hand normals point from
   the inside region to the outside region.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch

from render3d.errors import ConfigError
from render3d.ops import _mc_tables

INSIDE_CHOICES = ("above", "below")
# Closest a vertex comes to either end of its edge, in cells (far below any test tolerance).
EDGE_MARGIN = 1e-5


def marching_cubes(
    volume: torch.Tensor,
    level: float = 0.0,
    *,
    bbox: torch.Tensor | Sequence[Sequence[float]] | None = None,
    spacing: Sequence[float] | None = None,
    close_boundary: bool = False,
    inside: str = "above",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract the iso-surface ``volume == level`` as a triangle mesh.

    Args:
        volume: ``[X, Y, Z]`` scalar samples on a regular grid, any real dtype (integer and
            bool volumes are read as float32, half precision is computed in float32), on any
            device. Must be finite.
        level: the iso-value (finite).
        bbox: optional ``[2, 3]`` (min corner, max corner) of the world box the grid spans:
            ``volume[0, 0, 0]`` maps to ``bbox[0]`` and ``volume[-1, -1, -1]`` to ``bbox[1]``
            (an axis with a single sample maps to ``bbox[0]``). Exclusive with ``spacing``.
        spacing: optional 3 positive grid steps; vertices are ``index * spacing``. Without
            ``bbox`` and ``spacing`` vertices are in index space.
        close_boundary: pad the volume with one layer of outside samples so that surfaces
            cut by the volume's border are capped on the border; the output is then a closed
            surface (watertight) whenever any sample is inside.
        inside: ``"above"`` (default, occupancy / density convention): samples greater than
            ``level`` are inside; ``"below"`` (signed distance convention): samples less than
            ``level`` are inside. Samples equal to ``level`` are outside in both.

    Returns:
        verts: ``[V, 3]`` float32 vertex positions on ``volume``'s device, coordinates in the
            order of ``volume``'s axes: one per grid edge the surface crosses (shared by the
            cells around that edge, no duplicates), plus one at the centre of each cell whose
            ambiguous configuration cannot be triangulated without a chord on a cell face
            (rare on smooth fields; scikit-image's Lewiner tables add such vertices too).
        faces: ``[F, 3]`` int64 vertex indices; each triangle's right-hand normal points from
            the inside region to the outside region (outward for a closed object). Both are
            empty (``[0, 3]``) when the surface does not cross the grid, e.g. when ``level``
            lies outside the range of ``volume`` (with ``close_boundary`` and every sample
            inside, the output is the box's surface).

    Memory: besides the outputs, about 6 bytes per sample (int32 map + masks; 10 bytes from
    2^31 / 3 samples on) plus a few tens of bytes per output triangle.

    Raises:
        ConfigError: a non-3D or non-finite ``volume``, a non-finite ``level``, a malformed
            ``bbox`` or ``spacing``, or an unknown ``inside``.

    Example:
        >>> g = torch.linspace(-1, 1, 64)
        >>> x, y, z = torch.meshgrid(g, g, g, indexing="ij")
        >>> sdf = (x**2 + y**2 + z**2).sqrt() - 0.5
        >>> verts, faces = marching_cubes(sdf, 0.0, bbox=[[-1] * 3, [1] * 3], inside="below")
    """
    volume = _validated_volume(volume)
    level = _validated_level(level)
    if inside not in INSIDE_CHOICES:
        raise ConfigError(f"marching_cubes: inside={inside!r} must be one of {INSIDE_CHOICES}")
    original_shape = tuple(volume.shape)
    scale, origin = _index_to_world(original_shape, bbox, spacing)
    with torch.no_grad():
        if close_boundary:
            # Samples equal to ``level`` are outside under both conventions.
            volume = torch.nn.functional.pad(volume, (1, 1, 1, 1, 1, 1), value=level)
        verts, faces = _extract(volume.contiguous(), level, inside == "above")
        if close_boundary:
            # Cap vertices lie on the edges into the padding; project them onto the border.
            limit = torch.tensor(original_shape, dtype=verts.dtype, device=verts.device) - 1
            verts = torch.minimum((verts - 1).clamp_(min=0), limit)
        verts = verts * scale.to(verts.device) + origin.to(verts.device)
    return verts, faces


def _validated_volume(volume) -> torch.Tensor:
    if not isinstance(volume, torch.Tensor):
        try:
            volume = torch.as_tensor(np.asarray(volume))
        except (TypeError, ValueError, RuntimeError) as error:
            raise ConfigError(f"marching_cubes: volume is not array-like ({error})") from None
    if volume.dim() != 3:
        raise ConfigError(f"marching_cubes: volume must be 3-D [X, Y, Z], got shape {tuple(volume.shape)}")
    if volume.is_complex():
        raise ConfigError(f"marching_cubes: volume must be real, got {volume.dtype}")
    if not volume.is_floating_point() or volume.dtype in (torch.float16, torch.bfloat16):
        volume = volume.float()
    if volume.numel():
        # One pass for both extremes; NaN propagates into them and inf shows as an extreme.
        low, high = torch.aminmax(volume)
        if not bool(torch.isfinite(low) & torch.isfinite(high)):
            raise ConfigError("marching_cubes: volume contains non-finite values (NaN or inf)")
    return volume


def _validated_level(level) -> float:
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ConfigError(f"marching_cubes: level must be a number, got {level!r}") from None
    if not np.isfinite(level):
        raise ConfigError(f"marching_cubes: level must be finite, got {level}")
    return level


def _index_to_world(shape, bbox, spacing) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale [3], origin [3])`` float32 so that ``world = index * scale + origin``."""
    if bbox is not None and spacing is not None:
        raise ConfigError("marching_cubes: give either bbox or spacing, not both")
    if bbox is not None:
        box = _float_array(bbox, "bbox", (2, 3))
        if not np.all(box[1] > box[0]):
            raise ConfigError(f"marching_cubes: bbox max corner must exceed min corner, got {box.tolist()}")
        steps = np.maximum(np.asarray(shape, dtype=np.float64) - 1, 1)
        return torch.from_numpy((box[1] - box[0]) / steps).float(), torch.from_numpy(box[0]).float()
    if spacing is not None:
        step = _float_array(spacing, "spacing", (3,))
        if not np.all(step > 0):
            raise ConfigError(f"marching_cubes: spacing must be positive, got {step.tolist()}")
        return torch.from_numpy(step).float(), torch.zeros(3)
    return torch.ones(3), torch.zeros(3)


def _float_array(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"marching_cubes: {name} must be numeric with shape {list(shape)}") from None
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise ConfigError(f"marching_cubes: {name} must be finite with shape {list(shape)}, got {array.tolist()}")
    return array


@functools.lru_cache(maxsize=8)
def _device_tables(device: torch.device) -> dict[str, torch.Tensor]:
    """The case tables (see :func:`_mc_tables.build_tables`) as tensors on ``device``."""
    return {name: torch.from_numpy(table).to(device) for name, table in _mc_tables.build_tables().items()}


def _empty_mesh(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(0, 3, device=device), torch.zeros(0, 3, dtype=torch.int64, device=device)


def _extract(volume: torch.Tensor, level: float, inside_above: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Index-space marching cubes on a contiguous ``[X, Y, Z]`` volume (steps 1-5 above)."""
    device = volume.device
    if min(volume.shape) < 2:
        return _empty_mesh(device)
    shape = tuple(volume.shape)
    # The slot map is allocated first so that its memory doubles as scratch for the case grid
    # (at least 3.75 bytes per sample are needed there). Slots go up to 3 * active cells.
    index_dtype = torch.int32 if 3 * volume.numel() < 2**31 else torch.int64
    slot_map = torch.empty(volume.numel(), dtype=index_dtype, device=device)
    cells, cases, real = _active_cells(_padded_inside(volume, level, inside_above), slot_map)
    if real.numel() == 0:
        return _empty_mesh(device)
    tables = _device_tables(device)
    flat_volume = volume.view(-1)
    verts, edges = _edge_vertices(flat_volume, level, cells, cases, slot_map, tables["owned_crossings"], shape)
    cells, cases = cells.gather(0, real), cases.gather(0, real)
    configs = _configurations(
        flat_volume, level, cells, cases, tables["ambiguous_faces"], tables["face_corners"], edges.corner_offset
    )
    verts, centre_of_cell = _centre_vertices(verts, cells, configs, tables, edges)
    faces = _triangles(cells, configs, tables, edges, centre_of_cell)
    return verts, faces


def _padded_inside(volume: torch.Tensor, level: float, inside_above: bool) -> torch.Tensor:
    """``[X+1, Y+1, Z+1]`` bool inside mask; the last layer along each axis repeats the one before."""
    size_x, size_y, size_z = volume.shape
    inside = torch.empty((size_x + 1, size_y + 1, size_z + 1), dtype=torch.bool, device=volume.device)
    compare = torch.gt if inside_above else torch.lt
    compare(volume, level, out=inside[:size_x, :size_y, :size_z])
    inside[size_x] = inside[size_x - 1]
    inside[:, size_y] = inside[:, size_y - 1]
    inside[:, :, size_z] = inside[:, :, size_z - 1]
    return inside


def _active_cells(inside: torch.Tensor, scratch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cells the surface passes through, virtual ones included.

    Args:
        inside: ``[X+1, Y+1, Z+1]`` bool from :func:`_padded_inside`; overwritten.
        scratch: ``[X*Y*Z]`` int32 or int64 buffer used as work space (its content is clobbered).

    Returns:
        cells: ``[M]`` int64 linear index in the ``[X, Y, Z]`` grid of each active cell's
            corner 0, ascending.
        cases: ``[M]`` int64 case index (bit ``c`` set when corner ``c`` is inside).
        real: ``[M_real]`` int64 positions in ``cells`` of the cells inside the volume.
    """
    size_x, size_y, size_z = (n - 1 for n in inside.shape)
    bits = inside.view(torch.uint8)
    work = scratch.view(torch.uint8)
    plane = (size_x + 1) * (size_y + 1)
    along_z = work[: plane * size_z].view(size_x + 1, size_y + 1, size_z)
    along_y = work[plane * size_z: plane * size_z + (size_x + 1) * size_y * size_z].view(size_x + 1, size_y, size_z)
    case_grid = bits.view(-1)[: size_x * size_y * size_z]
    # Corner c = 4*dx + 2*dy + dz: add neighbours along z, then y, then x with weights 2, 4, 16.
    torch.add(bits[:, :, :-1], bits[:, :, 1:], alpha=2, out=along_z)
    torch.add(along_z[:, :-1], along_z[:, 1:], alpha=4, out=along_y)
    torch.add(along_y[:-1], along_y[1:], alpha=16, out=case_grid.view(size_x, size_y, size_z))
    # uint8 wraps 0 to 255, so ``case - 1 < 254`` keeps exactly the cases 1..254 (as 1).
    active = torch.sub(case_grid, 1, out=work[: case_grid.numel()]).lt_(254).view(size_x, size_y, size_z)
    # Virtual cells (corner 0 on the last layer of an axis) are marked with values above 1.
    active[-1] *= 2
    active[:, -1] *= 2
    active[:, :, -1] *= 2
    active = active.view(-1)
    cells = torch.nonzero(active).view(-1)
    real = torch.nonzero(active.gather(0, cells) == 1).view(-1)
    return cells, case_grid.gather(0, cells).long(), real


class _EdgeVertices:
    """Finds the vertex on a cell's local edge (0..11) through the edge's owner cell.

    Attributes:
        slot_map: ``[X*Y*Z]`` int32 (int64 from 2^31 / 3 samples on), ``3 * rank`` of each
            active cell among all active cells (entries of inactive cells are never read).
        vertex_of_slot: ``[3*M]`` int64, vertex id of active cell ``m``'s edge along ``axis``
            at ``3*m + axis`` (meaningful only for crossed edges).
        edge_offset, edge_axis: ``[13]`` int64 linear offset of each local edge's lower corner
            from corner 0, and the edge's axis (0 for the centre placeholder, index 12).
        corner_offset: ``[8]`` int64 linear offset of each corner from corner 0.
    """

    def __init__(self, cells: torch.Tensor, vertex_of_slot: torch.Tensor, slot_map: torch.Tensor, shape):
        device = cells.device
        slot_map[cells] = torch.arange(0, 3 * cells.numel(), 3, dtype=slot_map.dtype, device=device)
        self.slot_map = slot_map
        self.vertex_of_slot = vertex_of_slot
        strides = (shape[1] * shape[2], shape[2], 1)
        corner = [sum(o * s for o, s in zip(_mc_tables.corner_offset(c), strides)) for c in range(8)]
        self.corner_offset = torch.tensor(corner, device=device)
        self.edge_offset = torch.tensor([corner[_mc_tables.edge_corners(e)[0]] for e in range(12)] + [0], device=device)
        self.edge_axis = torch.tensor([e // 4 for e in range(12)] + [0], device=device)

    def lookup(self, corner0: torch.Tensor, local_edges: torch.Tensor) -> torch.Tensor:
        """Vertex ids (int64, shape of ``local_edges``) of crossed edges ``local_edges`` (int64,
        values 0..11) of the cells with corner-0 indices ``corner0`` (int64, broadcast)."""
        slots = self.slot_map[corner0 + self.edge_offset[local_edges]] + self.edge_axis[local_edges]
        return self.vertex_of_slot[slots]


def _edge_vertices(
    flat_volume: torch.Tensor,
    level: float,
    cells: torch.Tensor,
    cases: torch.Tensor,
    slot_map: torch.Tensor,
    owned_crossings: torch.Tensor,
    shape: tuple[int, int, int],
) -> tuple[torch.Tensor, _EdgeVertices]:
    """One vertex per crossed grid edge, found through the active cells that own them.

    Args:
        flat_volume: ``[X*Y*Z]`` samples; cells, cases: ``[M]`` int64 from :func:`_active_cells`;
        slot_map: ``[X*Y*Z]`` int32 or int64 buffer to fill; owned_crossings: ``[256, 3]`` uint8 table.

    Returns:
        verts: ``[V, 3]`` float32 index-space positions, ordered by owner cell then axis.
        edges: the lookup from a cell's local edge to its vertex id.
    """
    device = cells.device
    crossed = torch.gather(owned_crossings, 0, cases.unsqueeze(1).expand(-1, 3)).view(-1)
    slots = torch.nonzero(crossed).view(-1)
    vertex_of_slot = torch.cumsum(crossed, 0).sub_(1)
    owner = slots // 3
    axis = slots - owner * 3
    lower = cells.gather(0, owner)
    stride = torch.tensor([shape[1] * shape[2], shape[2], 1], device=device)
    value_lower = flat_volume.gather(0, lower)
    value_upper = flat_volume.gather(0, stride.gather(0, axis).add_(lower))
    fraction = value_upper.sub_(value_lower).reciprocal_().mul_(value_lower.sub_(level).neg_()).float()
    fraction.clamp_(EDGE_MARGIN, 1.0 - EDGE_MARGIN)
    row = lower // shape[2]
    plane = row // shape[1]
    verts = torch.stack([plane, row - plane * shape[1], lower - row * shape[2]], dim=1).float()
    verts.view(-1).index_add_(0, torch.arange(0, 3 * slots.numel(), 3, device=device).add_(axis), fraction)
    return verts, _EdgeVertices(cells, vertex_of_slot, slot_map, shape)


def _configurations(
    flat_volume: torch.Tensor,
    level: float,
    cells: torch.Tensor,
    cases: torch.Tensor,
    ambiguous_faces: torch.Tensor,
    face_corners: torch.Tensor,
    corner_offset: torch.Tensor,
) -> torch.Tensor:
    """Table row ``case * 64 + decision`` of each cell (asymptotic decider, step 4).

    Args:
        cells, cases: ``[M]`` int64 corner-0 indices and cases of real active cells;
        ambiguous_faces: ``[256]`` uint8 face masks; face_corners: ``[6, 4]`` int64 corners
        ``q00, q10, q11, q01`` of each face; corner_offset: ``[8]`` int64.

    Returns:
        ``[M]`` int64 configuration indices.
    """
    configs = cases * _mc_tables.NUM_DECISIONS
    masks = ambiguous_faces.gather(0, cases)
    ambiguous = torch.nonzero(masks).view(-1)
    if ambiguous.numel() == 0:
        return configs
    sub_cases = cases.gather(0, ambiguous)
    corners = cells.gather(0, ambiguous).unsqueeze(1) + corner_offset  # [A, 8]
    values = flat_volume.take(corners).sub_(level)[:, face_corners]  # [A, 6, 4]: q00, q10, q11, q01
    # f00*f11 > f10*f01 is exact-equivalent to f00*f11 - f10*f01 > 0 for finite floats.
    positive_determinant = values[..., 0] * values[..., 2] > values[..., 1] * values[..., 3]
    q00_inside = (sub_cases.unsqueeze(1) >> face_corners[:, 0]) & 1 == 1
    joined = (positive_determinant == q00_inside).long()  # [A, 6]
    decision = (joined << torch.arange(6, device=cells.device)).sum(dim=1) & masks.gather(0, ambiguous).long()
    configs[ambiguous] += decision
    return configs


def _centre_vertices(
    verts: torch.Tensor,
    cells: torch.Tensor,
    configs: torch.Tensor,
    tables: dict[str, torch.Tensor],
    edges: _EdgeVertices,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Append a centre vertex for each cell whose configuration needs one.

    A few ambiguous configurations have a loop whose every triangulation would put a chord
    on a cube face; that loop is fanned around the mean of its vertices instead.

    Args:
        verts: ``[V, 3]`` float32 edge vertices; cells, configs: ``[M]`` int64.

    Returns:
        verts: ``[V + M_c, 3]`` float32; centre_of_cell: ``[M]`` int64 vertex id of each cell's
        centre (meaningful only for cells that have one), or None when no cell has one.
    """
    centred = torch.nonzero(tables["has_centre"][configs]).view(-1)
    if centred.numel() == 0:
        return verts, None
    loop_edges = tables["centre_edges"][configs[centred]]
    # Edges outside the loop may be uncrossed: look up the loop's first edge instead, then mask.
    first_loop_edge = loop_edges.to(torch.uint8).argmax(dim=1, keepdim=True)
    local = torch.where(loop_edges, torch.arange(12, device=cells.device), first_loop_edge)
    ids = edges.lookup(cells[centred].unsqueeze(1), local)
    weights = loop_edges.to(verts.dtype).unsqueeze(2)
    centres = (verts[ids] * weights).sum(dim=1) / weights.sum(dim=1)
    centre_of_cell = torch.zeros_like(cells)
    centre_of_cell[centred] = torch.arange(verts.shape[0], verts.shape[0] + centred.numel(), device=cells.device)
    return torch.cat([verts, centres]), centre_of_cell


def _triangles(
    cells: torch.Tensor,
    configs: torch.Tensor,
    tables: dict[str, torch.Tensor],
    edges: _EdgeVertices,
    centre_of_cell: torch.Tensor | None,
) -> torch.Tensor:
    """Emit every cell's table triangles as ``[F, 3]`` int64 vertex ids.

    Args:
        cells, configs: ``[M]`` int64; centre_of_cell: ``[M]`` int64 or None
        (see :func:`_centre_vertices`).

    Written with ``torch.gather`` and in-place updates: on CPU this stage handles a few
    million indices, and fresh memory and advanced indexing cost several times more there.
    """
    counts = tables["triangle_count"].gather(0, configs)
    cell_of_triangle = _repeat_indices(counts)
    count = cell_of_triangle.numel()
    # Triangle t of the output is table row ``t - first triangle of its cell + first row``.
    row_shift = tables["triangle_offset"].gather(0, configs).sub_(torch.cumsum(counts, 0).sub_(counts))
    rows = torch.arange(count, device=cells.device).add_(row_shift.gather(0, cell_of_triangle))
    rows = rows.unsqueeze(1).expand(count, 3)
    local_edges = tables["triangle_edges"]
    keys = torch.gather(edges.edge_offset[local_edges], 0, rows).add_(cells.gather(0, cell_of_triangle).unsqueeze(1))
    owner_slots = edges.slot_map.gather(0, keys.view(-1)).view(count, 3)
    slots = torch.gather(edges.edge_axis[local_edges], 0, rows, out=keys).add_(owner_slots)
    faces = edges.vertex_of_slot.gather(0, slots.view(-1)).view(count, 3)
    if centre_of_cell is None:
        return faces
    is_centre = torch.gather(local_edges == _mc_tables.CENTRE, 0, rows)
    return torch.where(is_centre, centre_of_cell.gather(0, cell_of_triangle).unsqueeze(1), faces)


def _repeat_indices(counts: torch.Tensor) -> torch.Tensor:
    """``[sum(counts)]`` int64: ``i`` repeated ``counts[i]`` times, for ``counts`` ``[M]`` int64.

    Equal to ``torch.repeat_interleave(counts)``, which is several times slower on CPU:
    mark where each non-empty run starts and count the marks with a cumulative sum.
    """
    nonempty = torch.nonzero(counts).view(-1)
    if nonempty.numel() == 0:
        return nonempty
    run_lengths = counts.gather(0, nonempty)
    starts = torch.cumsum(run_lengths, 0)
    marks = torch.zeros(int(starts[-1]), dtype=torch.int64, device=counts.device)
    marks[starts[:-1]] = 1
    return nonempty.gather(0, marks.cumsum_(0))
