"""Structure-from-motion benchmark: pose recovery of render3d.data.sfm.reconstruct on a Blender scene.

Renders the procedural scene of ``assets/blender/make_scene.py`` (``--views`` random views of
the upper hemisphere at ``--resolution`` pixels, JPEG on white) into a temporary folder, or
into ``--scene`` (kept, and reused by later runs that name it), runs :func:`render3d.data.sfm.reconstruct`, aligns the recovered
camera centres to the true ones with a similarity (Umeyama) and reports

- the fraction of images registered (target >= 90 %),
- the mean and max camera-centre error as a fraction of the scene radius (half the diagonal
  of the ground-truth mesh's bounding box; target <= 2 %),
- wall time of rendering and of SfM.

It prints a table and writes JSON (``--json``). Example::

    python benchmarks/sfm.py --views 60 --resolution 400 --scene /tmp/sfm_scene --json sfm.json

Each of ``--camera-models`` (default SIMPLE_RADIAL, the ``reconstruct`` default, and PINHOLE)
gets its own run on the same images.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

from render3d.benchmarks.blender import blender_environment
from render3d.data.sfm import reconstruct, similarity_alignment

REPO = Path(__file__).resolve().parents[1]
SCENE_SCRIPT = REPO / "assets" / "blender" / "make_scene.py"
TARGET_REGISTERED = 0.90
TARGET_CENTRE_ERROR = 0.02


def render_scene(out: Path, args: argparse.Namespace) -> float:
    """Render ``args.views`` train views as JPEG on white into ``out``; returns the wall time in seconds."""
    command = [
        "blender", "-b", "--factory-startup", "--python-exit-code", "1", "-P", str(SCENE_SCRIPT), "--",
        "--out", str(out), "--resolution", str(args.resolution), "--train", str(args.views), "--val", "0",
        "--test", "0", "--samples", str(args.samples), "--seed", str(args.seed), "--jpeg-on-white",
        "--camera-angle-x", str(args.camera_angle_x), "--distance", str(args.distance),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=blender_environment())
    return time.perf_counter() - start


def evaluate(scene: Path, model_dir: Path) -> dict:
    """Registration fraction, aligned camera-centre errors and focal-length error of a model."""
    import pycolmap

    meta = json.loads((scene / "transforms_train.json").read_text())
    frames = meta["frames"]
    true_centres = {Path(f["file_path"]).name + ".jpg": np.asarray(f["transform_matrix"])[:3, 3] for f in frames}
    model = pycolmap.Reconstruction(model_dir)
    images = [model.image(i) for i in model.reg_image_ids()]
    found = np.stack([image.projection_center() for image in images])
    true = np.stack([true_centres[image.name] for image in images])
    scale, rotation, translation = similarity_alignment(found, true)
    errors = np.linalg.norm(scale * found @ rotation.T + translation - true, axis=1)
    bounds = trimesh.load(scene / "mesh.ply", force="mesh").bounds
    radius = float(np.linalg.norm(bounds[1] - bounds[0]) / 2)
    camera_distance = float(np.linalg.norm(true - bounds.mean(axis=0), axis=1).mean())
    camera = model.camera(images[0].camera_id)
    true_focal = 0.5 * camera.width / np.tan(0.5 * meta["camera_angle_x"])
    return {
        "images": len(frames),
        "image_size": [camera.width, camera.height],
        "registered": len(images),
        "registered_fraction": len(images) / len(frames),
        "points3D": model.num_points3D(),
        "mean_reprojection_error_px": float(model.compute_mean_reprojection_error()),
        "scene_radius": radius,
        "camera_distance": camera_distance,
        "centre_error_mean": float(errors.mean() / radius),
        "centre_error_max": float(errors.max() / radius),
        "centre_error_max_over_camera_distance": float(errors.max() / camera_distance),
        "focal_error": float(camera.params[0] / true_focal - 1.0),
        "camera": {"model": camera.model.name, "params": [float(p) for p in camera.params]},
    }


def print_table(results: list[dict]) -> None:
    rows = [
        ("images registered", lambda r: f"{r['registered']}/{r['images']} ({r['registered_fraction']:.1%})", f">= {TARGET_REGISTERED:.0%}"),
        ("centre error mean / radius", lambda r: f"{r['centre_error_mean']:.2%}", f"<= {TARGET_CENTRE_ERROR:.0%}"),
        ("centre error max / radius", lambda r: f"{r['centre_error_max']:.2%}", f"<= {TARGET_CENTRE_ERROR:.0%}"),
        ("centre error max / cam distance", lambda r: f"{r['centre_error_max_over_camera_distance']:.2%}", ""),
        ("focal length error", lambda r: f"{r['focal_error']:+.2%}", ""),
        ("3D points", lambda r: str(r["points3D"]), ""),
        ("mean reprojection error", lambda r: f"{r['mean_reprojection_error_px']:.3f} px", ""),
        ("sfm time", lambda r: f"{r['sfm_s']:.1f} s", ""),
        ("passed", lambda r: "yes" if r["passed"] else "no", ""),
    ]
    name_width = max(len(name) for name, _, _ in rows)
    header = "".join(f"{r['camera_model']:>22}" for r in results)
    print(f"  {'':<{name_width}}{header}   target")
    for name, cell, target in rows:
        print(f"  {name:<{name_width}}" + "".join(f"{cell(r):>22}" for r in results) + f"   {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, help="folder to render the scene into, reused if already rendered")
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--resolution", type=int, default=400)
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel")
    parser.add_argument("--camera-angle-x", type=float, default=1.1, help="horizontal field of view in radians")
    parser.add_argument("--distance", type=float, default=2.6, help="camera distance from the scene centre")
    parser.add_argument("--seed", type=int, default=1, help="seed of the camera placement and of SfM")
    parser.add_argument("--camera-models", nargs="+", default=["SIMPLE_RADIAL", "PINHOLE"])
    parser.add_argument("--json", type=Path, default=Path("bench_sfm.json"))
    args = parser.parse_args()

    import pycolmap

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        scene = args.scene or Path(tmp) / "scene"
        rendered = (scene / "transforms_train.json").is_file()
        render_s = 0.0 if rendered else render_scene(scene, args)
        for camera_model in args.camera_models:
            start = time.perf_counter()
            model_dir = reconstruct(scene / "train", Path(tmp) / camera_model, camera_model=camera_model, seed=args.seed)
            sfm_s = time.perf_counter() - start
            result = evaluate(scene, model_dir)
            result.update(
                camera_model=camera_model, sfm_s=sfm_s,
                passed=result["registered_fraction"] >= TARGET_REGISTERED and result["centre_error_max"] <= TARGET_CENTRE_ERROR,
            )
            results.append(result)

    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "pycolmap": pycolmap.__version__,
        "views": results[0]["images"],
        "render_s": render_s,
        "results": results,
    }
    width, height = results[0]["image_size"]
    print(f"\nSfM benchmark: {summary['views']} views of {width}x{height}, {summary['machine']}, pycolmap {summary['pycolmap']}, "
          f"render {render_s:.0f} s (0 = reused)")
    print_table(results)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.json}")
    sys.exit(0 if all(r["passed"] for r in results) else 1)


if __name__ == "__main__":
    main()
