"""Body poses as values and as files: :class:`BodyPose`, pose files and motion files.

A pose file (JSON) is either joint rotations by name, ``{"left_elbow": [ax, ay, az], ...,
"transl": [x, y, z]}`` (axis-angle in radians in each joint's rest frame; joints not named
stay at rest), or a whole pose, ``{"pose_axis_angle": [[ax, ay, az], ...] (one row per
joint), "transl": [x, y, z]}`` — the layout of ``render3d fit-body``'s ``params.json`` and of
the frames of an avatar's ``body.json``.

A motion file (JSON) is a sequence of such poses: ``{"fps": 30, "frames": [POSE, POSE, ...]}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from render3d.body.io import read_json_object
from render3d.errors import DataError


@dataclass(frozen=True)
class BodyPose:
    """One pose of a body: ``pose [J, 3]`` axis-angle per joint (each in its rest frame; joint
    0's is the global orientation) and ``transl [3]``, float32."""

    pose: torch.Tensor
    transl: torch.Tensor

    @staticmethod
    def rest(n_joints: int) -> "BodyPose":
        return BodyPose(torch.zeros(n_joints, 3), torch.zeros(3))


def pose_from_dict(data: dict, model, where: str) -> BodyPose:
    """The :class:`BodyPose` of a pose object (module doc) for ``model``; DataError naming
    ``where`` (the file, and the frame in a motion) for anything else."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: a pose must be a JSON object")
    pose = torch.zeros(model.n_joints, 3)
    transl = torch.zeros(3)
    rotations = dict(data)
    if "pose_axis_angle" in rotations:
        try:
            values = torch.tensor(rotations.pop("pose_axis_angle"), dtype=torch.float32)
        except (TypeError, ValueError):
            raise DataError(f"{where}: pose_axis_angle must be a list of [ax, ay, az] rows") from None
        if values.shape != (model.n_joints, 3):
            raise DataError(f"{where}: pose_axis_angle has shape {list(values.shape)}, the {model.name} model has "
                            f"{model.n_joints} joints")
        if not torch.isfinite(values).all():
            raise DataError(f"{where}: pose_axis_angle has NaN or infinite entries")
        pose = values
        rotations = {key: value for key, value in rotations.items() if key == "transl"}
    for name, value in rotations.items():
        try:
            vector = torch.tensor(value, dtype=torch.float32)
        except (TypeError, ValueError):
            raise DataError(f"{where}: {name} must be three numbers") from None
        if vector.shape != (3,) or not torch.isfinite(vector).all():
            raise DataError(f"{where}: {name} must be three finite numbers")
        if name == "transl":
            transl = vector
        elif name in model.joint_names:
            pose[model.joint_names.index(name)] = vector
        else:
            raise DataError(f"{where}: unknown joint {name!r} (the {model.name} model's joints start "
                            f"{', '.join(model.joint_names[:6])}, ...)")
    return BodyPose(pose, transl)


def read_pose(path: str | Path, model) -> BodyPose:
    """The pose in a pose file (module doc)."""
    return pose_from_dict(read_json_object(path, "pose"), model, str(path))


def read_motion(path: str | Path, model) -> tuple[list[BodyPose], float]:
    """``(poses, fps)`` of a motion file (module doc); DataError for a bad file."""
    data = read_json_object(path, "motion")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{path}: a motion file needs a non-empty 'frames' list of poses")
    fps = data.get("fps", 30)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 240:
        raise DataError(f"{path}: fps must be a number in (0, 240], got {fps!r}")
    return [pose_from_dict(frame, model, f"{path} frame {index}") for index, frame in enumerate(frames)], float(fps)
