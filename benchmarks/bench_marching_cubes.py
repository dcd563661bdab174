"""Time render3d's marching cubes against scikit-image's on the same volume.

    python benchmarks/bench_marching_cubes.py [--sizes 128 256 512] [--device cpu|cuda]
                                               [--repeats 5] [--json out.json]

The volume is a gyroid with four periods per axis (a dense, smooth, non-trivial surface),
sampled in float32 on an ``n^3`` grid. Both implementations get warm runs first, then
``--repeats`` interleaved timed runs each; the table reports medians. scikit-image always
runs on the CPU (it has no GPU path), so ``--device cuda`` compares GPU render3d with CPU
scikit-image. Times cover the call alone: the volume is already on the device.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from render3d.io.atomic import atomic_write_json
from render3d.ops.marching_cubes import marching_cubes


def gyroid_volume(size: int, device: torch.device) -> torch.Tensor:
    """``[size, size, size]`` float32 gyroid values, four periods per axis, on ``device``."""
    axis = torch.linspace(0.0, 8.0 * torch.pi, size, device=device)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    return (torch.sin(x) * torch.cos(y) + torch.sin(y) * torch.cos(z) + torch.sin(z) * torch.cos(x)).contiguous()


def _timed(fn, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


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
    ours_times, theirs_times = [], []
    for _ in range(repeats):
        seconds, (verts, faces) = _timed(ours, device)
        ours_times.append(seconds)
        seconds, (sk_verts, sk_faces, _, _) = _timed(theirs, torch.device("cpu"))
        theirs_times.append(seconds)
    row = {
        "size": size,
        "device": str(device),
        "render3d_s": statistics.median(ours_times),
        "skimage_s": statistics.median(theirs_times),
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
    header = f"{'size':>6} {'device':>7} {'render3d s':>11} {'skimage s':>10} {'ratio':>6} {'Mvox/s':>8} {'verts':>10} {'faces':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        mvox = row["size"] ** 3 / row["render3d_s"] / 1e6
        print(
            f"{row['size']:>6} {row['device']:>7} {row['render3d_s']:>11.3f} {row['skimage_s']:>10.3f} "
            f"{row['ratio_render3d_over_skimage']:>6.2f} {mvox:>8.1f} {row['vertices']:>10} {row['faces']:>10}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="grid samples per axis")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where render3d runs")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation (median)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_marching_cubes: --device cuda given but no CUDA device is available", file=sys.stderr)
        return 2
    if any(size < 2 for size in args.sizes) or args.repeats < 1:
        print("bench_marching_cubes: --sizes must be >= 2 and --repeats >= 1", file=sys.stderr)
        return 2
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
