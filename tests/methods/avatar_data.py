"""A tiny avatar dataset for tests: the procedural body in three poses (two trained, one held out)
rendered by the engine's body renderer, written as a NeRF-synthetic folder with body.json."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from render3d.body import BodyScene, procedural_body
from render3d.camera_paths import orbit
from render3d.cameras import intrinsics_from_fov, opengl_to_opencv

SIZE = 32
CENTRE = (0.0, 0.95, 0.0)  # the procedural body's pelvis height


def frame_poses(body) -> torch.Tensor:
    """``[3, J, 3]``: the rest pose, elbows bent, a knee and a shoulder bent (held out)."""
    poses = torch.zeros(3, body.n_joints, 3)
    names = body.joint_names
    poses[1, names.index("left_elbow")] = torch.tensor([0.0, 0.0, 1.2])
    poses[1, names.index("right_elbow")] = torch.tensor([0.0, 0.0, -1.2])
    poses[2, names.index("left_knee")] = torch.tensor([1.0, 0.0, 0.0])
    poses[2, names.index("right_shoulder")] = torch.tensor([0.0, 0.0, 0.9])
    return poses


def views(count: int, elevation: float):
    K = intrinsics_from_fov(math.radians(45), SIZE, SIZE)
    return orbit(torch.tensor(CENTRE), 3.0, count, K, SIZE, SIZE, elevation_deg=elevation, up=(0.0, 1.0, 0.0))


def write_avatar_folder(root: Path, *, keypoints: bool = False) -> Path:
    """Train: frames 0 and 1, 6 views each; test: frame 2, 3 views (module doc). With
    ``keypoints``, body.json gives only the frame count and keypoints/ holds each image's true
    COCO-17 keypoints."""
    import imageio.v3 as iio

    body = procedural_body()
    poses = frame_poses(body)
    images = {}
    for split, frames, count, elevation in (("train", (0, 1), 6, 15.0), ("test", (2,), 3, 25.0)):
        (root / split).mkdir(parents=True, exist_ok=True)
        cameras = views(count, elevation)
        entries = []
        for frame in frames:
            out = BodyScene(body, pose=poses[frame:frame + 1], background=(0.0, 0.0, 0.0)).render(cameras)
            alpha = out["alpha"].clamp(0, 1)
            straight = out["rgb"] / alpha[..., None].clamp_min(1e-3)
            rgba = torch.cat([straight.clamp(0, 1), alpha[..., None]], -1)
            with torch.no_grad():
                points, _ = body.keypoints(body(pose=poses[frame:frame + 1]), "coco17")
            pixels = cameras.project(points[0])[0]
            for index in range(count):
                name = f"{split}/f{frame}_v{index}"
                if keypoints:
                    (root / "keypoints" / split).mkdir(parents=True, exist_ok=True)
                    rows = [[float(x), float(y), 1.0] for x, y in pixels[index]]
                    (root / "keypoints" / f"{name}.json").write_text(json.dumps({"keypoints": rows}))
                iio.imwrite(root / f"{name}.png", (rgba[index].numpy() * 255 + 0.5).astype(np.uint8))
                c2w = opengl_to_opencv(cameras.c2w[index])
                entries.append({"file_path": name, "transform_matrix": c2w.tolist()})
                images[f"{name}.png"] = frame
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": math.radians(45),
                                                                   "frames": entries}))
    frames = len(poses) if keypoints else [{"pose_axis_angle": pose.tolist(), "transl": [0.0, 0.0, 0.0]}
                                            for pose in poses]
    (root / "body.json").write_text(json.dumps({"model": "procedural", "frames": frames, "images": images}))
    return root
