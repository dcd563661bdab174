"""Differentiable ops: public functions, PyTorch references and backend dispatch.

Each op module holds the public function, its ``*_reference`` in plain PyTorch and the
dispatch through :mod:`render3d.ops._backend`.
"""
from render3d.ops.gaussian_projection import project_gaussians
from render3d.ops.marching_cubes import marching_cubes
from render3d.ops.sh_colors import sh_colors
from render3d.ops.spherical_harmonics import spherical_harmonics_basis

__all__ = ["marching_cubes", "project_gaussians", "sh_colors", "spherical_harmonics_basis"]
