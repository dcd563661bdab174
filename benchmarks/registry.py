"""The benchmark registry behind ``render3d bench``.

Each benchmark returns rows (dicts) and prints its own table; ``run_benchmarks`` adds the
machine description so that a JSON result says where it was measured. Full write-ups with
the numbers measured so far are in ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Callable

import torch

from render3d.errors import ConfigError


@dataclass(frozen=True)
class Benchmark:
    description: str
    run: Callable[[torch.device, bool], list[dict]]
    # Run by a bare ``render3d bench``; False for those that need more than the project (Blender).
    in_default: bool = True


def _marching_cubes(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.marching_cubes import bench_size, print_table

    sizes, repeats = ((64, 128), 2) if quick else ((128, 256, 512), 5)
    rows = [bench_size(size, device, repeats) for size in sizes]
    print_table(rows)
    return rows


def _hash_encoding(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.hash_encoding import bench

    return bench(device, quick)


def _rasterization(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.rasterization import bench

    return bench(device, quick)


def _fit(method: str) -> Callable[[torch.device, bool], list[dict]]:
    def run(device: torch.device, quick: bool) -> list[dict]:
        from render3d.benchmarks.fit import bench

        return bench(method, device, quick)

    return run


def _ray_marching(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.ray_marching import bench

    return bench(device, quick)


def _implicit(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.implicit import bench

    return bench(device, quick)


def _mise(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.mise import bench

    return bench(device, quick)


def _steps(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.steps import bench

    return bench(device, quick)


def _body(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.body import bench

    return bench(device, quick)


def _avatar(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.avatar import bench

    return bench(device, quick)


def _capture(device: torch.device, quick: bool) -> list[dict]:
    from render3d.benchmarks.capture import bench

    return bench(device, quick)


BENCHMARKS: dict[str, Benchmark] = {
    "marching_cubes": Benchmark("render3d.ops.marching_cubes vs scikit-image on a gyroid volume", _marching_cubes),
    "hash_encoding": Benchmark("hash_encode forward+backward: PyTorch reference vs Triton kernel", _hash_encoding),
    "nerf": Benchmark("fit the nerf method to the demo scene: fit time, test PSNR/SSIM", _fit("nerf")),
    "3dgs": Benchmark("fit the 3dgs method to the demo scene: fit time, test PSNR/SSIM", _fit("3dgs")),
    "dvr": Benchmark("fit the dvr method to the demo scene: fit time, test PSNR/SSIM", _fit("dvr")),
    "rasterization": Benchmark(
        "Gaussian tile binning + rasterization: CPU reference (100k @ 400x400), Triton fps on CUDA (1M @ 1080p)",
        _rasterization,
    ),
    "body": Benchmark("skinned bodies: FK+LBS vs anny's forward, anny reproduction, Triton vs reference, fitting",
                      _body),
    "ray_marching": Benchmark("ray marching + volume rendering throughput (reference; Triton on CUDA)", _ray_marching),
    "implicit": Benchmark("fit sdf/occupancy to the body mesh, IGR to its point cloud, a shape space: IoU, "
                          "Chamfer, F@1%, NC and fit time", _implicit),
    "steps": Benchmark("ms per training step of every method on a fixed scene and schedule (min/median/max)",
                       _steps),
    "capture": Benchmark("the CLI's fit (no flags) of a simulated 50-frame 1080x1920 phone capture of a room "
                         "(rendered with Blender once; named only): command time, test PSNR/SSIM", _capture,
                         in_default=False),
    "avatar": Benchmark("the CLI's fit (no flags) of an avatar to anny in 6 poses x 20 views (Blender renders, made once; "
                        "named only), from true parameters and from keypoints: held-out-pose PSNR, mask IoU, time",
                        _avatar, in_default=False),
    "mise": Benchmark("MISE vs dense field evaluation at 256^3: fraction of points, speed-up, same mesh", _mise),
}


def machine_description(device: torch.device) -> dict:
    """Where a benchmark ran: platform, CPU count, torch version and GPU name."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def resolve_bench_device(device: str | None) -> torch.device:
    """``--device``: CUDA when available by default; ConfigError for CUDA on a machine without it."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device}: not a device (cpu, cuda, cuda:N)") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine")
    return torch_device


def run_benchmarks(names: list[str], device: str | None = None, quick: bool = False) -> dict:
    """Run the named benchmarks (all those ``in_default`` when ``names`` is empty) and return their rows by name."""
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"unknown benchmark {unknown[0]!r} (available: {', '.join(BENCHMARKS)})")
    torch_device = resolve_bench_device(device)
    results = {}
    for name in names or [name for name, benchmark in BENCHMARKS.items() if benchmark.in_default]:
        print(f"== {name}: {BENCHMARKS[name].description} ({torch_device})", flush=True)
        results[name] = BENCHMARKS[name].run(torch_device, quick)
    return {"machine": machine_description(torch_device), "results": results}
