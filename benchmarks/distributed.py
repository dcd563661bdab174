"""Data-parallel scaling: training steps per second of one scene fitted on 1, 2, ... N processes
with the same global batch (:mod:`render3d.distributed`), and the scaling efficiency
``(steps/s with N) / (N * steps/s with 1)``.

On the CPU every process, whatever their count, gets cores / (largest N) threads (gloo between
them), so that N processes have N times the hardware of one, as N GPUs do; with ``--device
cuda`` each process gets one GPU (NCCL). The time is the training loop's
(``train_summary["seconds"]``): loading, setup and evaluation are left out.

Usage (alone on the machine, the numbers are timings)::

    python benchmarks/distributed.py --method 3dgs --nproc 1,2 --steps 200
    python benchmarks/distributed.py --method nerf --nproc 1,2 --steps 200
    python benchmarks/distributed.py --method 3dgs --device cuda --nproc 1,2,4 --batch-views 4 --steps 2000

It prints a Markdown table and, with ``--json FILE``, writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

import render3d
from render3d import distributed
from render3d.io.atomic import atomic_write_json

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=["3dgs", "nerf"], default="3dgs")
    parser.add_argument("--data", type=Path, default=DEMO, help="dataset folder (default: assets/demo)")
    parser.add_argument("--nproc", default="1,2", help="process counts to compare, e.g. 1,2,4 (default 1,2)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of each fit (default 200)")
    parser.add_argument("--batch-views", type=int,
                        help="3dgs views per step, the same for every process count (default: the largest count)")
    parser.add_argument("--preset", default="fast", help="the method's preset (default fast)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.nproc = sorted({int(n) for n in args.nproc.split(",")})
    except ValueError:
        parser.error(f"--nproc {args.nproc}: not a comma-separated list of process counts, e.g. 1,2,4")
    if args.nproc[0] < 1:
        parser.error("--nproc: process counts must be >= 1")
    if args.device.startswith("cuda") and torch.cuda.device_count() < args.nproc[-1]:
        parser.error(f"--nproc {args.nproc[-1]} needs as many GPUs, found {torch.cuda.device_count()}")
    return args


def _config(args: argparse.Namespace) -> dict:
    if args.method != "3dgs":
        return {}
    batch = args.batch_views or args.nproc[-1]
    if any(batch % n for n in args.nproc):
        raise SystemExit(f"--batch-views {batch} must be divisible by every process count {args.nproc}")
    return {"batch_views": batch}


def _fit_rank(args: argparse.Namespace, result: Path) -> int:
    """One process of a fit: train, and on rank 0 write the training loop's time to ``result``."""
    with distributed.process_group(args.device) as parallel:
        scene = render3d.Scene.fit(args.data, args.method, steps=args.steps, preset=args.preset, config=_config(args),
                                   device=args.device, checkpoint_minutes=None, progress=False)
        if parallel.is_main:
            atomic_write_json(result, {"seconds": scene.train_summary["seconds"]})
    return 0


def _threads(args: argparse.Namespace) -> int:
    """CPU threads of every process: the cores split over the largest process count."""
    return max(1, (os.cpu_count() or 1) // args.nproc[-1])


def measure(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for nproc in args.nproc:
            result = Path(folder) / f"nproc{nproc}.json"
            status = distributed.run_processes(_fit_rank, (args, result), nproc, threads=_threads(args))
            if status:
                raise SystemExit(f"the fit on {nproc} process(es) failed with exit status {status}")
            seconds = json.loads(result.read_text())["seconds"]
            rows.append({"nproc": nproc, "seconds": seconds, "steps_per_second": args.steps / seconds})
    base = rows[0]["steps_per_second"] / rows[0]["nproc"]
    for row in rows:
        row["efficiency"] = row["steps_per_second"] / (row["nproc"] * base)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = measure(args)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({_threads(args)} threads per process)"
    print(f"{args.method} on {args.data.name}, {args.steps} steps, {device}, config {_config(args)}")
    print("| processes | steps/s | efficiency |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['nproc']} | {row['steps_per_second']:.2f} | {100 * row['efficiency']:.0f} % |")
    if args.json is not None:
        atomic_write_json(args.json, {"method": args.method, "data": str(args.data), "steps": args.steps,
                                      "device": device, "config": _config(args), "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
