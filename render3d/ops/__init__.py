"""Differentiable ops: public functions, PyTorch references and backend dispatch.

Each op module holds the public function, its ``*_reference`` in plain PyTorch and the
dispatch through :mod:`render3d.ops._backend`.
"""
from render3d.ops.contraction import contract, uncontract
from render3d.ops.forward_kinematics import forward_kinematics, forward_kinematics_reference
from render3d.ops.gaussian_projection import project_gaussians
from render3d.ops.hash_encoding import HashGrid, hash_encode, hash_encode_reference, hash_grid_layout
from render3d.ops.implicit_surface import implicit_surface_points
from render3d.ops.marching_cubes import marching_cubes
from render3d.ops.rasterization import rasterize_gaussians
from render3d.ops.ray_marching import OccupancyGrid, ray_aabb_intersect, ray_marching
from render3d.ops.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
)
from render3d.ops.sh_colors import sh_colors
from render3d.ops.skinning import linear_blend_skinning, linear_blend_skinning_reference
from render3d.ops.spherical_harmonics import spherical_harmonics_basis
from render3d.ops.surface_crossing import SurfaceCrossing, surface_crossing
from render3d.ops.surface_search import SurfaceHit, find_surface, secant_refine, sphere_trace
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
    "SurfaceHit",
    "accumulate_along_rays",
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "contract",
    "forward_kinematics",
    "forward_kinematics_reference",
    "find_surface",
    "hash_encode",
    "hash_encode_reference",
    "hash_grid_layout",
    "implicit_surface_points",
    "isect_offset_encode",
    "isect_tiles",
    "linear_blend_skinning",
    "linear_blend_skinning_reference",
    "marching_cubes",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rotation_6d",
    "project_gaussians",
    "quaternion_to_axis_angle",
    "quaternion_to_matrix",
    "ray_aabb_intersect",
    "rasterize_gaussians",
    "ray_marching",
    "render_weights_from_alpha",
    "render_weights_from_density",
    "rotation_6d_to_matrix",
    "secant_refine",
    "sh_colors",
    "spherical_harmonics_basis",
    "sphere_trace",
    "surface_crossing",
    "uncontract",
    "volume_render",
]
