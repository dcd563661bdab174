"""Ray marching + volume rendering throughput, PyTorch reference vs Triton kernels.

    render3d bench ray_marching [--quick] [--device cpu|cuda]

Scene: a 128^3 occupancy grid over ``[-1, 1]^3`` whose occupied cells are a ball of radius
0.5 (set by one warm-up ``OccupancyGrid.update``), and ``2^16`` rays (``2^12`` with
``quick``) from a ring of eye points at distance 3 aimed at random points within 0.6 of the
centre. Marching uses instant-ngp's step ``sqrt(3) * 2 / 1024`` without cone growth.
Rendering composites every marched sample with a constant density of 20 and random colours,
forward and backward (gradients w.r.t. densities and colours).

The reference runs on every device; the Triton kernels only on CUDA tensors (the dispatch
rule), so a CPU run reports the reference alone. Times are medians of ``repeats`` runs after
one warm run; the table gives rays/s and samples/s of each stage (wall clock) and the
process CPU seconds (which stay meaningful when other processes steal cores).
"""
from __future__ import annotations

import math
import statistics

import torch

from render3d.benchmarks.timing import backend as use_backend, timed
from render3d.ops.ray_marching import OccupancyGrid, ray_marching
from render3d.ops.volume_rendering import volume_render

AABB = [[-1.0] * 3, [1.0] * 3]
STEP_SIZE = math.sqrt(3) * 2 / 1024
GRID_RESOLUTION = 128
BALL_RADIUS = 0.5


def bench(device: torch.device, quick: bool) -> list[dict]:
    """Rows ``{backend, device, torch_threads, rays, samples, march_s, render_s, march_cpu_s,
    render_cpu_s, march_rays_per_s, march_samples_per_s, render_samples_per_s}`` for the
    reference and, on CUDA, Triton; prints them as a table. Throughputs are wall-clock;
    ``*_cpu_s`` is the process CPU time, meaningful on a shared machine."""
    n_rays, repeats = (2**12, 2) if quick else (2**16, 3)
    origins, dirs = synthetic_rays(n_rays, device)
    grid = ball_grid(device)
    backends = ["torch", "triton"] if device.type == "cuda" else ["torch"]
    rows = [_bench_backend(backend, origins, dirs, grid, repeats) for backend in backends]
    print_table(rows)
    return rows


def synthetic_rays(n_rays: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``origins, dirs [n_rays, 3]``: rays from a ring at distance 3 aimed within 0.6 of the centre."""
    generator = torch.Generator().manual_seed(0)
    angle = torch.rand(n_rays, generator=generator) * 2 * math.pi
    origins = torch.stack([3 * torch.cos(angle), 3 * torch.sin(angle), torch.full_like(angle, 0.5)], dim=-1)
    targets = (torch.rand(n_rays, 3, generator=generator) * 2 - 1) * 0.6
    dirs = torch.nn.functional.normalize(targets - origins, dim=-1)
    return origins.to(device), dirs.to(device)


def ball_grid(device: torch.device) -> OccupancyGrid:
    """The benchmark's ``GRID_RESOLUTION^3`` grid over ``AABB`` whose occupied cells are a ball of radius
    ``BALL_RADIUS`` (one warm-up update with a fixed seed: the same grid in every run)."""
    grid = OccupancyGrid(torch.tensor(AABB, device=device), GRID_RESOLUTION)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        grid.update(0, lambda x: (x.norm(dim=-1) < BALL_RADIUS).float() * 10.0)
    return grid


def _bench_backend(backend: str, origins, dirs, grid, repeats: int) -> dict:
    device = origins.device
    n_rays = origins.shape[0]

    def march():
        return ray_marching(origins, dirs, grid, aabb=AABB, step_size=STEP_SIZE)

    with use_backend(backend):
        ray_indices, t_starts, t_ends = march()
        generator = torch.Generator().manual_seed(1)
        sigmas = torch.full_like(t_starts, 20.0).requires_grad_(True)
        rgbs = torch.rand(t_starts.shape[0], 3, generator=generator).to(device).requires_grad_(True)

        def render():
            out = volume_render(t_starts, t_ends, ray_indices, n_rays, sigmas, rgbs, torch.ones(3, device=device))
            out["rgb"].sum().backward()
            return out

        render()
        march_times = [timed(march, device)[:2] for _ in range(repeats)]
        render_times = [timed(render, device)[:2] for _ in range(repeats)]
    samples = int(t_starts.shape[0])
    march_s, march_cpu_s = (statistics.median(column) for column in zip(*march_times))
    render_s, render_cpu_s = (statistics.median(column) for column in zip(*render_times))
    return {
        "backend": backend,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "rays": n_rays,
        "samples": samples,
        "march_s": march_s,
        "render_s": render_s,
        "march_cpu_s": march_cpu_s,
        "render_cpu_s": render_cpu_s,
        "march_rays_per_s": n_rays / march_s,
        "march_samples_per_s": samples / march_s,
        "render_samples_per_s": samples / render_s,
    }


def print_table(rows: list[dict]) -> None:
    """One line per backend: sizes, stage times and throughputs."""
    header = (
        f"{'backend':>8} {'device':>7} {'rays':>7} {'samples':>10} {'march s':>9} {'Mrays/s':>8} "
        f"{'Msamples/s':>10} {'render s':>9} {'Msamples/s':>10} {'march cpu s':>11} {'render cpu s':>12}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['backend']:>8} {row['device']:>7} {row['rays']:>7} {row['samples']:>10} "
            f"{row['march_s']:>9.3f} {row['march_rays_per_s'] / 1e6:>8.3f} {row['march_samples_per_s'] / 1e6:>10.2f} "
            f"{row['render_s']:>9.3f} {row['render_samples_per_s'] / 1e6:>10.2f} "
            f"{row['march_cpu_s']:>11.3f} {row['render_cpu_s']:>12.3f}"
        )
