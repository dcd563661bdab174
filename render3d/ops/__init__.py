"""Differentiable ops: public functions, PyTorch references and backend dispatch.

Each op module holds the public function, its ``*_reference`` in plain PyTorch and the
dispatch through :mod:`render3d.ops._backend`.
"""
from render3d.ops.gaussian_projection import project_gaussians
from render3d.ops.hash_encoding import HashGrid, hash_encode, hash_encode_reference, hash_grid_layout
from render3d.ops.marching_cubes import marching_cubes
from render3d.ops.rasterization import rasterize_gaussians
from render3d.ops.ray_marching import OccupancyGrid, ray_aabb_intersect, ray_marching
from render3d.ops.sh_colors import sh_colors
from render3d.ops.spherical_harmonics import spherical_harmonics_basis
from render3d.ops.surface_crossing import SurfaceCrossing, surface_crossing
from render3d.ops.tile_binning import isect_offset_encode, isect_tiles
from render3d.ops.volume_rendering import (
    accumulate_along_rays,
    render_weights_from_alpha,
    render_weights_from_density,
    volume_render,
)

__all__ = [
    "HashGrid",
    "OccupancyGrid",
    "SurfaceCrossing",
    "accumulate_along_rays",
    "hash_encode",
    "hash_encode_reference",
    "hash_grid_layout",
    "isect_offset_encode",
    "isect_tiles",
    "marching_cubes",
    "project_gaussians",
    "ray_aabb_intersect",
    "rasterize_gaussians",
    "ray_marching",
    "render_weights_from_alpha",
    "render_weights_from_density",
    "sh_colors",
    "spherical_harmonics_basis",
    "surface_crossing",
    "volume_render",
]
