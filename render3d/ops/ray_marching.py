"""Ray marching through an occupancy grid into packed samples (nerfacc's contract).

Three pieces:

- :func:`ray_aabb_intersect`: the slab method, per ray.
- :class:`OccupancyGrid`: a ``res^3`` grid of density estimates kept by instant-ngp's EMA
  rule, binarized into the mask that lets marching skip empty space.
- :func:`ray_marching`: per ray, a deterministic sequence of steps between the ray's near and
  far bounds inside an axis-aligned box; a step becomes a sample when the grid cell under its
  midpoint is occupied. Output is *packed*: ``ray_indices [S]``, ``t_starts [S]``,
  ``t_ends [S]`` sorted by ray, then by ``t``.

The step sequence (the specification both the reference and the Triton kernel follow, in
float32 with the same operations in the same order, so both emit identical samples):

- ``t_min = max(t_near, near)`` and ``t_max = min(t_far, far)``.
- ``cone_angle == 0``: ``t_k = t_min + k * step_size`` (``k`` as float32), step ``k`` spans
  ``[t_k, t_{k+1}]``; marching stops at the first ``k`` whose midpoint
  ``(t_k + t_{k+1}) * 0.5`` is not below ``t_max`` (the last sample may reach past ``t_max``
  by less than half a step, as in nerfacc).
- ``cone_angle > 0``: steps that grow with the distance, from one lattice of step boundaries
  shared by every ray (:func:`cone_lattice`): ``n = max(1, round(1 / cone_angle))`` steps of
  ``step_size`` from 0 to ``n * step_size``, then octave after octave ``n`` steps each, the
  step doubling with each octave, so that beyond ``n * step_size`` a step is between half and
  all of ``t * cone_angle``. A ray takes the lattice steps whose midpoint lies in
  ``[t_min, t_max)`` (its first step may start, and its last end, less than half a step
  outside). A closed lattice instead of nerfacc's ``t += clip(t * cone_angle, ...)``
  recurrence lets the reference march every step of a chunk of rays at once, as it does with
  uniform steps, instead of one Python iteration per step (a third of the time per sample on
  2 CPU cores, 4096 rays through a 128^3 grid).
- the cell of a point ``x`` is ``trunc((x - grid_min) * (res / grid_size))`` per axis; points
  outside the grid's box are empty. On a *contracted* grid ``x`` is first replaced by its
  contraction (:mod:`render3d.ops.contraction`, inner box = the grid's ``aabb``) and the
  grid's box is ``[-2, 2]^3``: the cells tile all of space, finely inside the inner box and
  ever more coarsely beyond it (unbounded scenes: a room around the cameras, a sky).

Empty space is skipped step by step (no cell-sized jumps), which keeps the specification a
single formula per ray.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from render3d.errors import ConfigError, TrainingError
from render3d.ops._backend import use_triton
from render3d.ops.contraction import CONTRACTED_HALF_SIZE, contract, inner_normalisation, uncontract
from render3d.ops.volume_rendering import render_weights_from_density

DENSITY_CHUNK = 2**18
# Early stopping evaluates sigma_fn front to back in rounds of this many samples per ray.
EARLY_STOP_ROUND = 32
# Rays x steps materialized at once by the reference (bounds memory).
DENSE_CHUNK_ELEMENTS = 2**18


def ray_aabb_intersect(
    origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each ray enters and leaves an axis-aligned box (slab method).

    Args:
        origins: ``[R, 3]`` float ray origins.
        dirs: ``[R, 3]`` float ray directions (any length; ``t`` is in units of ``dirs``).
        aabb: ``[2, 3]`` box (min corner, max corner), same device.

    Returns:
        t_near: ``[R]`` entry distance, clamped at 0 when the origin is inside the box.
        t_far: ``[R]`` exit distance.
        hit: ``[R]`` bool, ``t_far > t_near`` with both finite: the ray crosses the box ahead
            of its origin over a positive length. ``t_near``/``t_far`` of missed rays are
            meaningless.

    A direction component of exactly 0 is handled without NaN: that slab admits every ``t``
    when the origin lies within it and none otherwise. A zero direction never hits.
    """
    origins, dirs = _validated_rays(origins, dirs, "ray_aabb_intersect")
    aabb = _validated_aabb(aabb, origins.device, "ray_aabb_intersect")
    with torch.no_grad():
        low, high = aabb[0].to(origins.dtype), aabb[1].to(origins.dtype)
        parallel = dirs == 0
        safe_dirs = torch.where(parallel, torch.ones_like(dirs), dirs)
        t_low = (low - origins) / safe_dirs
        t_high = (high - origins) / safe_dirs
        within = (origins >= low) & (origins <= high)
        infinity = torch.full_like(dirs, float("inf"))
        slab_near = torch.where(parallel, torch.where(within, -infinity, infinity), torch.minimum(t_low, t_high))
        slab_far = torch.where(parallel, torch.where(within, infinity, -infinity), torch.maximum(t_low, t_high))
        t_near = slab_near.amax(dim=-1).clamp(min=0.0)
        t_far = slab_far.amin(dim=-1)
        hit = torch.isfinite(t_near) & torch.isfinite(t_far) & (t_far > t_near)
    return t_near, t_far, hit


class OccupancyGrid(torch.nn.Module):
    """A ``res^3`` occupancy grid over a box, updated with instant-ngp's EMA rule.

    With ``contracted=True`` the cells cover the contraction of all of space
    (:mod:`render3d.ops.contraction`: ``[-2, 2]^3``, with ``aabb`` as the inner box) instead
    of the box itself.

    Buffers (saved in ``state_dict``):
        aabb: ``[2, 3]`` float32 box (min corner, max corner); the inner box when contracted.
        density: ``[res^3]`` float32 EMA of the density, cell ``(i, j, k)`` at
            ``(i * res + j) * res + k``; starts at 0.
        binary: ``[res, res, res]`` bool occupancy mask; starts all True so that the first
            iterations sample everywhere.

    Example:
        >>> grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=32)
        >>> grid.update(0, lambda x: (x.norm(dim=-1) < 0.5).float() * 10)
    """

    def __init__(self, aabb: torch.Tensor | Sequence[Sequence[float]], resolution: int = 128, *,
                 contracted: bool = False):
        super().__init__()
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ConfigError(f"OccupancyGrid: resolution must be a positive int, got {resolution!r}")
        self.resolution = resolution
        self.contracted = bool(contracted)
        box = _validated_aabb(aabb, None, "OccupancyGrid")
        self.register_buffer("aabb", box.float().clone())
        self.register_buffer("density", torch.zeros(resolution**3, device=box.device))
        self.register_buffer(
            "binary", torch.ones(resolution, resolution, resolution, dtype=torch.bool, device=box.device)
        )

    @torch.no_grad()
    def update(
        self,
        step: int,
        density_fn: Callable[[torch.Tensor], torch.Tensor],
        *,
        occ_thre: float = 0.01,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        n_samples: int | None = None,
    ) -> None:
        """One EMA update of ``density`` and ``binary`` (``torch.no_grad``).

        Cells updated: every cell while ``step < warmup_steps``; afterwards ``n_samples``
        cells drawn uniformly (with replacement) plus the currently occupied cells, of which
        at most ``n_samples`` are kept, drawn at random (nerfacc's and instant-ngp's rule).
        Each chosen cell is evaluated once at a uniformly jittered point inside it; a cell
        drawn twice keeps the larger value. Then, on the chosen cells only,
        ``density = max(density * ema_decay, new)``, and for every cell
        ``binary = density > min(mean(density), occ_thre)``. The mean runs over all cells:
        this grid has no ignored (invisible) cells.

        Args:
            step: the training step (decides warm-up).
            density_fn: maps ``[M, 3]`` float32 world points to ``[M]`` (or ``[M, 1]``)
                densities; called in chunks of at most 2^18 points.
            occ_thre: upper bound of the occupancy threshold.
            ema_decay: factor applied to the old estimate of an updated cell.
            warmup_steps: steps during which every cell is updated.
            n_samples: cells drawn uniformly after warm-up (default ``res^3 // 4``).

        Raises:
            ConfigError: a ``density_fn`` output of the wrong size or a bad argument.
            TrainingError: ``density_fn`` returned NaN or inf.
        """
        cell_count = self.resolution**3
        if n_samples is None:
            n_samples = cell_count // 4
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ConfigError(f"OccupancyGrid.update: n_samples must be a positive int, got {n_samples!r}")
        if not 0.0 <= ema_decay <= 1.0:
            raise ConfigError(f"OccupancyGrid.update: ema_decay must be in [0, 1], got {ema_decay}")
        device = self.density.device
        if step < warmup_steps:
            cells = torch.arange(cell_count, device=device)
        else:
            uniform = torch.randint(cell_count, (n_samples,), device=device)
            occupied = torch.nonzero(self.binary.flatten()).squeeze(-1)
            if occupied.numel() > n_samples:
                occupied = occupied[torch.randint(occupied.numel(), (n_samples,), device=device)]
            cells = torch.cat([uniform, occupied])
        new_density = self._evaluate(cells, density_fn)
        cell_max = torch.full_like(self.density, float("-inf"))
        cell_max.scatter_reduce_(0, cells, new_density, reduce="amax")
        chosen = torch.zeros_like(self.binary.flatten()).index_fill_(0, cells, True)
        self.density.copy_(torch.where(chosen, torch.maximum(self.density * ema_decay, cell_max), self.density))
        threshold = self.density.mean().clamp(max=occ_thre)
        self.binary.copy_((self.density > threshold).view_as(self.binary))

    def _evaluate(self, cells: torch.Tensor, density_fn: Callable) -> torch.Tensor:
        """``[M]`` densities at a jittered point of each cell in ``cells [M]`` int64."""
        res = self.resolution
        coords = torch.stack([cells // (res * res), (cells // res) % res, cells % res], dim=-1).float()
        unit = (coords + torch.rand_like(coords)) / res
        if self.contracted:
            points = uncontract(CONTRACTED_HALF_SIZE * (2.0 * unit - 1.0), *inner_normalisation(self.aabb))
        else:
            points = self.aabb[0] + unit * (self.aabb[1] - self.aabb[0])
        values = []
        for chunk in points.split(DENSITY_CHUNK):
            value = density_fn(chunk)
            if not isinstance(value, torch.Tensor) or value.numel() != chunk.shape[0]:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ConfigError(
                    f"OccupancyGrid.update: density_fn must return [M] densities for [M, 3] points, "
                    f"got {shape} for M={chunk.shape[0]}"
                )
            values.append(value.reshape(-1).float())
        new_density = torch.cat(values)
        if not bool(torch.isfinite(new_density).all()):
            raise TrainingError("OccupancyGrid.update: density_fn returned NaN or inf densities")
        return new_density


@torch.no_grad()
def ray_marching(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    grid: OccupancyGrid | None,
    *,
    aabb: torch.Tensor | Sequence[Sequence[float]],
    near: float = 0.0,
    far: float = 1e10,
    step_size: float,
    cone_angle: float = 0.0,
    sigma_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    alpha_thre: float = 0.0,
    early_stop_eps: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed samples along rays, skipping empty grid cells (``torch.no_grad``: a sampler).

    The step sequence is specified in this module's docstring. Triton runs when
    :func:`render3d.ops._backend.use_triton` says so; both paths emit identical samples.

    Args:
        origins: ``[R, 3]`` float ray origins (computed in float32).
        dirs: ``[R, 3]`` float ray directions (computed in float32; ``t`` is in their units).
        grid: an :class:`OccupancyGrid` on the rays' device, or ``None`` to keep every step.
        aabb: ``[2, 3]`` box the rays are clipped to (usually the grid's box; a contracted
            grid's cells reach beyond its box, so the rays may too).
        near, far: the ``t`` interval considered before clipping to ``aabb``.
        step_size: the minimum step (> 0).
        cone_angle: step growth with the distance, ``dt ~ t * cone_angle`` beyond
            ``step_size / cone_angle`` (>= 0; the lattice in this module's docstring).
        sigma_fn: optional ``sigma_fn(t_starts [S], t_ends [S], ray_indices [S]) -> [S]``
            densities of the marched samples; with it, samples whose transmittance is below
            ``early_stop_eps`` are dropped, and so are samples whose
            ``alpha = 1 - exp(-sigma * (t_end - t_start))`` is below ``alpha_thre`` when
            ``alpha_thre > 0`` (transmittance is computed before the alpha filter, as in
            nerfacc). It is called front to back in rounds of :data:`EARLY_STOP_ROUND`
            samples per ray, only for rays not yet stopped.
        alpha_thre, early_stop_eps: the thresholds above (used only with ``sigma_fn``).

    Returns:
        ray_indices: ``[S]`` int64, sorted.
        t_starts: ``[S]`` float32 start of each sample, increasing within a ray.
        t_ends: ``[S]`` float32 end of each sample.

    Example:
        >>> box = torch.tensor([[-1.0] * 3, [1.0] * 3])
        >>> o = torch.tensor([[0.0, 0.0, -3.0]]); d = torch.tensor([[0.0, 0.0, 1.0]])
        >>> ray_indices, t_starts, t_ends = ray_marching(o, d, None, aabb=box, step_size=0.5)
        >>> t_starts.tolist()
        [2.0, 2.5, 3.0, 3.5]
    """
    origins, dirs = _validated_rays(origins, dirs, "ray_marching")
    origins, dirs = origins.float(), dirs.float()
    box = _validated_aabb(aabb, origins.device, "ray_marching").float()
    _check_marching_numbers(near, far, step_size, cone_angle, alpha_thre, early_stop_eps)
    if grid is not None and not isinstance(grid, OccupancyGrid):
        raise ConfigError(f"ray_marching: grid must be an OccupancyGrid or None, got {type(grid).__name__}")
    if grid is not None and grid.binary.device != origins.device:
        raise ConfigError(f"ray_marching: grid is on {grid.binary.device}, rays on {origins.device}")
    t_min, t_max = _clipped_interval(origins, dirs, box, near, far)
    spec = MarchSpec.build(grid, step_size, cone_angle)
    if use_triton(origins, dirs, spec.binary):
        from render3d.kernels.ray_marching import ray_marching_triton

        ray_indices, t_starts, t_ends = ray_marching_triton(origins, dirs, t_min, t_max, spec)
    else:
        ray_indices, t_starts, t_ends = ray_marching_reference(origins, dirs, t_min, t_max, spec)
    if sigma_fn is not None and ray_indices.numel():
        keep = _visible(sigma_fn, ray_indices, t_starts, t_ends, origins.shape[0], alpha_thre, early_stop_eps)
        ray_indices, t_starts, t_ends = ray_indices[keep], t_starts[keep], t_ends[keep]
    return ray_indices, t_starts, t_ends


@dataclass(frozen=True)
class MarchSpec:
    """The float32 constants of one marching call, shared verbatim by reference and kernel.

    Attributes:
        step_size, cone_angle: float32-rounded Python floats.
        binary: ``[res^3]`` bool occupancy (flattened ``grid.binary``) or ``None``.
        resolution: grid resolution (0 without a grid).
        grid_min: 3 float32-rounded floats, the grid box's min corner (contracted coordinates
            on a contracted grid).
        grid_scale: 3 float32-rounded floats, ``res / (grid_max - grid_min)`` per axis.
        contracted: whether points are contracted before the cell lookup.
        inner_min, inner_scale: 3 float32-rounded floats each, the contraction's inner-box
            normalisation (:func:`render3d.ops.contraction.inner_normalisation`); zeros when
            not contracted.
    """

    step_size: float
    cone_angle: float
    binary: torch.Tensor | None
    resolution: int
    grid_min: tuple[float, float, float]
    grid_scale: tuple[float, float, float]
    contracted: bool = False
    inner_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    inner_scale: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def build(cls, grid: OccupancyGrid | None, step_size: float, cone_angle: float) -> "MarchSpec":
        step32, cone32 = (float(torch.tensor(v, dtype=torch.float32)) for v in (step_size, cone_angle))
        if grid is None:
            return cls(step32, cone32, None, 0, (0.0,) * 3, (0.0,) * 3)
        resolution = torch.tensor(float(grid.resolution), dtype=torch.float32)
        if not grid.contracted:
            box = grid.aabb.float().cpu()
            scale = resolution / (box[1] - box[0])
            return cls(step32, cone32, grid.binary.reshape(-1), grid.resolution, tuple(box[0].tolist()),
                       tuple(scale.tolist()))
        inner_min, inner_scale = inner_normalisation(grid.aabb.cpu())
        scale = resolution / (2.0 * CONTRACTED_HALF_SIZE)
        return cls(step32, cone32, grid.binary.reshape(-1), grid.resolution, (-CONTRACTED_HALF_SIZE,) * 3,
                   (float(scale),) * 3, True, tuple(inner_min.tolist()), tuple(inner_scale.tolist()))


def ray_marching_reference(
    origins: torch.Tensor, dirs: torch.Tensor, t_min: torch.Tensor, t_max: torch.Tensor, spec: MarchSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vectorized PyTorch marching (the specification; no loop over rays).

    Args:
        origins, dirs: ``[R, 3]`` float32.
        t_min, t_max: ``[R]`` float32 clipped interval (``t_max <= t_min``: no samples).
        spec: the call's constants.

    Returns:
        ``ray_indices [S]`` int64, ``t_starts [S]``, ``t_ends [S]`` float32, sorted by ray then t.

    The steps of a chunk of rays are one dense ``[rays, steps]`` grid (chunks of 2^18 entries
    bound memory and stay in cache): uniform steps from each ray's ``t_min``, or each ray's
    range of the cone lattice.
    """
    if spec.cone_angle == 0.0:
        return _march_dense(origins, dirs, t_min, t_max, spec)
    return _march_lattice(origins, dirs, t_min, t_max, spec)


def steps_per_octave(cone_angle: float) -> int:
    """``n = max(1, round(1 / cone_angle))``: the cone lattice's steps per octave (``cone_angle > 0``)."""
    return max(1, round(1.0 / cone_angle))


def cone_lattice(t_min: torch.Tensor, t_max: torch.Tensor, spec: MarchSpec
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cone lattice and each ray's range of it (used verbatim by reference and kernel).

    Args:
        t_min, t_max: ``[R]`` float32 marched intervals.
        spec: the call's constants (``cone_angle > 0``).

    Returns:
        boundaries: ``[L+1]`` float32 step boundaries, increasing, computed in float64 and
            rounded: ``k s`` for ``k < n``, then ``n s 2^(j-1) + k s 2^(j-1)`` for octave
            ``j >= 1`` and ``k < n``, and the last octave's end; the octaves reach past
            ``max(t_max)``.
        first: ``[R]`` int64 index of each ray's first step: the first whose midpoint
            ``(b_i + b_{i+1}) * 0.5`` (float32) is not below ``t_min``.
        last: ``[R]`` int64 one past each ray's last step: the first midpoint not below ``t_max``.
    """
    n, step = steps_per_octave(spec.cone_angle), spec.step_size
    far = float(t_max.max()) if t_max.numel() else 0.0
    octaves = 1
    while n * step * 2.0 ** (octaves - 1) <= far + 2.0 ** octaves * step:  # ends past far by a step
        octaves += 1
    k = torch.arange(n, dtype=torch.float64)
    parts = [k * step] + [(n + k) * (step * 2.0 ** (j - 1)) for j in range(1, octaves)]
    end = torch.tensor([n * step * 2.0 ** (octaves - 1)], dtype=torch.float64)
    boundaries = torch.cat(parts + [end]).float().to(t_min.device)
    mids = (boundaries[:-1] + boundaries[1:]) * 0.5
    first = torch.searchsorted(mids, t_min.contiguous())
    last = torch.maximum(torch.searchsorted(mids, t_max.contiguous()), first)
    return boundaries, first, last


def _march_dense(origins, dirs, t_min, t_max, spec):
    step = torch.tensor(spec.step_size, dtype=torch.float32, device=origins.device)
    span = (t_max - t_min).clamp(min=0).double()
    # Step counts bound the dense grid only; the emission mask below is exact.
    bounds = (span / spec.step_size).ceil().long() + 2
    return _march_chunks(bounds, origins, dirs, spec, lambda start, stop, width: _uniform_steps(
        t_min[start:stop], t_max[start:stop], step, width))


def _uniform_steps(t_min, t_max, step, width):
    """Starts, ends ``[r, width]`` of uniform steps from each ray's ``t_min`` and whether each
    step's midpoint is below ``t_max``."""
    k = torch.arange(width + 1, dtype=torch.float32, device=t_min.device)
    t_grid = t_min[:, None] + k * step
    starts, ends = t_grid[:, :-1], t_grid[:, 1:]
    mids = (starts + ends) * 0.5
    return starts, ends, mids, mids < t_max[:, None]


def _march_lattice(origins, dirs, t_min, t_max, spec):
    boundaries, first, last = cone_lattice(t_min, t_max, spec)
    counts = last - first

    def lattice_steps(start, stop, width):
        index = first[start:stop, None] + torch.arange(width, device=first.device)
        valid = index < last[start:stop, None]
        index = torch.where(valid, index, 0)
        starts, ends = boundaries[index], boundaries[index + 1]
        return starts, ends, (starts + ends) * 0.5, valid

    return _march_chunks(counts, origins, dirs, spec, lattice_steps)


def _march_chunks(bounds, origins, dirs, spec, steps):
    """Packed samples, rays in chunks whose ``rays x widest bound`` fits the budget.

    ``bounds [R]`` bounds each ray's step count; ``steps(start, stop, width)`` gives the chunk's
    ``starts, ends, mids [r, width]`` and the mask of real steps."""
    outputs = []
    ray_start = 0
    rays = origins.shape[0]
    while ray_start < rays:
        # The chunk grows while its rays x its widest bound stays within budget.
        chunk_bounds = bounds[ray_start:]
        running_max = torch.cummax(chunk_bounds, dim=0).values
        fits = (running_max * torch.arange(1, chunk_bounds.numel() + 1, device=bounds.device)) <= DENSE_CHUNK_ELEMENTS
        ray_stop = ray_start + max(1, int(fits.sum()))
        width = int(running_max[ray_stop - ray_start - 1])
        starts, ends, mids, emit = steps(ray_start, ray_stop, width)
        if spec.binary is not None:
            points = origins[ray_start:ray_stop, None, :] + dirs[ray_start:ray_stop, None, :] * mids[..., None]
            emit &= _occupied(points, spec)
        ray_index = emit.nonzero()[:, 0] + ray_start
        outputs.append((ray_index, starts[emit], ends[emit]))
        ray_start = ray_stop
    return _concat(outputs, origins.device)


def _occupied(points: torch.Tensor, spec: MarchSpec) -> torch.Tensor:
    """``[...]`` bool: whether the grid cell under each of ``points [..., 3]`` is occupied."""
    if spec.contracted:
        points = contract(points, torch.tensor(spec.inner_min, dtype=torch.float32, device=points.device),
                          torch.tensor(spec.inner_scale, dtype=torch.float32, device=points.device))
    grid_min = torch.tensor(spec.grid_min, dtype=torch.float32, device=points.device)
    grid_scale = torch.tensor(spec.grid_scale, dtype=torch.float32, device=points.device)
    cell = (points - grid_min) * grid_scale
    res = spec.resolution
    in_range = (cell >= 0) & (cell < res)
    inside = in_range[..., 0] & in_range[..., 1] & in_range[..., 2]  # cheaper than .all(-1) on CPU
    index = cell.long().clamp_(0, res - 1)
    flat = (index[..., 0] * res + index[..., 1]) * res + index[..., 2]
    return inside & spec.binary[flat]


def _concat(outputs, device):
    if not outputs:
        empty = torch.zeros(0, dtype=torch.float32, device=device)
        return torch.zeros(0, dtype=torch.int64, device=device), empty, empty.clone()
    return tuple(torch.cat(parts) for parts in zip(*outputs))


def _visible(sigma_fn, ray_indices, t_starts, t_ends, n_rays, alpha_thre, early_stop_eps) -> torch.Tensor:
    """``[S]`` bool: the samples kept by early stopping and the alpha threshold.

    Densities are evaluated front to back in rounds of :data:`EARLY_STOP_ROUND` samples per
    ray, each round only for the rays whose transmittance after the previous rounds is still
    at least half of ``early_stop_eps``: the samples behind a wall or a surface, which the
    filter drops anyway, cost no ``sigma_fn`` call (in a room, about two thirds of them). The
    filter itself is computed once, on every evaluated sample, as if all had been."""
    count = t_starts.numel()
    position = torch.arange(count, device=ray_indices.device) - _first_sample_of_ray(ray_indices, n_rays)[ray_indices]
    sigmas = torch.zeros(count, dtype=t_starts.dtype, device=t_starts.device)
    evaluated = torch.zeros(count, dtype=torch.bool, device=t_starts.device)
    optical_depth = torch.zeros(n_rays, dtype=t_starts.dtype, device=t_starts.device)
    stop_depth = math.log(2.0 / early_stop_eps) if early_stop_eps > 0 else math.inf
    remaining = torch.arange(count, device=ray_indices.device)
    bound = EARLY_STOP_ROUND
    while remaining.numel():
        in_round = position[remaining] < bound
        chosen, remaining = remaining[in_round], remaining[~in_round]
        values = _densities(sigma_fn, t_starts[chosen], t_ends[chosen], ray_indices[chosen])
        sigmas[chosen], evaluated[chosen] = values, True
        optical_depth.index_add_(0, ray_indices[chosen], values * (t_ends[chosen] - t_starts[chosen]))
        remaining = remaining[optical_depth[ray_indices[remaining]] <= stop_depth]
        bound += EARLY_STOP_ROUND
    chosen = evaluated.nonzero().squeeze(1)
    _, transmittance, alphas = render_weights_from_density(t_starts[chosen], t_ends[chosen], sigmas[chosen],
                                                           ray_indices[chosen], n_rays)
    passes = transmittance >= early_stop_eps
    if alpha_thre > 0:
        passes &= alphas >= alpha_thre
    keep = torch.zeros(count, dtype=torch.bool, device=t_starts.device)
    keep[chosen[passes]] = True
    return keep


def _densities(sigma_fn, t_starts, t_ends, ray_indices) -> torch.Tensor:
    """``sigma_fn``'s ``[S]`` densities of these samples, checked."""
    sigmas = sigma_fn(t_starts, t_ends, ray_indices)
    if not isinstance(sigmas, torch.Tensor) or sigmas.numel() != t_starts.numel():
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise ConfigError(f"ray_marching: sigma_fn must return [S] densities for S={t_starts.numel()}, got {shape}")
    return sigmas.reshape(-1).to(t_starts.dtype)


def _first_sample_of_ray(ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """``[R]`` index of each ray's first sample in the packed (sorted) ``ray_indices``."""
    counts = torch.bincount(ray_indices, minlength=n_rays)
    return torch.cumsum(counts, 0) - counts


def _clipped_interval(origins, dirs, box, near, far) -> tuple[torch.Tensor, torch.Tensor]:
    """``t_min [R]``, ``t_max [R]`` float32: the marched interval, ``[0, 0]`` on rays missing
    the box (always finite, so no lane ever computes with infinities)."""
    t_near, t_far, hit = ray_aabb_intersect(origins, dirs, box)
    zero = torch.zeros_like(t_near)
    t_min = torch.where(hit, t_near.clamp(min=near), zero)
    t_max = torch.where(hit, t_far.clamp(max=far), zero)
    return t_min.contiguous(), t_max.contiguous()


def _validated_rays(origins, dirs, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    for name, value in (("origins", origins), ("dirs", dirs)):
        if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[-1] != 3:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ConfigError(f"{where}: {name} must be an [R, 3] tensor, got {shape}")
        if not value.is_floating_point():
            raise ConfigError(f"{where}: {name} must be floating point, got {value.dtype}")
    if origins.shape != dirs.shape:
        raise ConfigError(f"{where}: origins {tuple(origins.shape)} and dirs {tuple(dirs.shape)} differ in shape")
    if origins.device != dirs.device:
        raise ConfigError(f"{where}: origins on {origins.device}, dirs on {dirs.device}")
    return origins, dirs.to(origins.dtype)


def _validated_aabb(aabb, device, where: str) -> torch.Tensor:
    try:
        box = torch.as_tensor(aabb, dtype=torch.float32 if not isinstance(aabb, torch.Tensor) else None)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{where}: aabb is not a [2, 3] array ({error})") from None
    if box.shape != (2, 3) or not box.is_floating_point():
        raise ConfigError(f"{where}: aabb must be a float [2, 3] (min corner, max corner), got {tuple(box.shape)}")
    if not bool((box[1] > box[0]).all()) or not bool(torch.isfinite(box).all()):
        raise ConfigError(f"{where}: aabb must be finite with max > min on every axis, got {box.tolist()}")
    return box if device is None else box.to(device)


def _check_marching_numbers(near, far, step_size, cone_angle, alpha_thre, early_stop_eps) -> None:
    if not (near >= 0.0 and far > near):
        raise ConfigError(f"ray_marching: need 0 <= near < far, got near={near}, far={far}")
    if not step_size > 0.0:
        raise ConfigError(f"ray_marching: step_size must be > 0, got {step_size}")
    if not 0.0 <= cone_angle < float("inf"):
        raise ConfigError(f"ray_marching: cone_angle must be finite and >= 0, got {cone_angle}")
    if not 0.0 <= alpha_thre <= 1.0:
        raise ConfigError(f"ray_marching: alpha_thre must be in [0, 1], got {alpha_thre}")
    if not 0.0 <= early_stop_eps <= 1.0:
        raise ConfigError(f"ray_marching: early_stop_eps must be in [0, 1], got {early_stop_eps}")
