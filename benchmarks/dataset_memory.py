"""Memory of a real-size image dataset: peak RSS of loading it and of a short 3DGS fit on it.

Writes a NeRF-synthetic folder of ``--images`` training views at ``--width`` x ``--height``
(default 300 at 1920x1080: smooth random colours and a soft-edged alpha blob, RGBA PNG as the
Blender scenes ship; ``--jpeg`` writes RGB JPEGs instead) into ``--scene`` unless it is already
there, then, each in a fresh process,

- loads the train split with ``render3d.load_dataset`` and reports the process's resident set
  before the load (after ``import render3d``), its peak (``VmHWM``) after it, their difference
  (the data) and the bytes of the dataset's tensors;
- with ``--fit-steps N`` (default 20; 0 skips it), runs ``render3d fit SCENE --method 3dgs --steps N
  --no-eval`` and reports its peak RSS (``ru_maxrss`` of the child).

``--code DIR`` measures the load of another checkout of render3d (put first on ``PYTHONPATH``),
e.g. the commit before integer storage, and ``--max-images`` loads only that many views (evenly
spaced) to keep such a run within the machine's memory; the fit always runs the installed render3d. Example::

    python benchmarks/dataset_memory.py --scene /tmp/r3d_1080p --json memory.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

TARGET_DATA_GB = 4.0

_LOAD = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import render3d, torch
from render3d.data import load_dataset
before = status("VmRSS")
start = time.perf_counter()
data = load_dataset(sys.argv[1], "train", max_images=None if sys.argv[2] == "all" else int(sys.argv[2]))
seconds = time.perf_counter() - start
tensors = {name: getattr(data, name) for name in ("images", "alphas", "masks")}
unique = {id(t): t for t in tensors.values() if t is not None}.values()
print(json.dumps({
    "images": len(data), "size": [data.width, data.height], "dtype": str(data.images.dtype),
    "rss_before": before, "rss_peak": status("VmHWM"), "data_bytes": sum(t.numel() * t.element_size() for t in unique),
    "seconds": seconds, "module": render3d.__file__,
}))
"""


def _pose(index: int, count: int, radius: float = 4.0) -> list[list[float]]:
    """OpenGL camera-to-world on a slowly rising orbit around the origin (the Blender convention)."""
    angle = 2 * math.pi * index / count
    elevation = math.radians(15 + 30 * index / count)
    eye = radius * np.array([math.cos(angle) * math.cos(elevation), math.sin(angle) * math.cos(elevation),
                             math.sin(elevation)])
    back = eye / np.linalg.norm(eye)  # OpenGL +z points away from the target
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w.tolist()


def _image(index: int, width: int, height: int, alpha: bool):
    """Smooth random RGB(A): a coarse random grid upsampled bicubically, alpha a soft ellipse."""
    from PIL import Image

    rng = np.random.default_rng(index)
    coarse = Image.fromarray(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8))
    rgb = np.asarray(coarse.resize((width, height), Image.BICUBIC))
    if not alpha:
        return Image.fromarray(rgb)
    y, x = np.ogrid[:height, :width]
    r = np.hypot((x - width / 2) / (0.3 * width), (y - height / 2) / (0.35 * height))
    a = (np.clip((1.1 - r) * 8, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, a]))


def write_scene(root: Path, count: int, width: int, height: int, jpeg: bool, threads: int = 2) -> float:
    """A NeRF-synthetic folder with ``count`` train and 4 test views; returns the wall time."""
    start = time.perf_counter()
    fov = 2 * math.atan(0.5 * 36 / 35)  # a 35 mm lens on a full-frame sensor's width
    extension = ".jpg" if jpeg else ".png"

    def write(split: str, index: int, total: int) -> dict:
        path = root / split / f"r_{index}{extension}"
        image = _image(index + (0 if split == "train" else 10_000), width, height, alpha=not jpeg)
        image.save(path, **({"quality": 90} if jpeg else {"compress_level": 1}))
        return {"file_path": f"./{split}/r_{index}", "transform_matrix": _pose(index, total)}

    for split, total in (("train", count), ("test", 4)):
        (root / split).mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            frames = list(pool.map(lambda i: write(split, i, total), range(total)))
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}))
    return time.perf_counter() - start


def _environment(code: Path | None) -> dict:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def measure_load(scene: Path, max_images: int | None, code: Path | None) -> dict:
    """Peak RSS of ``load_dataset(scene, "train")`` in a fresh process."""
    result = subprocess.run([sys.executable, "-c", _LOAD, str(scene), str(max_images or "all")], check=True,
                            capture_output=True, text=True, env=_environment(code))
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_fit(scene: Path, steps: int) -> dict:
    """Peak RSS and wall time of ``render3d fit --method 3dgs --steps`` in a fresh process."""
    with tempfile.TemporaryDirectory() as run:
        command = [sys.executable, "-m", "render3d.apps.cli", "fit", str(scene), "--method", "3dgs", "--steps",
                   str(steps), "--no-eval", "--quiet", "--out", str(Path(run) / "run")]
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the load's
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"render3d fit failed with exit status {os.waitstatus_to_exitcode(status)}")
    return {"steps": steps, "rss_peak": usage.ru_maxrss * 1024, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path(tempfile.gettempdir()) / "render3d_memory_scene")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--jpeg", action="store_true", help="RGB JPEG images instead of RGBA PNG")
    parser.add_argument("--max-images", type=int, default=None, help="load only this many train views")
    parser.add_argument("--fit-steps", type=int, default=20, help="3dgs steps to fit (0: no fit)")
    parser.add_argument("--code", type=Path, default=None, help="render3d checkout whose load to measure (PYTHONPATH)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    results: dict = {"scene": str(args.scene), "cpu_count": os.cpu_count()}
    if not (args.scene / "transforms_train.json").is_file():
        results["write_seconds"] = write_scene(args.scene, args.images, args.width, args.height, args.jpeg)
        print(f"wrote {args.images} views of {args.width}x{args.height} to {args.scene} "
              f"in {results['write_seconds']:.0f} s")
    gib = 1024**3
    load = results["load"] = measure_load(args.scene, args.max_images, args.code)
    data_rss = (load["rss_peak"] - load["rss_before"]) / gib
    print(f"load: {load['images']} images {load['size'][0]}x{load['size'][1]} as {load['dtype']} in "
          f"{load['seconds']:.1f} s; tensors {load['data_bytes'] / gib:.2f} GiB; RSS {load['rss_before'] / gib:.2f} GiB "
          f"before, peak {load['rss_peak'] / gib:.2f} GiB, data {data_rss:.2f} GiB "
          f"({'within' if data_rss <= TARGET_DATA_GB else 'over'} the {TARGET_DATA_GB:.0f} GB target)")
    if args.fit_steps > 0:
        fit = results["fit"] = measure_fit(args.scene, args.fit_steps)
        print(f"fit: 3dgs {fit['steps']} steps in {fit['seconds']:.0f} s, peak RSS {fit['rss_peak'] / gib:.2f} GiB")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
