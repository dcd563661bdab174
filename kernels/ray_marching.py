"""Triton ray marching: the step sequence of :mod:`render3d.ops.ray_marching`, per ray.

One program marches a block of rays, one lane per ray, and loops over the step index until
every lane's midpoint has passed its ``t_max`` (uniform steps) or its range of the cone
lattice is done (``cone_angle > 0``: the lattice and each ray's range come from
:func:`render3d.ops.ray_marching.cone_lattice`, which the reference uses too). Two launches, as in nerfacc: the first counts
each ray's samples, an exclusive cumsum turns counts into offsets, the second writes the
samples at those offsets (so the output is packed, sorted by ray then t, without atomics).

Every float32 operation matches the reference's, in the same order; floating-point
contraction into FMA is switched off in the kernel's declaration (``enable_fp_fusion=False``,
given to every launch) so that GPU code
rounds each product like PyTorch does. Not differentiable: a sampler.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from render3d.kernels._variants import declare, product
from render3d.ops.ray_marching import MarchSpec, cone_lattice

BLOCK_RAYS = 64


@declare(
    types={"origins_ptr dirs_ptr t_min_ptr t_max_ptr t_starts_ptr t_ends_ptr lattice_ptr": "*fp32",
           "binary_ptr": "*u8", "counts_ptr offsets_ptr ray_indices_ptr first_ptr last_ptr": "*i64",
           "n_rays resolution": "i32", "step_size min_x min_y min_z scale_x scale_y scale_z": "fp32",
           "lo_x lo_y lo_z inner_x inner_y inner_z": "fp32"},
    # Contraction is a property of a grid: no variant contracts without one.
    constexprs=product(HAS_GRID=[False], USE_CONE=[False, True], CONTRACTED=[False], WRITE=[False, True],
                       BLOCK=[BLOCK_RAYS])
    + product(HAS_GRID=[True], USE_CONE=[False, True], CONTRACTED=[False, True], WRITE=[False, True],
              BLOCK=[BLOCK_RAYS]),
    options={"enable_fp_fusion": False},
)
@triton.jit
def _march_kernel(
    origins_ptr, dirs_ptr, t_min_ptr, t_max_ptr, binary_ptr, lattice_ptr, first_ptr, last_ptr,
    counts_ptr, offsets_ptr, ray_indices_ptr, t_starts_ptr, t_ends_ptr,
    n_rays, step_size, resolution,
    min_x, min_y, min_z, scale_x, scale_y, scale_z,
    lo_x, lo_y, lo_z, inner_x, inner_y, inner_z,
    HAS_GRID: tl.constexpr, USE_CONE: tl.constexpr, CONTRACTED: tl.constexpr, WRITE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    rays = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = rays < n_rays
    t_min = tl.load(t_min_ptr + rays, mask=valid, other=0.0)
    t_max = tl.load(t_max_ptr + rays, mask=valid, other=0.0)
    ox = tl.load(origins_ptr + rays * 3, mask=valid, other=0.0)
    oy = tl.load(origins_ptr + rays * 3 + 1, mask=valid, other=0.0)
    oz = tl.load(origins_ptr + rays * 3 + 2, mask=valid, other=0.0)
    dx = tl.load(dirs_ptr + rays * 3, mask=valid, other=0.0)
    dy = tl.load(dirs_ptr + rays * 3 + 1, mask=valid, other=0.0)
    dz = tl.load(dirs_ptr + rays * 3 + 2, mask=valid, other=0.0)
    if WRITE:
        cursor = tl.load(offsets_ptr + rays, mask=valid, other=0)
    else:
        cursor = tl.zeros([BLOCK], dtype=tl.int64)
    t = t_min
    k = tl.zeros([BLOCK], dtype=tl.float32)
    if USE_CONE:
        index = tl.load(first_ptr + rays, mask=valid, other=0)
        stop = tl.load(last_ptr + rays, mask=valid, other=0)
        marching = valid & (index < stop)
    else:
        marching = valid
    while tl.max(marching.to(tl.int32), axis=0) > 0:
        if USE_CONE:
            t = tl.load(lattice_ptr + index, mask=marching, other=0.0)
            t_next = tl.load(lattice_ptr + index + 1, mask=marching, other=0.0)
            mid = (t + t_next) * 0.5
        else:
            k_next = k + 1.0
            t_next = t_min + k_next * step_size
            mid = (t + t_next) * 0.5
            marching = marching & (mid < t_max)
        if HAS_GRID:
            probe = tl.where(marching, mid, 0.0)
            px = ox + dx * probe
            py = oy + dy * probe
            pz = oz + dz * probe
            if CONTRACTED:
                px, py, pz = _contract(px, py, pz, lo_x, lo_y, lo_z, inner_x, inner_y, inner_z)
            cx = (px - min_x) * scale_x
            cy = (py - min_y) * scale_y
            cz = (pz - min_z) * scale_z
            inside = (cx >= 0) & (cx < resolution) & (cy >= 0) & (cy < resolution) & (cz >= 0) & (cz < resolution)
            ix = tl.minimum(tl.maximum(cx.to(tl.int64), 0), resolution - 1)
            iy = tl.minimum(tl.maximum(cy.to(tl.int64), 0), resolution - 1)
            iz = tl.minimum(tl.maximum(cz.to(tl.int64), 0), resolution - 1)
            cell = (ix * resolution + iy) * resolution + iz
            occupied = tl.load(binary_ptr + cell, mask=marching & inside, other=0) != 0
            emit = marching & inside & occupied
        else:
            emit = marching
        if WRITE:
            tl.store(ray_indices_ptr + cursor, rays, mask=emit)
            tl.store(t_starts_ptr + cursor, t, mask=emit)
            tl.store(t_ends_ptr + cursor, t_next, mask=emit)
        cursor += emit.to(tl.int64)
        if USE_CONE:
            index += 1
            marching = marching & (index < stop)
        else:
            t = t_next
            k = k_next
    if not WRITE:
        tl.store(counts_ptr + rays, cursor, mask=valid)


@triton.jit
def _contract(px, py, pz, lo_x, lo_y, lo_z, inner_x, inner_y, inner_z):
    """:func:`render3d.ops.contraction.contract`, its float32 operations in its order."""
    ux = (px - lo_x) * inner_x - 1.0
    uy = (py - lo_y) * inner_y - 1.0
    uz = (pz - lo_z) * inner_z - 1.0
    n = tl.maximum(tl.maximum(tl.abs(ux), tl.abs(uy)), tl.abs(uz))
    safe = tl.maximum(n, 1.0)
    factor = (2.0 - 1.0 / safe) / safe
    outside = n > 1.0
    return tl.where(outside, ux * factor, ux), tl.where(outside, uy * factor, uy), tl.where(outside, uz * factor, uz)


def ray_marching_triton(
    origins: torch.Tensor, dirs: torch.Tensor, t_min: torch.Tensor, t_max: torch.Tensor, spec: MarchSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel twin of :func:`render3d.ops.ray_marching.ray_marching_reference` (same arguments,
    same packed outputs: ``ray_indices [S]`` int64, ``t_starts [S]``, ``t_ends [S]`` float32)."""
    device = origins.device
    n_rays = origins.shape[0]
    origins, dirs = origins.contiguous(), dirs.contiguous()
    counts = torch.zeros(n_rays, dtype=torch.int64, device=device)
    has_grid = spec.binary is not None
    binary = spec.binary.to(torch.uint8) if has_grid else torch.zeros(1, dtype=torch.uint8, device=device)
    if n_rays == 0:
        empty = torch.zeros(0, dtype=torch.float32, device=device)
        return torch.zeros(0, dtype=torch.int64, device=device), empty, empty.clone()
    use_cone = spec.cone_angle > 0.0
    if use_cone:
        lattice, first, last = cone_lattice(t_min, t_max, spec)
    else:
        lattice, first, last = t_min, counts, counts  # unread stand-ins
    grid = (triton.cdiv(n_rays, BLOCK_RAYS),)
    common = dict(
        n_rays=n_rays, step_size=float(spec.step_size), resolution=max(spec.resolution, 1),
        min_x=float(spec.grid_min[0]), min_y=float(spec.grid_min[1]), min_z=float(spec.grid_min[2]),
        scale_x=float(spec.grid_scale[0]), scale_y=float(spec.grid_scale[1]), scale_z=float(spec.grid_scale[2]),
        lo_x=float(spec.inner_min[0]), lo_y=float(spec.inner_min[1]), lo_z=float(spec.inner_min[2]),
        inner_x=float(spec.inner_scale[0]), inner_y=float(spec.inner_scale[1]), inner_z=float(spec.inner_scale[2]),
        HAS_GRID=has_grid, USE_CONE=use_cone, CONTRACTED=spec.contracted, BLOCK=BLOCK_RAYS,
    )
    # The counting pass writes counts only; the output pointers get allocated stand-ins.
    _march_kernel[grid](
        origins, dirs, t_min, t_max, binary, lattice, first, last, counts, counts, counts, t_min, t_max,
        WRITE=False, **common,
    )
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1])
    offsets = ends - counts
    ray_indices = torch.empty(total, dtype=torch.int64, device=device)
    t_starts = torch.empty(total, dtype=torch.float32, device=device)
    t_ends = torch.empty(total, dtype=torch.float32, device=device)
    if total:
        _march_kernel[grid](
            origins, dirs, t_min, t_max, binary, lattice, first, last, counts, offsets, ray_indices, t_starts,
            t_ends, WRITE=True, **common,
        )
    return ray_indices, t_starts, t_ends
