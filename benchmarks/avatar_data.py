"""The posed-body benchmark data: a clothed anny body in 8 poses, 20 views each, rendered by Blender.

    python -m render3d.benchmarks.avatar_data --out DIR [--views 20] [--size 256] [--seed 0]

What is made (a NeRF-synthetic folder plus the body, the layout ``render3d fit --method avatar`` reads):

- ``train/`` (poses 0-5) and ``test/`` (poses 6-7, held out entirely: never seen in training;
  ``--test-poses b`` another pair, made for a held-out check after the defaults were chosen)
  RGBA PNGs, ``--size`` square, the alpha channel the person's mask; ``transforms_train.json``
  and ``transforms_test.json`` (OpenGL camera-to-world matrices, ``camera_angle_x``);
- ``body.json``: the model (anny), its shape (``--betas``, default the mean phenotype) and the
  true pose of every frame (``frames``: ``pose_axis_angle [J, 3]`` in each joint's rest frame,
  ``transl``), and the frame of every image (``images``: ``{"train/p0_v00.png": 0, ...}``);
- ``keypoints/<split>/<image>.json``: simulated COCO-17 detections of each image (the true
  keypoints projected, Gaussian noise of ``--keypoint-noise`` pixels, confidence 0.9;
  occluded ones too, as a detector guesses them), and ``body_keypoints.json``: ``body.json``
  without the body parameters (``frames`` is the count), for fitting from keypoints
  (copy it over ``body.json`` in a copy of the folder; ``benchmarks/avatar.py`` does).

The body: anny's mesh coloured per vertex by the bone that moves it most: skin (head, neck,
forearms, hands), a shirt with white stripes 8 cm apart (torso, shoulders, upper arms; the
stripes follow the rest pose, so they move with the cloth), dark trousers, red shoes and brown
hair. Each posed mesh is shaded once, ``albedo * (0.55 + 0.45 max(0, n . l))`` for a fixed
light ``l`` in the world, and Blender emits those colours (``assets/blender/render_meshes.py``):
no Monte Carlo noise, but the shading changes with the pose as it would under a real light,
which an avatar with one canonical colour cannot reproduce exactly.

Poses are written as rotations about the world's axes (y up, the body faces +z, its left is
+x) at named joints and converted to anny's joint frames (``L = R_k^T R_world R_k`` with
``R_k`` the joint's rest orientation): readable, and the held-out poses are new combinations of
the same joints. Cameras: per pose, ``--views`` azimuths evenly spread from a random start,
elevations uniform in [-10, 35] degrees, 3.2 m from the body's centre, 36 degrees across.

Needs the anny extra and Blender (``apt-get install blender``); about 3 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from render3d.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
RENDER_SCRIPT = REPO / "assets" / "blender" / "render_meshes.py"
FIELD_OF_VIEW = math.radians(36.0)
CAMERA_DISTANCE = 3.2
LIGHT = (0.35, 0.6, 0.72)
AMBIENT = 0.55
X, Y, Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)

# Each pose: joint -> (world axis, degrees). Arms point along +-x in anny's rest pose, legs down -y.
TRAIN_POSES = (
    {"upperarm01.L": (Z, -45), "upperarm01.R": (Z, 45)},
    {"upperarm01.L": (Z, 55), "upperarm01.R": (Z, -55), "lowerarm01.L": (Z, 30), "lowerarm01.R": (Z, -30)},
    {"upperleg01.L": (X, -30), "upperleg01.R": (X, 20), "lowerleg01.L": (X, 40), "upperarm01.L": (Z, -70),
     "upperarm01.R": (Z, 70), "lowerarm01.R": (Y, 40)},
    {"upperleg01.L": (X, -55), "upperleg01.R": (X, -55), "lowerleg01.L": (X, 70), "lowerleg01.R": (X, 70),
     "upperarm01.L": (Y, -80), "upperarm01.R": (Y, 80), "spine03": (X, -15)},
    {"upperarm01.R": (Z, -120), "lowerarm01.R": (Y, -60), "upperarm01.L": (Z, -60), "head": (Y, 30),
     "upperleg01.R": (Z, -15)},
    {"spine03": (Y, 30), "spine04": (Z, 10), "upperleg01.R": (X, -70), "lowerleg01.R": (X, 90),
     "upperarm01.L": (Z, -30), "upperarm01.R": (X, -40), "lowerarm01.L": (Y, -50)},
)
TEST_POSES = (
    {"upperarm01.L": (Y, -75), "upperarm01.R": (Z, 65), "upperleg01.L": (X, -25), "head": (X, 15),
     "lowerarm01.L": (Z, 20)},
    {"upperleg01.R": (X, -45), "lowerleg01.R": (X, 35), "upperarm01.L": (Z, 35), "upperarm01.R": (Z, -35),
     "spine03": (Y, -20), "upperleg01.L": (Z, 10)},
)
# A second pair, made after the defaults were chosen (``--test-poses b``): the held-out data's.
TEST_POSES_B = (
    {"upperarm01.L": (Z, 80), "lowerarm01.L": (Y, -70), "upperarm01.R": (Y, 60), "spine04": (X, -20),
     "upperleg01.L": (X, -40), "lowerleg01.L": (X, 60)},
    {"spine03": (Y, -35), "upperarm01.R": (Z, -95), "upperarm01.L": (Z, -20), "upperleg01.R": (Z, -25),
     "upperleg01.L": (Z, 15), "head": (Y, -40)},
)

# A third pair, made after the silhouette term and the test-time rate were chosen (``--test-poses c``):
# a lunge with an arm forward and a bent elbow, a side bend with an arm raised overhead.
TEST_POSES_C = (
    {"upperleg01.L": (X, -70), "lowerleg01.L": (X, 60), "upperleg01.R": (X, 25), "lowerleg01.R": (X, 45),
     "upperarm01.L": (Y, -50), "upperarm01.R": (Z, 30), "lowerarm01.R": (Y, 70), "spine03": (X, -10)},
    {"spine03": (Z, 15), "spine04": (Y, 25), "upperarm01.L": (Z, 100), "lowerarm01.L": (Z, 30),
     "upperarm01.R": (Z, -10), "head": (Z, -20), "upperleg01.R": (Z, 20)},
)


def world_rotation(axis: tuple[float, float, float], degrees: float) -> torch.Tensor:
    """``[3, 3]`` rotation by ``degrees`` about the unit ``axis`` (right-handed)."""
    from render3d.ops.rotations import axis_angle_to_matrix

    return axis_angle_to_matrix(torch.tensor(axis, dtype=torch.float64) * math.radians(degrees)).to(torch.float32)


def pose_parameters(model, spec: dict) -> torch.Tensor:
    """``[J, 3]`` axis-angle in each joint's rest frame for a pose written in world axes (module doc)."""
    from render3d.ops.rotations import matrix_to_axis_angle

    rotations = torch.eye(3).repeat(model.n_joints, 1, 1)
    orientations = model.rest_orientations.float()
    for joint, (axis, degrees) in spec.items():
        k = model.joint_names.index(joint)
        rotations[k] = orientations[k].T @ world_rotation(axis, degrees) @ orientations[k]
    return matrix_to_axis_angle(rotations)


def vertex_albedo(model) -> np.ndarray:
    """``[V, 3]`` clothing colours in [0, 1] by each vertex's dominant bone (module doc)."""
    dominant = model.dense_weights.argmax(1).numpy()
    names = np.array(model.joint_names)[dominant]
    rest = model.template.numpy()
    head_joint = model.rest_joints[model.joint_names.index("head")].numpy()

    def matches(*prefixes):
        return np.array([any(name.startswith(p) for p in prefixes) for name in names])

    albedo = np.tile(np.array([0.86, 0.66, 0.54]), (len(rest), 1))  # skin
    shirt = matches("spine", "clavicle", "shoulder", "upperarm")
    stripes = np.sin(2 * math.pi * rest[:, 1] / 0.08) > 0.55
    albedo[shirt] = (0.18, 0.32, 0.68)
    albedo[shirt & stripes] = (0.92, 0.92, 0.88)
    albedo[matches("pelvis", "upperleg", "lowerleg", "root")] = (0.22, 0.22, 0.27)
    albedo[matches("foot", "toe")] = (0.62, 0.14, 0.10)
    head = matches("head", "neck03")
    above = rest[:, 1] > head_joint[1] + 0.09
    behind = (rest[:, 2] < head_joint[2] - 0.02) & (rest[:, 1] > head_joint[1] - 0.01)
    albedo[head & (above | behind)] = (0.28, 0.16, 0.08)
    return albedo


def shaded_colours(vertices: np.ndarray, faces: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """``[V, 3]`` uint8 colours of a posed mesh under the fixed light (module doc)."""
    import trimesh

    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    light = np.asarray(LIGHT) / np.linalg.norm(LIGHT)
    shade = AMBIENT + (1 - AMBIENT) * np.clip(normals @ light, 0, None)
    return np.clip(np.round(255 * albedo * shade[:, None]), 0, 255).astype(np.uint8)


def orbit_cameras(views: int, generator: np.random.Generator) -> list[np.ndarray]:
    """``views`` OpenGL camera-to-world ``[4, 4]`` matrices looking at the origin (module doc)."""
    start = generator.uniform(0, 2 * math.pi)
    cameras = []
    for index in range(views):
        azimuth = start + 2 * math.pi * index / views
        elevation = math.radians(generator.uniform(-10, 35))
        eye = CAMERA_DISTANCE * np.array([math.sin(azimuth) * math.cos(elevation), math.sin(elevation),
                                          math.cos(azimuth) * math.cos(elevation)])
        back = eye / np.linalg.norm(eye)  # OpenGL cameras look down -z: z points back at the eye
        right = np.cross(np.array(Y), back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
        cameras.append(c2w)
    return cameras


def keypoint_detections(points: np.ndarray, c2w_gl: np.ndarray, size: int, noise: float,
                        generator: np.random.Generator) -> list[list[float]]:
    """``[[x, y, confidence], ...]`` pixels of world ``points [K, 3]`` in the OpenGL camera
    ``c2w_gl`` of the square renders, with Gaussian noise of ``noise`` pixels."""
    w2c = np.linalg.inv(c2w_gl)
    camera = points @ w2c[:3, :3].T + w2c[:3, 3]
    focal = 0.5 * size / math.tan(0.5 * FIELD_OF_VIEW)
    x = focal * camera[:, 0] / -camera[:, 2] + size / 2  # OpenGL: looking down -z, y up
    y = -focal * camera[:, 1] / -camera[:, 2] + size / 2
    pixels = np.stack([x, y], 1) + generator.normal(0.0, noise, (len(points), 2))
    return [[float(u), float(v), 0.9] for u, v in pixels]


def make_avatar_data(out: Path, views: int = 20, size: int = 256, seed: int = 0, samples: int = 16,
                     betas: list[float] | None = None, keypoint_noise: float = 1.5, test_poses: str = "a") -> float:
    """Write the benchmark data into ``out`` (module doc); the seconds it took.

    Raises:
        ConfigError: Blender or the anny extra is missing.
        DataError: Blender failed.
    """
    import trimesh

    from render3d.benchmarks.blender import blender_environment
    from render3d.body import from_anny
    from render3d.io.atomic import atomic_write_json

    blender = shutil.which("blender")
    if blender is None:
        raise ConfigError("the avatar data are rendered with Blender: apt-get install blender")
    start = time.perf_counter()
    model = from_anny()
    generator = np.random.default_rng(seed)
    noise_generator = np.random.default_rng(seed + 1000)  # its own, so the cameras do not depend on the noise
    albedo = vertex_albedo(model)
    faces = model.faces.numpy()
    shape = torch.zeros(1, model.n_betas) if betas is None else torch.tensor([betas], dtype=torch.float32)
    with torch.no_grad():
        rest = model(shape).vertices[0]
    transl = -0.5 * (rest.min(0).values + rest.max(0).values)  # the rest body centred on the origin
    held_out = {"a": TEST_POSES, "b": TEST_POSES_B, "c": TEST_POSES_C}[test_poses]
    poses = [pose_parameters(model, spec) for spec in TRAIN_POSES + held_out]
    out.mkdir(parents=True, exist_ok=True)
    job = {"width": size, "height": size, "camera_angle_x": FIELD_OF_VIEW, "samples": samples, "meshes": []}
    transforms = {"train": [], "test": []}
    images, detections = {}, {}
    with tempfile.TemporaryDirectory(prefix="render3d-avatar-") as scratch:
        for frame, pose in enumerate(poses):
            split = "train" if frame < len(TRAIN_POSES) else "test"
            with torch.no_grad():
                output = model(shape, pose[None], transl[None])
                keypoints = model.keypoints(output, "coco17")[0][0].numpy()
            vertices = output.vertices[0].numpy()
            ply = Path(scratch) / f"pose_{frame}.ply"
            trimesh.Trimesh(vertices, faces, vertex_colors=shaded_colours(vertices, faces, albedo),
                            process=False).export(ply)
            entry = {"ply": str(ply), "views": []}
            for view, c2w in enumerate(orbit_cameras(views, generator)):
                name = f"{split}/p{frame}_v{view:02d}"
                entry["views"].append({"c2w": c2w.tolist(), "out": str(out / f"{name}.png")})
                transforms[split].append({"file_path": name, "transform_matrix": c2w.tolist(), "body_frame": frame})
                images[f"{name}.png"] = frame
                detections[f"{name}.json"] = keypoint_detections(keypoints, c2w, size, keypoint_noise, noise_generator)
            job["meshes"].append(entry)
        job_path = Path(scratch) / "job.json"
        job_path.write_text(json.dumps(job))
        command = [blender, "-b", "--factory-startup", "--python-exit-code", "1", "-P", str(RENDER_SCRIPT), "--",
                   str(job_path)]
        if subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=blender_environment()).returncode != 0:
            raise DataError(f"Blender could not render the avatar data into {out}; to see why, run: {' '.join(command)}")
    for split, frames in transforms.items():
        atomic_write_json(out / f"transforms_{split}.json", {"camera_angle_x": FIELD_OF_VIEW, "frames": frames})
    for name, points in detections.items():
        (out / "keypoints" / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "keypoints" / name, {"keypoints": points})
    atomic_write_json(out / "body.json", {
        "model": "anny",
        "betas": shape[0].tolist(),
        "frames": [{"pose_axis_angle": pose.tolist(), "transl": transl.tolist()} for pose in poses],
        "images": images,
    })
    atomic_write_json(out / "body_keypoints.json", {"model": "anny", "frames": len(poses), "images": images})
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0, help="seed of the cameras and the keypoint noise")
    parser.add_argument("--betas", type=float, nargs="+", metavar="B",
                        help="anny phenotype offsets (gender age muscle weight height proportions; default zeros)")
    parser.add_argument("--keypoint-noise", type=float, default=1.5, help="pixels (default 1.5)")
    parser.add_argument("--test-poses", choices=("a", "b", "c"), default="a", help="which pair of held-out poses (default a)")
    args = parser.parse_args(argv)
    seconds = make_avatar_data(args.out, args.views, args.size, args.seed, betas=args.betas,
                               keypoint_noise=args.keypoint_noise, test_poses=args.test_poses)
    print(f"wrote {args.out} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
