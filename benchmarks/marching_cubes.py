"""Time render3d's marching cubes against scikit-image's on the same volume.

    render3d bench marching_cubes [--quick] [--device cpu|cuda] [--json out.json]
    python benchmarks/marching_cubes.py [--sizes 128 256 512] [--device cpu|cuda]
                                               [--repeats 5] [--threads N] [--json out.json]

The volume is a gyroid with four periods per axis (a dense, smooth, non-trivial surface),
sampled in float32 on an ``n^3`` grid. Both implementations get warm runs first, then
``--repeats`` interleaved timed runs each; the table reports medians. scikit-image always
runs on the CPU (it has no GPU path), so ``--device cuda`` compares GPU render3d with CPU
scikit-image. Times cover the call alone: the volume is already on the device.

Wall-clock medians are the headline; the JSON also keeps each implementation's process CPU
time, which stays meaningful on a shared machine where other processes steal cores (PyTorch's
OpenMP threads then wait at every op's barrier; scikit-image is single-threaded).
``--threads`` sets ``torch.set_num_threads`` for render3d's CPU runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import torch

from render3d.benchmarks.timing import timed
from render3d.io.atomic import atomic_write_json
from render3d.ops.marching_cubes import marching_cubes


def gyroid_volume(size: int, device: torch.device) -> torch.Tensor:
    """``[size, size, size]`` float32 gyroid values, four periods per axis, on ``device``."""
    axis = torch.linspace(0.0, 8.0 * torch.pi, size, device=device)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    return (torch.sin(x) * torch.cos(y) + torch.sin(y) * torch.cos(z) + torch.sin(z) * torch.cos(x)).contiguous()




def bench_size(size: int, device: torch.device, repeats: int, level: float = 0.0) -> dict:
    """Median seconds of both implementations on one volume size, with mesh sizes."""
    from skimage import measure

    volume = gyroid_volume(size, device)
    volume_numpy = volume.cpu().numpy()

    def ours():
        return marching_cubes(volume, level)

    def theirs():
        return measure.marching_cubes(volume_numpy, level)

    ours()  # warm: case tables, allocator, CUDA context
    theirs()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ours_times, theirs_times, ours_cpu, theirs_cpu = [], [], [], []
    for _ in range(repeats):
        seconds, cpu_seconds, (verts, faces) = timed(ours, device)
        ours_times.append(seconds)
        ours_cpu.append(cpu_seconds)
        seconds, cpu_seconds, (sk_verts, sk_faces, _, _) = timed(theirs, torch.device("cpu"))
        theirs_times.append(seconds)
        theirs_cpu.append(cpu_seconds)
    row = {
        "size": size,
        "device": str(device),
        "render3d_s": statistics.median(ours_times),
        "skimage_s": statistics.median(theirs_times),
        "render3d_cpu_s": statistics.median(ours_cpu),
        "skimage_cpu_s": statistics.median(theirs_cpu),
        "render3d_runs_s": ours_times,
        "skimage_runs_s": theirs_times,
        "vertices": int(verts.shape[0]),
        "faces": int(faces.shape[0]),
        "skimage_vertices": int(sk_verts.shape[0]),
        "skimage_faces": int(sk_faces.shape[0]),
    }
    row["ratio_render3d_over_skimage"] = row["render3d_s"] / row["skimage_s"]
    if device.type == "cuda":
        row["render3d_peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return row


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'size':>6} {'device':>7} {'render3d s':>11} {'skimage s':>10} {'ratio':>6} "
        f"{'r3d cpu s':>10} {'sk cpu s':>9} {'Mvox/s':>8} {'verts':>10} {'faces':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        mvox = row["size"] ** 3 / row["render3d_s"] / 1e6
        print(
            f"{row['size']:>6} {row['device']:>7} {row['render3d_s']:>11.3f} {row['skimage_s']:>10.3f} "
            f"{row['ratio_render3d_over_skimage']:>6.2f} {row['render3d_cpu_s']:>10.3f} {row['skimage_cpu_s']:>9.3f} "
            f"{mvox:>8.1f} {row['vertices']:>10} {row['faces']:>10}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="grid samples per axis")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where render3d runs")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation (median)")
    parser.add_argument("--threads", type=int, help="torch CPU threads for render3d (default: torch's)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_marching_cubes: --device cuda given but no CUDA device is available", file=sys.stderr)
        return 2
    if any(size < 2 for size in args.sizes) or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        print("bench_marching_cubes: --sizes must be >= 2, --repeats and --threads >= 1", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [bench_size(size, device, args.repeats) for size in args.sizes]
    print_table(rows)
    if args.json:
        import skimage

        atomic_write_json(
            args.json,
            {
                "benchmark": "marching_cubes",
                "field": "gyroid, 4 periods per axis, float32, level 0",
                "timing": "median of --repeats interleaved warm runs; wall and process CPU seconds",
                "torch": torch.__version__,
                "skimage": skimage.__version__,
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "machine": platform.platform(),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "results": rows,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
