"""End-to-end fit benchmark of a method: fit a scene, report fit time and test PSNR/SSIM.

    render3d bench nerf 3dgs [--quick] [--device cpu|cuda]     # the embedded demo scene
    python benchmarks/fit.py --method 3dgs --data DIR [--steps N] [--config KEY=VALUE ...] [--json out.json]

The method's ``demo_config`` is the starting point (``--config`` overrides it); without
``--data`` the embedded demo scene is fitted.
Fit time is the wall-clock time of ``Scene.fit`` (data loading included, evaluation not).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import render3d
from render3d.methods import get_method


def fit_and_evaluate(method: str, data: Path, device: torch.device, steps: int | None, config: dict,
                     seed: int = 0, progress: bool = False) -> dict:
    """Fit ``method`` to ``data`` and evaluate its test split; one result row."""
    start = time.perf_counter()
    scene = render3d.Scene.fit(data, method=method, steps=steps, config=config, device=device, seed=seed,
                               progress=progress)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = scene.evaluate(data, "test")
    return {
        "method": method,
        "data": str(data),
        "device": str(device),
        "steps": scene.method.config["steps"],
        "config": config,
        "fit_s": round(fit_seconds, 1),
        "eval_s": round(time.perf_counter() - start, 1),
        "test_images": len(result["images"]),
        "primitives": getattr(scene.method, "num_gaussians", None),
        "psnr": result["mean"]["psnr"],
        "ssim": result["mean"]["ssim"],
    }


def print_table(rows: list[dict]) -> None:
    header = f"{'method':>7} {'data':>24} {'device':>7} {'steps':>6} {'fit s':>8} {'PSNR dB':>8} {'SSIM':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['method']:>7} {Path(row['data']).name:>24} {row['device']:>7} {row['steps']:>6} {row['fit_s']:>8.1f} "
              f"{row['psnr']:>8.2f} {row['ssim']:>7.4f}")


def bench(method: str, device: torch.device, quick: bool) -> list[dict]:
    """The demo scene with the method's demo config (``quick``: 30 steps, a smoke run only)."""
    from render3d.apps.commands import demo_data_path

    config = dict(get_method(method).demo_config)
    steps = 30 if quick else config.pop("steps")
    config.pop("steps", None)
    rows = [fit_and_evaluate(method, demo_data_path(), device, steps, config)]
    print_table(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    from render3d.apps.cli import parse_config_item

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="nerf", help="registered method name (default: nerf)")
    parser.add_argument("--data", type=Path, help="dataset folder (default: the embedded demo scene)")
    parser.add_argument("--steps", type=int, help="optimisation steps (default: the demo config's)")
    parser.add_argument("--config", type=parse_config_item, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="write the result row to this JSON file")
    parser.add_argument("--progress", action="store_true", help="show the fit's progress bar")
    args = parser.parse_args(argv)
    if args.data is None:
        rows = bench(args.method, torch.device(args.device), quick=False)
    else:
        config = dict(get_method(args.method).demo_config)
        steps = args.steps if args.steps is not None else config.pop("steps")
        config.pop("steps", None)
        config.update(dict(args.config))
        rows = [fit_and_evaluate(args.method, args.data, torch.device(args.device), steps, config,
                                 progress=args.progress)]
        print_table(rows)
    if args.json:
        from render3d.io.atomic import atomic_write_json

        atomic_write_json(args.json, {"benchmark": "fit", "results": rows})
    print(json.dumps(rows[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
