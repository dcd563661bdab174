"""Differentiable ops: public functions, PyTorch references and backend dispatch.

Each op module holds the public function, its ``*_reference`` in plain PyTorch and the
dispatch through :mod:`render3d.ops._backend`.
"""
from render3d.ops.marching_cubes import marching_cubes

__all__ = ["marching_cubes"]
