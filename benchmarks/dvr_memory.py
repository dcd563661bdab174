"""DVR's backward memory against the number of march steps (issue 9's memory target).

    python benchmarks/dvr_memory.py [--data assets/demo] [--steps 64 128 256 512] [--device cpu|cuda]

For each march-step count, one training step (same seed, same rays, the initial field) of the
``dvr`` method with its default config. Reported per row:

- ``saved_MB``: bytes of every tensor autograd saves for the backward during the step
  (``torch.autograd.graph.saved_tensors_hooks``): what the backward keeps alive;
- ``backward_peak_MB`` (CUDA only): ``torch.cuda.max_memory_allocated`` from the start of the
  backward to its end, above what was allocated when it started.

The march runs without autograd and implicit differentiation saves only the found points, so
both should stay flat as the march grows.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import render3d


def measure(data: Path, march_steps: int, device: torch.device) -> dict:
    scene = render3d.Scene.fit(data, method="dvr", steps=0, config={"march_steps": march_steps}, device=device,
                               progress=False)
    method = scene.method.train()
    saved = 0

    def pack(tensor):
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    backward = method.optimizer.zero_grad
    peak = {}

    def timed_zero_grad(*args, **kwargs):  # called right before loss.backward() in train_step
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak["start"] = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        return backward(*args, **kwargs)

    method.optimizer.zero_grad = timed_zero_grad
    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        metrics = method.train_step(1)  # step 1: no grid update
    row = {"march_steps": march_steps, "saved_MB": round(saved / 2**20, 3), "mask_iou": round(metrics["mask_iou"], 3)}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        row["backward_peak_MB"] = round((torch.cuda.max_memory_allocated(device) - peak["start"]) / 2**20, 3)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "demo")
    parser.add_argument("--steps", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = [measure(args.data, steps, torch.device(args.device)) for steps in args.steps]
    for row in rows:
        print(json.dumps(row))
    first = rows[0]["saved_MB"]
    print(f"largest change of saved bytes vs {rows[0]['march_steps']} steps: "
          f"{max(abs(r['saved_MB'] - first) for r in rows) / first:.1%}")
    if args.json:
        from render3d.io.atomic import atomic_write_json

        atomic_write_json(args.json, {"benchmark": "dvr_memory", "device": args.device, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
