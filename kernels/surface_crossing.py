"""Triton first-crossing search: one program per ray scans the ray's packed samples block by
block and stops at the first block holding an outside→inside crossing (the reference tests
all pairs at once and keeps the smallest index per ray: the same answer).

Not differentiable: a sampler (see :mod:`render3d.ops.surface_crossing`).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from render3d.kernels._variants import declare
from render3d.ops.surface_crossing import SurfaceCrossing, _gather_bracket
from render3d.ops.volume_rendering import ray_offsets

BLOCK_SAMPLES = 64


@declare(
    types={"values_ptr": "*fp32", "first_ptr counts_ptr index_ptr": "*i64", "level": "fp32"},
    constexprs=[{"BLOCK": BLOCK_SAMPLES}],
)
@triton.jit
def _first_crossing_kernel(values_ptr, first_ptr, counts_ptr, index_ptr, level, BLOCK: tl.constexpr):
    ray = tl.program_id(0).to(tl.int64)
    first = tl.load(first_ptr + ray)
    pairs = tl.load(counts_ptr + ray) - 1  # consecutive pairs of this ray
    none = pairs + 1  # larger than any pair index: "not found"
    best = none
    start = pairs * 0
    while (start < pairs) & (best == none):
        offsets = start + tl.arange(0, BLOCK).to(tl.int64)
        valid = offsets < pairs
        near = tl.load(values_ptr + first + offsets, mask=valid, other=0.0)
        far = tl.load(values_ptr + first + offsets + 1, mask=valid, other=0.0)
        crossing = valid & (near <= level) & (far > level)
        best = tl.min(tl.where(crossing, offsets, none), axis=0)
        start += BLOCK
    tl.store(index_ptr + ray, tl.where(best < none, first + best, -1))


def surface_crossing_triton(ray_indices: torch.Tensor, t: torch.Tensor, values: torch.Tensor,
                            n_rays: int, level: float) -> SurfaceCrossing:
    """Kernel twin of :func:`render3d.ops.surface_crossing.surface_crossing_reference`
    (same arguments and outputs)."""
    first, counts = ray_offsets(ray_indices, n_rays)
    index = torch.full((n_rays,), -1, dtype=torch.int64, device=ray_indices.device)
    if n_rays and values.numel():
        _first_crossing_kernel[(n_rays,)](values.contiguous(), first, counts, index, level, BLOCK=BLOCK_SAMPLES)
    return _gather_bracket(index, t, values)
