"""Time the hash encoding forward + backward: PyTorch reference vs Triton kernel.

    render3d bench hash_encoding [--quick] [--device cpu|cuda]

Configuration: Instant-NGP's default grid (16 levels, F=2, T=2^19, base resolution 16,
per-level scale 2), float32, points uniform in the unit cube, a random cotangent, table
gradient only (the NeRF training case). Rows:

- on CUDA: reference and kernel on 2^20 points, plus the CPU reference on 2^18 points;
- on CPU: the reference on 2^18 points (and 2^20 unless ``quick``).

Effective bandwidth counts the bytes the op must move, per point and level: 8 corner rows of
F float32 read in the forward, 8 rows of F float32 atomics (read + write) in the backward,
plus inputs (12 B) read twice, the output written and its gradient read (L*F*4 B each), and
the table gradient zeroed once per step. Real traffic is higher where corner rows share no
cache line, lower where neighbouring points share them.
"""
from __future__ import annotations

import statistics
import time

import torch

from render3d.benchmarks import timing
from render3d.ops.hash_encoding import HashGrid, hash_encode

CONFIG = {"otype": "HashGrid", "n_levels": 16, "n_features_per_level": 2, "log2_hashmap_size": 19,
          "base_resolution": 16, "per_level_scale": 2.0}


def modeled_bytes(n_points: int, grid: HashGrid) -> int:
    """Bytes one forward + table-gradient backward must move (model in the module doc)."""
    levels, features = grid.layout.n_levels, grid.layout.n_features_per_level
    per_point = 2 * 12 + levels * (8 * features * 4 + 8 * features * 8 + 2 * features * 4)
    return n_points * per_point + grid.layout.n_params * 4


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(n_points: int, device: torch.device, backend: str, repeats: int) -> dict:
    """Median forward / backward seconds of one implementation (``backend``: torch | triton)."""
    torch.manual_seed(0)
    grid = HashGrid(CONFIG).to(device)
    x = torch.rand(n_points, 3, device=device)
    cotangent = torch.randn(n_points, grid.n_output_dims, device=device)
    forward_times, backward_times, cpu_times = [], [], []
    with timing.backend(backend):
        for repeat in range(repeats + 1):  # the first run warms up (compilation, allocator)
            grid.params.grad = None
            _synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            out = hash_encode(x, grid.params, grid.layout)
            _synchronize(device)
            middle = time.perf_counter()
            out.backward(cotangent)
            _synchronize(device)
            end = time.perf_counter()
            if repeat:
                forward_times.append(middle - start)
                backward_times.append(end - middle)
                cpu_times.append(time.process_time() - start_cpu)
    forward_s, backward_s = statistics.median(forward_times), statistics.median(backward_times)
    total = forward_s + backward_s
    return {
        "impl": "kernel" if backend == "triton" else "reference",
        "device": str(device),
        "n_points": n_points,
        "forward_s": forward_s,
        "backward_s": backward_s,
        "total_s": total,
        "process_cpu_s": statistics.median(cpu_times),
        "points_per_s": n_points / total,
        "effective_gb_per_s": modeled_bytes(n_points, grid) / total / 1e9,
        "threads": torch.get_num_threads(),
    }


def print_table(rows: list[dict]) -> None:
    """One line per row: implementation, device, points, times, throughput, bandwidth."""
    header = f"{'impl':<10}{'device':<8}{'points':>9}{'fwd ms':>10}{'bwd ms':>10}{'Mpts/s':>9}{'GB/s':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['impl']:<10}{row['device']:<8}{row['n_points']:>9}{row['forward_s'] * 1e3:>10.1f}"
              f"{row['backward_s'] * 1e3:>10.1f}{row['points_per_s'] / 1e6:>9.2f}{row['effective_gb_per_s']:>8.2f}")


def bench(device: torch.device, quick: bool) -> list[dict]:
    """Run the rows listed in the module doc on ``device``, print the table, return the rows."""
    device = torch.device(device)
    repeats = 2 if quick else 5
    cpu = torch.device("cpu")
    rows = []
    if device.type == "cuda":
        n_points = 2**18 if quick else 2**20
        rows.append(time_step(n_points, device, "torch", repeats))
        rows.append(time_step(n_points, device, "triton", repeats))
    elif not quick:
        rows.append(time_step(2**20, cpu, "torch", 2))
    rows.append(time_step(2**16 if quick else 2**18, cpu, "torch", repeats))
    print_table(rows)
    return rows
