"""Time Gaussian tile binning and rasterization.

    render3d bench rasterization [--quick] [--device cpu|cuda]

Rows:

- ``reference``: the PyTorch reference (the CPU product path) on ``device``: 100k Gaussians
  at 400x400 (quick: 20k at 200x200).
- ``triton`` (CUDA only): the Triton kernels on 1M Gaussians at 1920x1080 (quick: 100k at
  640x480), reported as frames per second.

The scene is synthetic but projection-like: means uniform over the image (and 4 px past it),
random rotations, standard deviations uniform in [0.5, 3] px, opacities uniform in
[0.05, 1], RGB colours, radii ``ceil(3 * max sigma)``. Each timing is the median of warm runs;
``binning`` covers ``isect_tiles`` + ``isect_offset_encode``, ``forward`` the rasterization
alone, ``forward+backward`` rasterization plus the backward pass of ``sum(colors) +
sum(alphas)`` through all four inputs. CPU rows also give process CPU time, which stays
meaningful when other processes load the machine.
"""
from __future__ import annotations

import math
import statistics

import torch

from render3d.benchmarks.timing import backend, timed
from render3d.ops.rasterization import rasterize_gaussians
from render3d.ops.tile_binning import isect_offset_encode, isect_tiles, tile_grid


def synthetic_splats(n_gaussians: int, width: int, height: int, device: torch.device, seed: int = 0) -> dict:
    """Projected-Gaussian tensors for one camera: means2d [1,N,2], conics [1,N,3], colors [1,N,3],
    opacities [1,N], depths [1,N] float32 and radii [1,N] int32, on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    shape = (1, n_gaussians)
    means2d = torch.rand(shape + (2,), generator=generator) * torch.tensor([width + 8.0, height + 8.0]) - 4.0
    angle = torch.rand(shape, generator=generator) * math.pi
    sigma = 0.5 + 2.5 * torch.rand(shape + (2,), generator=generator)
    cos, sin = torch.cos(angle), torch.sin(angle)
    inv_var = 1.0 / sigma**2
    conics = torch.stack([cos**2 * inv_var[..., 0] + sin**2 * inv_var[..., 1],
                          cos * sin * (inv_var[..., 0] - inv_var[..., 1]),
                          sin**2 * inv_var[..., 0] + cos**2 * inv_var[..., 1]], dim=-1)
    splats = {
        "means2d": means2d,
        "conics": conics,
        "colors": torch.rand(shape + (3,), generator=generator),
        "opacities": 0.05 + 0.95 * torch.rand(shape, generator=generator),
        "depths": 1.0 + 9.0 * torch.rand(shape, generator=generator),
        "radii": torch.ceil(3.0 * sigma.amax(-1)).to(torch.int32),
    }
    return {name: value.to(device) for name, value in splats.items()}




def bench_case(n_gaussians: int, width: int, height: int, device: torch.device, repeats: int,
               implementation: str) -> dict:
    """Median timings of binning, forward and forward+backward for one scene size."""
    splats = synthetic_splats(n_gaussians, width, height, device)
    tile_size = 16
    tiles_w, tiles_h = tile_grid(width, height, tile_size)

    def binning():
        _, isect_ids, flatten_ids = isect_tiles(splats["means2d"], splats["radii"], splats["depths"],
                                                width, height, tile_size)
        return isect_offset_encode(isect_ids, 1, tiles_w, tiles_h), flatten_ids

    offsets, flatten_ids = binning()
    leaves = {name: splats[name].clone().requires_grad_(True) for name in ("means2d", "conics", "colors", "opacities")}

    def forward():
        with torch.no_grad():
            return rasterize_gaussians(**leaves, width=width, height=height, tile_size=tile_size,
                                       isect_offsets=offsets, flatten_ids=flatten_ids)

    def forward_backward():
        colors, alphas = rasterize_gaussians(**leaves, width=width, height=height, tile_size=tile_size,
                                             isect_offsets=offsets, flatten_ids=flatten_ids)
        (colors.sum() + alphas.sum()).backward()

    timings = {}
    for name, fn in (("binning", binning), ("forward", forward), ("forward+backward", forward_backward)):
        fn()
        runs = [timed(fn, device)[:2] for _ in range(repeats)]
        timings[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "implementation": implementation,
        "device": str(device),
        "gaussians": n_gaussians,
        "image": f"{width}x{height}",
        "intersections": int(flatten_ids.numel()),
        "binning_s": timings["binning"][0],
        "forward_s": timings["forward"][0],
        "forward_backward_s": timings["forward+backward"][0],
        "forward_cpu_s": timings["forward"][1],
        "forward_backward_cpu_s": timings["forward+backward"][1],
        "forward_fps": 1.0 / timings["forward"][0],
        "forward_backward_fps": 1.0 / timings["forward+backward"][0],
        "peak_gpu_mib": peak,
    }


def print_table(rows: list[dict]) -> None:
    """Print one line per row: sizes, seconds and frames per second."""
    print(f"{'impl':<10} {'device':<6} {'gaussians':>9} {'image':>9} {'isects':>9} {'bin s':>7} "
          f"{'fwd s':>7} {'fwd+bwd s':>9} {'fwd cpu s':>9} {'f+b cpu s':>9} {'fwd fps':>8} {'f+b fps':>8}")
    for row in rows:
        print(f"{row['implementation']:<10} {row['device']:<6} {row['gaussians']:>9} {row['image']:>9} "
              f"{row['intersections']:>9} {row['binning_s']:>7.3f} {row['forward_s']:>7.3f} "
              f"{row['forward_backward_s']:>9.3f} {row['forward_cpu_s']:>9.3f} {row['forward_backward_cpu_s']:>9.3f} "
              f"{row['forward_fps']:>8.1f} {row['forward_backward_fps']:>8.1f}")


def bench(device: torch.device, quick: bool) -> list[dict]:
    """Run the rasterization benchmark on ``device`` (see the module docstring) and print its table."""
    repeats = 2 if quick else 5
    rows = []
    with backend("torch"):
        size = (20_000, 200, 200) if quick else (100_000, 400, 400)
        rows.append(bench_case(*size, device, repeats, "reference"))
    if device.type == "cuda":
        with backend("triton"):
            size = (100_000, 640, 480) if quick else (1_000_000, 1920, 1080)
            rows.append(bench_case(*size, device, repeats, "triton"))
    print_table(rows)
    return rows


if __name__ == "__main__":
    bench(torch.device("cuda" if torch.cuda.is_available() else "cpu"), quick=False)
