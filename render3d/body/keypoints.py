"""2D keypoint conventions (COCO-17, OpenPose BODY_25) and where their keypoints sit on each
body model.

COCO-17 order: nose, left/right eye, left/right ear, left/right shoulder, elbow, wrist, hip,
knee, ankle. BODY_25 order: nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/
wrist, mid-hip, right hip/knee/ankle, left hip/knee/ankle, right/left eye, right/left ear,
left big toe/small toe/heel, right big toe/small toe/heel. "Left" is the person's left.

On the SMPL family, keypoints that are joints use the joint (SMPL's first 22 joints are
shared by SMPL, SMPL-H and SMPL-X); face and foot keypoints use the surface vertices that
SMPLify-X uses for them (one set of vertex ids for the 6890-vertex SMPL/SMPL-H mesh, one for
the 10475-vertex SMPL-X mesh). BODY_25's neck and mid-hip are SMPL's neck and pelvis joints.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class KeypointMap:
    """Where each keypoint of a 2D convention sits on a model: ``joints[k] >= 0`` takes
    joint ``joints[k]``; otherwise ``vertices[k] >= 0`` takes that vertex; otherwise a
    non-zero row ``regressor[k]`` (``[K, V]``, rows summing to one) blends vertices; none of
    these: the model has no such keypoint (it is left out of fitting)."""

    names: tuple[str, ...]
    joints: tuple[int, ...]
    vertices: tuple[int, ...]
    regressor: torch.Tensor | None = None

    def present(self) -> torch.Tensor:
        """``[K]`` bool: which keypoints the model has."""
        present = (torch.tensor(self.joints) >= 0) | (torch.tensor(self.vertices) >= 0)
        if self.regressor is not None:
            present |= self.regressor.abs().sum(1).cpu() > 0
        return present


COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)
BODY25 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye",
    "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
    "right_small_toe", "right_heel",
)
CONVENTIONS = {"coco17": COCO17, "body25": BODY25}

# Torso keypoints: the first fitting stage solves orientation and translation on these alone.
TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "neck", "mid_hip")

SMPL_JOINTS = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
_SMPL_KEYPOINT_JOINTS = {
    "neck": "neck", "mid_hip": "pelvis", "left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder",
    "left_elbow": "left_elbow", "right_elbow": "right_elbow", "left_wrist": "left_wrist", "right_wrist": "right_wrist",
    "left_hip": "left_hip", "right_hip": "right_hip", "left_knee": "left_knee", "right_knee": "right_knee",
    "left_ankle": "left_ankle", "right_ankle": "right_ankle",
}
# Surface keypoints (SMPLify-X's vertex ids) for the SMPL/SMPL-H (6890) and SMPL-X (10475) meshes.
SMPL_VERTEX_KEYPOINTS = {
    6890: {"nose": 332, "right_eye": 6260, "left_eye": 2800, "right_ear": 4071, "left_ear": 583,
           "left_big_toe": 3216, "left_small_toe": 3226, "left_heel": 3387, "right_big_toe": 6617,
           "right_small_toe": 6624, "right_heel": 6787},
    10475: {"nose": 9120, "right_eye": 9929, "left_eye": 9448, "right_ear": 616, "left_ear": 6,
            "left_big_toe": 5770, "left_small_toe": 5780, "left_heel": 8846, "right_big_toe": 8463,
            "right_small_toe": 8474, "right_heel": 8635},
}


def keypoint_map(names: tuple[str, ...], joints: dict[str, int], vertices: dict[str, int]) -> KeypointMap:
    """A :class:`KeypointMap` for the keypoint ``names`` from name -> joint and name -> vertex
    dictionaries (joints win; a name in neither is missing)."""
    return KeypointMap(
        names=names,
        joints=tuple(joints.get(name, -1) for name in names),
        vertices=tuple(-1 if name in joints else vertices.get(name, -1) for name in names),
    )


def maps_for(joints: dict[str, int], vertices: dict[str, int]) -> dict[str, KeypointMap]:
    """Both conventions' maps from name -> joint and name -> vertex dictionaries."""
    return {name: keypoint_map(order, joints, vertices) for name, order in CONVENTIONS.items()}


def smpl_keypoint_maps(n_vertices: int) -> dict[str, KeypointMap]:
    """COCO-17 and BODY_25 maps for an SMPL-family model (joints only when the mesh is
    neither 6890 nor 10475 vertices)."""
    joints = {keypoint: SMPL_JOINTS.index(joint) for keypoint, joint in _SMPL_KEYPOINT_JOINTS.items()}
    return maps_for(joints, SMPL_VERTEX_KEYPOINTS.get(n_vertices, {}))


HINGES = (("left_elbow", "left_wrist", "elbow"), ("right_elbow", "right_wrist", "elbow"),
          ("left_knee", "left_ankle", "knee"), ("right_knee", "right_ankle", "knee"))


def hinge_limits(joint_ids: dict[str, int], rest_joints, rest_orientations=None) -> tuple:
    """Bend limits for elbows and knees from the rest skeleton (y up, facing +z).

    A positive rotation about axis ``a`` moves a bone of direction ``d`` towards ``a x d``.
    An elbow may bend its forearm forward, so the forbidden axis is ``z x d`` (it would move
    the forearm backwards); a knee may bend its shin backwards, so the forbidden axis is
    ``d x z``. Axes are expressed in each joint's rest frame (``R_k^T a``).

    Args:
        joint_ids: name -> joint index for ``left_elbow``, ``left_wrist``, ``left_knee``,
            ``left_ankle`` and the right ones (missing hinges are skipped).
        rest_joints: ``[J, 3]`` rest positions.
        rest_orientations: ``[J, 3, 3]`` rest frame axes (identity when ``None``).
    """
    import numpy as np

    joints = np.asarray(rest_joints, dtype=np.float64)
    forward = np.array([0.0, 0.0, 1.0])
    limits = []
    for joint, child, kind in HINGES:
        if joint not in joint_ids or child not in joint_ids:
            continue
        direction = joints[joint_ids[child]] - joints[joint_ids[joint]]
        direction = direction / np.linalg.norm(direction)
        axis = np.cross(forward, direction) if kind == "elbow" else np.cross(direction, forward)
        axis = axis / np.linalg.norm(axis)
        if rest_orientations is not None:
            axis = np.asarray(rest_orientations, dtype=np.float64)[joint_ids[joint]].T @ axis
        limits.append((joint_ids[joint], tuple(axis.tolist())))
    return tuple(limits)
