"""Triton kernels and their autograd Functions (installed as ``render3d.kernels``).

Nothing here is imported by ``import render3d``: ops in ``render3d.ops`` import a kernel
module only when the dispatch rule in ``render3d.ops._backend`` picks Triton.
"""
