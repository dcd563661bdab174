"""Training-step time of every method on a fixed scene and schedule, so that a step-time
regression is one command away from being seen.

    render3d bench steps [--quick] [--json FILE]
    python -m render3d.benchmarks.steps [--methods 3dgs nerf] [--warmup 50] [--repeats 5] [--window 20]

Each method is built with its ``balanced`` preset at the preset's planned step count (no time
budget, so the schedule is the same on every machine), ``setup`` on its scene (the embedded
demo for the image methods, the procedural body mesh for ``sdf`` and ``occupancy``), then runs
``warmup`` steps untimed and ``repeats`` windows of ``window`` steps timed. A row gives the
mean milliseconds per step of each window (min / median / max over the windows), the steps'
process CPU time and what the step count depends on (3dgs: the Gaussians at the end).

The thread count, ``OMP_WAIT_POLICY`` and the cores other work kept busy at the start are in
every row: on 2 cores the wait policy alone changes a 3dgs step by 1.2-1.7x, and another
process by 3-10x. Run it alone.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from render3d.benchmarks.registry import machine_description

METHODS = ("3dgs", "nerf", "dvr", "sdf", "occupancy")
# (warmup, repeats, window): full and --quick.
FULL = (50, 5, 20)
QUICK = (5, 3, 5)


def scene_for(method: str, cache: Path) -> Path:
    """The fixed scene ``method`` is timed on: the demo's images, or the procedural body mesh."""
    from render3d.apps.commands import demo_data_path
    from render3d.methods import get_method

    if get_method(method).data_kind == "images":
        return demo_data_path()
    body = cache / "body.ply"
    if not body.is_file():
        from render3d.data.synthetic_shapes import make_body_mesh
        from render3d.mesh import export_mesh

        cache.mkdir(parents=True, exist_ok=True)
        export_mesh(make_body_mesh(), body)
    return body


def time_steps(method: str, data: Path, device: torch.device, warmup: int, repeats: int, window: int,
               seed: int = 0) -> dict:
    """One row: ``method``'s balanced preset on ``data``; ms/step over ``repeats`` windows."""
    from render3d import random_state
    from render3d.methods import get_method

    cls = get_method(method)
    dataset = cls.load_training_data(data, device)
    config = cls.make_config(None, None, "balanced", data_defaults=cls.data_defaults(dataset, "balanced"))
    devices = [device] if device.type == "cuda" else []
    with random_state.seeded(seed, devices):
        model = cls(config, cls.scene_info_for(dataset)).to(device)
        start = time.perf_counter()
        model.setup(dataset)
        setup_s = time.perf_counter() - start
        model.train()
        metrics: dict = {}
        for step in range(warmup):
            metrics = model.train_step(step)
        windows, cpu = [], 0.0
        for repeat in range(repeats):
            _synchronize(device)
            wall, process = time.perf_counter(), time.process_time()
            for step in range(warmup + repeat * window, warmup + (repeat + 1) * window):
                metrics = model.train_step(step)
            _synchronize(device)
            windows.append(1000.0 * (time.perf_counter() - wall) / window)
            cpu += time.process_time() - process
    row = {"method": method, "scene": data.name, "steps_timed": f"{warmup}..{warmup + repeats * window - 1}",
           "ms_min": round(min(windows), 1), "ms_median": round(statistics.median(windows), 1),
           "ms_max": round(max(windows), 1), "cpu_ms_per_step": round(1000.0 * cpu / (repeats * window), 1),
           "setup_s": round(setup_s, 2), "threads": torch.get_num_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)")}
    if "gaussians" in metrics:
        row["gaussians"] = int(metrics["gaussians"])
    return row


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_table(rows: list[dict], busy: float) -> None:
    print(f"threads {rows[0]['threads']}, OMP_WAIT_POLICY {rows[0]['omp_wait_policy']}, "
          f"1-minute load at the start {busy:.2f}")
    print(f"{'method':<10} {'steps':>9} {'min ms':>8} {'median ms':>10} {'max ms':>8} {'cpu ms':>8} "
          f"{'setup s':>8}  note")
    for row in rows:
        note = f"{row['gaussians']} Gaussians at the end" if "gaussians" in row else ""
        print(f"{row['method']:<10} {row['steps_timed']:>9} {row['ms_min']:>8.1f} {row['ms_median']:>10.1f} "
              f"{row['ms_max']:>8.1f} {row['cpu_ms_per_step']:>8.1f} {row['setup_s']:>8.2f}  {note}", flush=True)


def bench(device: torch.device, quick: bool, methods: tuple[str, ...] = METHODS, schedule: tuple | None = None,
          cache: Path | None = None) -> list[dict]:
    """Rows of :func:`time_steps` for ``methods`` (``render3d bench steps``)."""
    warmup, repeats, window = schedule or (QUICK if quick else FULL)
    cache = Path(tempfile.gettempdir()) / "render3d-bench-steps" if cache is None else cache
    busy = os.getloadavg()[0]
    rows = []
    for method in methods:
        rows.append(time_steps(method, scene_for(method, cache), device, warmup, repeats, window))
        rows[-1]["load_at_start"] = round(busy, 2)
    print_table(rows, busy)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--warmup", type=int, default=FULL[0], help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=FULL[1], help="timed windows")
    parser.add_argument("--window", type=int, default=FULL[2], help="steps per timed window")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the rows and the machine description here")
    args = parser.parse_args(argv)
    if min(args.warmup, args.repeats - 1, args.window - 1) < 0:
        parser.error("--warmup must be >= 0, --repeats and --window >= 1")
    device = torch.device(args.device)
    rows = bench(device, False, tuple(args.methods), (args.warmup, args.repeats, args.window))
    if args.json is not None:
        from render3d.io.atomic import atomic_write_json

        atomic_write_json(args.json, {"machine": machine_description(device), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
