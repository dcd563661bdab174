"""Every benchmark of render3d, installed as ``render3d.benchmarks``; the numbers measured so far,
with the machine and command of each, are in ``benchmarks/RESULTS.md``.

Run through the CLI (``render3d bench NAME [--quick] [--json FILE]``, the names in
:data:`render3d.benchmarks.registry.BENCHMARKS`) or as scripts
(``python -m render3d.benchmarks.NAME --help``):

- ``registry`` — the names ``render3d bench`` knows and the machine description of a result;
- ``steps`` — ms per training step of every method on a fixed scene and schedule (regressions);
- ``fit`` — fit time and test PSNR/SSIM of a method on a dataset folder;
- ``peers`` — ``render3d bench --peers``: every kernel against its reference and gsplat/nerfacc/tiny-cuda-nn;
- kernels and ops: ``hash_encoding``, ``ray_marching``, ``rasterization``, ``marching_cubes``, ``mise``, ``body``;
- implicit surfaces: ``implicit`` (fits on the body mesh, its cloud, a shape space), ``shapes`` (writes those
  inputs), ``winding_numbers`` (which inside/outside library);
- scale and memory: ``distributed`` (data-parallel scaling), ``dataset_memory``, ``dvr_memory``, ``sfm``;
- ``timing`` — the one timer (wall and CPU seconds, CUDA-synchronised) they share.
"""
