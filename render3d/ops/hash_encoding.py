"""Multiresolution hash encoding (Instant-NGP), bit-compatible with tiny-cuda-nn's ``HashGrid``.

A table trained with tiny-cuda-nn (``{"otype": "HashGrid", ...}``, 3-D inputs, linear
interpolation) means the same thing here: same per-level scales, same parameter layout, same
indices, same interpolation. For level ``l`` of ``L``:

- ``scale = exp2(l * log2(per_level_scale)) * base_resolution - 1`` evaluated in float32
  (host libm's ``exp2f``; for a ``per_level_scale`` that is not a power of two, CUDA's
  ``exp2f`` used by tiny-cuda-nn's kernel may differ in the last bit), and
  ``resolution = ceil(scale) + 1``.
- Entries in the level (tcnn's ``params_in_level``): ``resolution^3`` (capped at
  ``2^31 - 1``) rounded up to a multiple of 8, or ``2^log2_hashmap_size`` when that is
  smaller. Levels are stored one after the other from level 0; the flat parameter vector
  holds ``F`` features per entry (``params[(offset_l + entry) * F + f]``).
- ``pos = fma(x, scale, 0.5)`` rounded once to float32 (tcnn's ``fmaf``), computed in
  float64: the product of two float32 numbers is exact there, and so is the sum whenever
  ``x * scale >= 2^-6`` (below that, a double-rounding tie is possible in principle).
  ``cell = floor(pos)``, ``frac = pos - cell``; the 8 corners ``cell + (dx, dy, dz)`` get
  trilinear weights ``prod(frac if d else 1 - frac)`` (tcnn's default, no smoothstep);
  corner ``c`` has ``dx = c & 1, dy = c >> 1 & 1, dz = c >> 2``.
- Corner index (tcnn's ``grid_index``): the row-major ``cx + cy*R + cz*R^2`` (x fastest) when
  the level's stride ``R^3`` (taken as ``2^32 - 1`` past ``R = 1625``) does not exceed its
  size, otherwise the spatial hash ``cx ^ cy*2654435761 ^ cz*805459861`` in uint32; either
  one modulo the level's size (the +0.5 offset lets dense corners reach ``R``, which wraps,
  exactly as in tcnn).
- Output ``[N, L*F]``, level-major (level 0's ``F`` features first).
- Gradients: the table gets the trilinear weights times the output gradient; the input gets
  the derivative of the trilinear interpolation (piecewise linear along each axis) times the
  level's scale.

The reference works level by level on all points at once, corner-major (``[8, N]``
temporaries, so PyTorch's CPU loops run along N), in a custom autograd Function that
recomputes the corners in its backward instead of saving ``[N, L, 8]`` tensors. Outside a
recorded graph it gathers each table row as one wide scalar and scatters the table gradient
with one weighted ``bincount`` per feature and level (both several times faster on CPU than
``index_select`` / ``index_add_`` on rows). When the backward itself is recorded
(``create_graph=True``, e.g. an Eikonal loss on the input gradient) it uses differentiable
ops instead, so second derivatives work through the reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton

PRIME_Y = 2654435761
PRIME_Z = 805459861
INIT_RANGE = 1e-4
MAX_LEVELS = 32
LOG2_HASHMAP_RANGE = (1, 31)
FEATURES_PER_LEVEL_CHOICES = (1, 2, 4, 8)
DEFAULT_CONFIG = {
    "otype": "HashGrid",
    "n_levels": 16,
    "n_features_per_level": 2,
    "log2_hashmap_size": 19,
    "base_resolution": 16,
    "per_level_scale": 2.0,
}
_ACCEPTED_FIXED = {"interpolation": "linear", "type": "hash"}
_UINT32 = 0xFFFFFFFF
MAX_DENSE_RESOLUTION = 1625  # tcnn's MAX_BASES[3]: the largest R with R^3 < 2^32
POINTS_PER_CHUNK = 2**17


@dataclass(frozen=True)
class LevelLayout:
    """One level of the grid: ``scale`` (float32 value), ``resolution``, ``size`` (entries),
    ``offset`` (first entry in the flat table) and whether corners are ``hashed``."""

    scale: float
    resolution: int
    size: int
    offset: int
    hashed: bool


@dataclass(frozen=True)
class HashGridLayout:
    """A validated configuration and the per-level layout derived from it exactly as tcnn does."""

    n_levels: int
    n_features_per_level: int
    log2_hashmap_size: int
    base_resolution: int
    per_level_scale: float
    levels: tuple[LevelLayout, ...]

    @property
    def n_entries(self) -> int:
        """Table entries over all levels (tcnn's ``offsets_table[n_levels]``)."""
        last = self.levels[-1]
        return last.offset + last.size

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector: ``n_entries * F``."""
        return self.n_entries * self.n_features_per_level

    @property
    def n_output_dims(self) -> int:
        """``L * F``."""
        return self.n_levels * self.n_features_per_level


def _positive_int(config: Mapping, key: str) -> int:
    value = config.get(key, DEFAULT_CONFIG[key])
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"hash grid config: {key} must be a positive integer, got {value!r}")
    return int(value)


def _level_scale(level: int, per_level_scale: float, base_resolution: int) -> np.float32:
    """tcnn's ``exp2f(level * log2(per_level_scale)) * base_resolution - 1.0f`` in float32."""
    log2_scale = np.log2(np.float32(per_level_scale))
    return np.exp2(np.float32(level) * log2_scale) * np.float32(base_resolution) - np.float32(1.0)


def _level_size(resolution: int, log2_hashmap_size: int) -> int:
    """tcnn's ``params_in_level`` for a 3-D hash grid."""
    max_params = _UINT32 // 2
    dense = max_params if float(resolution) ** 3 > float(np.float32(max_params)) else resolution**3
    dense = (dense + 7) // 8 * 8
    return min(dense, 1 << log2_hashmap_size)


def _is_hashed(resolution: int, size: int) -> bool:
    """tcnn's ``grid_index`` decision: the dense stride ``R^3`` (taken as ``2^32 - 1`` past
    ``R = 1625``, where it would overflow uint32) exceeds the level's size."""
    stride = resolution**3 if resolution <= MAX_DENSE_RESOLUTION else _UINT32
    return size < stride


def hash_grid_layout(config: Mapping) -> HashGridLayout:
    """Validate a tcnn-style ``HashGrid`` config and derive its per-level layout.

    Args:
        config: ``{"otype": "HashGrid", "n_levels", "n_features_per_level",
            "log2_hashmap_size", "base_resolution", "per_level_scale"}``; missing keys take
            tcnn's defaults (16, 2, 19, 16, 2.0). ``"interpolation": "Linear"`` and
            ``"type": "Hash"`` are accepted (they are the only supported values).

    Returns:
        The :class:`HashGridLayout` (hashable; reuse it across calls).

    Raises:
        ConfigError: naming the offending key.
    """
    if isinstance(config, HashGridLayout):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"hash grid config must be a dict, got {type(config).__name__}")
    for key, value in config.items():
        if key in _ACCEPTED_FIXED:
            if not isinstance(value, str) or value.lower() != _ACCEPTED_FIXED[key]:
                raise ConfigError(f"hash grid config: {key}={value!r} is not supported (only {_ACCEPTED_FIXED[key]!r})")
        elif key not in DEFAULT_CONFIG:
            raise ConfigError(f"hash grid config: unknown key {key!r} (known: {', '.join(DEFAULT_CONFIG)})")
    otype = config.get("otype", "HashGrid")
    if not isinstance(otype, str) or otype.lower() != "hashgrid":
        raise ConfigError(f"hash grid config: otype must be 'HashGrid', got {otype!r}")
    n_levels = _positive_int(config, "n_levels")
    if n_levels > MAX_LEVELS:
        raise ConfigError(f"hash grid config: n_levels must be at most {MAX_LEVELS} (tcnn's limit), got {n_levels}")
    features = _positive_int(config, "n_features_per_level")
    if features not in FEATURES_PER_LEVEL_CHOICES:
        raise ConfigError(
            f"hash grid config: n_features_per_level must be one of {FEATURES_PER_LEVEL_CHOICES}, got {features}"
        )
    log2_size = _positive_int(config, "log2_hashmap_size")
    if not LOG2_HASHMAP_RANGE[0] <= log2_size <= LOG2_HASHMAP_RANGE[1]:
        raise ConfigError(f"hash grid config: log2_hashmap_size must be in {list(LOG2_HASHMAP_RANGE)}, got {log2_size}")
    base_resolution = _positive_int(config, "base_resolution")
    per_level_scale = config.get("per_level_scale", DEFAULT_CONFIG["per_level_scale"])
    if isinstance(per_level_scale, bool) or not isinstance(per_level_scale, (int, float, np.floating, np.integer)) \
            or not math.isfinite(per_level_scale) or per_level_scale < 1.0:
        raise ConfigError(f"hash grid config: per_level_scale must be a finite number >= 1, got {per_level_scale!r}")
    levels, offset = [], 0
    for level in range(n_levels):
        scale = _level_scale(level, float(per_level_scale), base_resolution)
        resolution = int(np.ceil(scale)) + 1
        size = _level_size(resolution, log2_size)
        levels.append(LevelLayout(float(scale), resolution, size, offset, _is_hashed(resolution, size)))
        offset += size
    stored_scale = float(np.float32(per_level_scale))
    return HashGridLayout(n_levels, features, log2_size, base_resolution, stored_scale, tuple(levels))


def _soa_positions(x: torch.Tensor) -> torch.Tensor:
    """``[3, N]`` float64 copy of ``x [N, 3]``: one contiguous row per axis (differentiable)."""
    return x.t().to(torch.float64).contiguous()


def _level_cells(x_soa: torch.Tensor, level: LevelLayout, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell corners of one level, corner-major (PyTorch's CPU loops vectorize along N).

    Args:
        x_soa: ``[3, N]`` float64 positions from :func:`_soa_positions`.
        level: the level's layout.
        dtype: x's dtype; ``pos = fma(x, scale, 0.5)`` is rounded once to it (the float64
            product of two float32 numbers is exact).

    Returns:
        entries: ``[8, N]`` int64 entries within the level (add ``level.offset`` for the flat
            table), corner ``4*dz + 2*dy + dx``.
        frac: ``[3, N]`` fractional positions in ``dtype``.
    """
    pos = (x_soa * level.scale + 0.5).to(dtype)
    cell = torch.floor(pos)
    frac = pos - cell
    cx, cy, cz = cell.to(torch.int64).unbind(0)
    if level.hashed:
        combine, y_step, z_step = torch.bitwise_xor, PRIME_Y, PRIME_Z
    else:
        combine, y_step, z_step = torch.add, level.resolution, level.resolution**2
    y0 = cy * y_step
    z0 = cz * z_step
    x_pair = torch.stack([cx, cx + 1]).view(1, 2, -1)
    y_pair = torch.stack([y0, y0 + y_step]).view(1, 2, -1)
    z_pair = torch.stack([z0, z0 + z_step]).view(2, 1, -1)
    raw = combine(combine(z_pair, y_pair).view(4, 1, -1), x_pair).view(8, -1)
    return _wrap(raw, level.size), frac


def _wrap(raw: torch.Tensor, size: int) -> torch.Tensor:
    """``raw % size`` for non-negative ``raw``: a mask for power-of-two sizes (every hashed
    level); otherwise the level is dense with ``size >= R^3``, and corners reach at most
    ``R``, so ``raw <= R^3 + R^2 + R < 2 * size``."""
    if size & (size - 1) == 0:
        return raw.bitwise_and_(size - 1)
    return torch.where(raw >= size, raw - size, raw)


def _axis_weights(frac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[2, N]`` weight pairs ``(1 - f, f)`` for the x, y and z axes from ``frac [3, N]``."""
    return torch.stack([1 - frac, frac], 1).unbind(0)


def _corner_weights(frac: torch.Tensor) -> torch.Tensor:
    """``[8, N]`` trilinear weights (corner ``4*dz + 2*dy + dx``) from ``frac [3, N]``."""
    wx, wy, wz = _axis_weights(frac)
    return (_outer(wz, wy).view(4, 1, -1) * wx.unsqueeze(0)).view(8, -1)


def _outer(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``[2, 2, N]`` products ``first[i] * second[j]`` of two ``[2, N]`` weight pairs."""
    return first.unsqueeze(1) * second.unsqueeze(0)


def grid_indices_reference(x: torch.Tensor, config: Mapping | HashGridLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Every point's 8 corner entries and trilinear weights on every level.

    Args:
        x: ``[N, 3]`` float32 (or float64) positions in ``[0, 1]^3``.
        config: a tcnn-style config dict or a :class:`HashGridLayout`.

    Returns:
        indices: ``[N, L, 8]`` int64 entries into the ``[n_entries, F]`` table (multiply by
            ``F`` for the flat vector), corner order ``4*dz + 2*dy + dx``.
        weights: ``[N, L, 8]`` in x's dtype.
    """
    layout = hash_grid_layout(config)
    indices, weights = [], []
    with torch.no_grad():
        x_soa = _soa_positions(x)
        for level in layout.levels:
            entries, frac = _level_cells(x_soa, level, x.dtype)
            indices.append(entries.t() + level.offset)
            weights.append(_corner_weights(frac).t())
    return torch.stack(indices, 1), torch.stack(weights, 1)


def _level_table(table: torch.Tensor, level: LevelLayout) -> torch.Tensor:
    """The level's rows ``[size, F]`` of the ``[n_entries, F]`` table (a view)."""
    return table[level.offset:level.offset + level.size]


_ROW_DTYPES = {4: torch.float32, 8: torch.float64, 16: torch.complex128}


def _gather_rows(rows: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
    """``rows[entries]``: ``[M, F]`` from ``rows [S, F]`` (contiguous) and ``entries [M]``.

    Outside a recorded graph each row is gathered as one wide scalar (a float64 for F=2
    float32), which PyTorch's CPU ``index_select`` does about 3x faster than 2-D rows."""
    features = rows.shape[1]
    row_dtype = _ROW_DTYPES.get(features * rows.element_size())
    if row_dtype is None or (torch.is_grad_enabled() and rows.requires_grad):
        return rows.index_select(0, entries)
    wide = rows.view(row_dtype).view(-1).index_select(0, entries)
    return wide.view(rows.dtype).view(-1, features)


def _scatter_add_rows(target: torch.Tensor, entries: torch.Tensor, values: torch.Tensor) -> None:
    """``target[entries] += values`` with repeated entries summed; ``target [S, F]``,
    ``entries [M]``, ``values [M, F]``.

    Outside a recorded graph: one weighted ``bincount`` per feature (float64 sums, several
    times faster than ``index_add_`` on CPU); inside one: ``index_add_`` (differentiable)."""
    if torch.is_grad_enabled() and (values.requires_grad or target.requires_grad):
        target.index_add_(0, entries, values)
        return
    for feature in range(target.shape[1]):
        target[:, feature] += torch.bincount(entries, weights=values[:, feature], minlength=target.shape[0])


def _interpolate_level(x_soa: torch.Tensor, table: torch.Tensor, level: LevelLayout) -> torch.Tensor:
    """``[N, F]`` features of one level."""
    entries, frac = _level_cells(x_soa, level, table.dtype)
    corner_features = _gather_rows(_level_table(table, level), entries.view(-1)).view(8, -1, table.shape[1])
    return torch.einsum("cn,cnf->nf", _corner_weights(frac), corner_features)


def _level_backward(
    x_soa: torch.Tensor, table: torch.Tensor, level: LevelLayout, grad_level: torch.Tensor,
    grad_table: torch.Tensor | None, want_input_grad: bool,
) -> torch.Tensor | None:
    """Add one level's table gradient into ``grad_table`` and return its ``[3, N]`` input
    gradient (``None`` unless wanted). ``grad_level``: ``[N, F]``."""
    features = table.shape[1]
    entries, frac = _level_cells(x_soa, level, table.dtype)
    entries = entries.view(-1)
    if grad_table is not None:
        contributions = _corner_weights(frac).unsqueeze(-1) * grad_level.unsqueeze(0)
        _scatter_add_rows(_level_table(grad_table, level), entries, contributions.view(-1, features))
    if not want_input_grad:
        return None
    wx, wy, wz = _axis_weights(frac)
    corner_features = _gather_rows(_level_table(table, level), entries).view(8, -1, features)
    slope = (corner_features * grad_level.unsqueeze(0)).sum(-1).view(2, 2, 2, -1)  # [dz, dy, dx, N]
    grad_x = ((slope[:, :, 1] - slope[:, :, 0]) * _outer(wz, wy)).sum((0, 1))
    grad_y = ((slope[:, 1] - slope[:, 0]) * _outer(wz, wx)).sum((0, 1))
    grad_z = ((slope[1] - slope[0]) * _outer(wy, wx)).sum((0, 1))
    return torch.stack([grad_x, grad_y, grad_z], 0) * level.scale


class _HashEncodeReference(torch.autograd.Function):
    """Forward level by level; backward recomputes corners (no saved ``[N, L, 8]`` tensors).

    Points are processed in chunks of ``POINTS_PER_CHUNK``, which keeps the per-level
    temporaries in cache-sized pieces (about 1.8x faster at 2^20 points on CPU) and bounds
    the transient memory at a few hundred bytes per chunk point."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout) -> torch.Tensor:
        ctx.save_for_backward(x, table)
        ctx.layout = layout
        chunks = _soa_positions(x).split(POINTS_PER_CHUNK, 1)
        return torch.cat([
            torch.cat([_interpolate_level(chunk, table, level) for level in layout.levels], 1) for chunk in chunks
        ], 0)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, table = ctx.saved_tensors
        layout = ctx.layout
        features = layout.n_features_per_level
        want_input_grad, want_table_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_table = torch.zeros_like(table) if want_table_grad else None
        grad_x_chunks = []
        chunks = zip(_soa_positions(x).split(POINTS_PER_CHUNK, 1), grad_out.split(POINTS_PER_CHUNK, 0))
        for chunk, grad_chunk in chunks:
            grad_chunk_soa = 0
            for index, level in enumerate(layout.levels):
                grad_level = grad_chunk[:, index * features:(index + 1) * features].contiguous()
                level_grad = _level_backward(chunk, table, level, grad_level, grad_table, want_input_grad)
                if want_input_grad:
                    grad_chunk_soa = grad_chunk_soa + level_grad
            if want_input_grad:
                grad_x_chunks.append(grad_chunk_soa.t())
        grad_x = torch.cat(grad_x_chunks, 0).to(x.dtype) if want_input_grad else None
        return grad_x, grad_table, None


def _validated(x: torch.Tensor, params: torch.Tensor, layout: HashGridLayout, where: str) -> torch.Tensor:
    """Check shapes/dtypes/devices; return ``params`` viewed as ``[n_entries, F]``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 3:
        raise ConfigError(f"{where}: x must have shape [N, 3], got {tuple(getattr(x, 'shape', ()))}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"{where}: x must be float32 (or float64), got {x.dtype}")
    if not isinstance(params, torch.Tensor) or params.dtype != x.dtype:
        got = getattr(params, "dtype", type(params).__name__)
        raise ConfigError(f"{where}: params must be a {x.dtype} tensor like x, got {got}")
    if params.device != x.device:
        raise ConfigError(f"{where}: params on {params.device} but x on {x.device}")
    features = layout.n_features_per_level
    if tuple(params.shape) not in ((layout.n_params,), (layout.n_entries, features)):
        raise ConfigError(
            f"{where}: params must have shape [{layout.n_params}] or [{layout.n_entries}, {features}] "
            f"for this config, got {tuple(params.shape)}"
        )
    return params.reshape(layout.n_entries, features).contiguous()


def hash_encode_reference(x: torch.Tensor, params: torch.Tensor, config: Mapping | HashGridLayout) -> torch.Tensor:
    """Hash encoding in PyTorch (CPU product path; any device). Same algorithm as the kernel.

    Args:
        x: ``[N, 3]`` float32 (or float64) positions, assumed in ``[0, 1]^3`` (not checked
            here; :func:`hash_encode` checks).
        params: ``[n_params]`` or ``[n_entries, F]`` table, x's dtype and device (tcnn's flat
            parameter layout; see :func:`hash_grid_layout`).
        config: tcnn-style config dict or a :class:`HashGridLayout`.

    Returns:
        ``[N, L*F]`` encoding in x's dtype, level-major; differentiable with respect to
        ``params`` and ``x`` (twice through this reference).
    """
    layout = hash_grid_layout(config)
    table = _validated(x, params, layout, "hash_encode_reference")
    return _HashEncodeReference.apply(x, table, layout)


def _check_unit_cube(x: torch.Tensor) -> None:
    if x.numel() == 0:
        return
    low, high = torch.aminmax(x.detach())
    low, high = float(low), float(high)
    if not (low >= 0.0 and high <= 1.0):
        raise ConfigError(
            f"hash_encode: x must lie in [0, 1]^3 (got values in [{low:g}, {high:g}]); "
            "normalise world points by the scene box first, e.g. HashGrid(config, aabb=...)"
        )


def hash_encode(x: torch.Tensor, params: torch.Tensor, config: Mapping | HashGridLayout) -> torch.Tensor:
    """Multiresolution hash encoding, tiny-cuda-nn ``HashGrid`` semantics (module doc).

    Runs the Triton kernel or :func:`hash_encode_reference` by the rule of
    :func:`render3d.ops._backend.use_triton`.

    Args:
        x: ``[N, 3]`` float32 positions in ``[0, 1]^3`` (float64 accepted for checks).
        params: ``[n_params]`` or ``[n_entries, F]`` table, x's dtype and device.
        config: tcnn-style config dict or a :class:`HashGridLayout`.

    Returns:
        ``[N, L*F]`` encoding, x's dtype, level-major; differentiable with respect to
        ``params`` and ``x`` (the kernel path is once differentiable).

    Raises:
        ConfigError: a bad config, shape, dtype or device, or x outside ``[0, 1]^3`` (or
            NaN). The range check reads x's min and max once (one device sync on CUDA).

    Example:
        >>> config = {"otype": "HashGrid", "n_levels": 16, "n_features_per_level": 2,
        ...           "log2_hashmap_size": 19, "base_resolution": 16, "per_level_scale": 2.0}
        >>> grid = HashGrid(config)
        >>> hash_encode(torch.rand(1024, 3), grid.params, config).shape
        torch.Size([1024, 32])
    """
    layout = hash_grid_layout(config)
    table = _validated(x, params, layout, "hash_encode")
    _check_unit_cube(x)
    if use_triton(x, params):
        from render3d.kernels.hash_encoding import hash_encode_triton

        return hash_encode_triton(x, table, kernel_levels(layout))
    return _HashEncodeReference.apply(x, table, layout)


def kernel_levels(layout: HashGridLayout) -> tuple[tuple[float, int, int, int, bool], ...]:
    """The layout as the kernels take it: ``(scale, resolution, size, offset, hashed)`` per level."""
    return tuple((lv.scale, lv.resolution, lv.size, lv.offset, lv.hashed) for lv in layout.levels)


class HashGrid(torch.nn.Module):
    """A trainable hash grid: tcnn's flat parameter vector plus an optional world box.

    Args:
        config: tcnn-style config dict (see :func:`hash_grid_layout`).
        aabb: optional ``[2, 3]`` (min corner, max corner) world box mapped onto
            ``[0, 1]^3``; points outside it raise :class:`ConfigError`.

    Attributes:
        params: ``[n_params]`` float32 ``nn.Parameter``, uniform in ``±1e-4`` (tcnn's init;
            PyTorch's global generator, so ``torch.manual_seed`` makes it reproducible).
        n_output_dims: ``L * F``.
        layout: the :class:`HashGridLayout`; config: a copy of the config dict (to save
            with a checkpoint).
    """

    def __init__(self, config: Mapping, aabb: torch.Tensor | Sequence[Sequence[float]] | None = None) -> None:
        super().__init__()
        self.layout = hash_grid_layout(config)
        self.config = dict(config)
        self.n_output_dims = self.layout.n_output_dims
        self.params = torch.nn.Parameter(torch.empty(self.layout.n_params).uniform_(-INIT_RANGE, INIT_RANGE))
        box = None
        if aabb is not None:
            box = torch.as_tensor(aabb, dtype=torch.float32)
            if box.shape != (2, 3) or not torch.isfinite(box).all() or not bool((box[1] > box[0]).all()):
                raise ConfigError(f"HashGrid: aabb must be [2, 3] finite (min, max) with max > min, got {aabb!r}")
        self.register_buffer("aabb", box)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x [..., 3]`` (world points when ``aabb`` is set, else ``[0, 1]^3``)
        into ``[..., L*F]`` float32."""
        if x.shape[-1:] != (3,):
            raise ConfigError(f"HashGrid: x must have shape [..., 3], got {tuple(x.shape)}")
        flat = x.reshape(-1, 3)
        if self.aabb is not None:
            flat = self._to_unit_cube(flat)
        return hash_encode(flat, self.params, self.layout).view(*x.shape[:-1], self.n_output_dims)

    def _to_unit_cube(self, points: torch.Tensor) -> torch.Tensor:
        low, high = self.aabb[0], self.aabb[1]
        if points.numel():
            inside = bool(((points >= low) & (points <= high)).all())
            if not inside:
                raise ConfigError(
                    f"HashGrid: points outside the aabb {self.aabb.tolist()} "
                    f"(got coordinates in [{points.min().item():g}, {points.max().item():g}]); cull or clamp them first"
                )
        # Inside points map into [0, 1] up to rounding; the clamp absorbs that last bit.
        return ((points - low) / (high - low)).clamp(0.0, 1.0)
