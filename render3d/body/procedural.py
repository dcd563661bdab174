"""A tiny procedural body made in code: 16 joints, one tube per bone and a sphere for the head
(1,530 vertices), for tests, demos and a first look without any model file.

Axes as SMPL: y up, the body faces +z, the person's left is +x; metres, T-pose, feet on
``y = 0``. Each bone's tube is skinned to the bone's joint, blending linearly into the
neighbouring joint over the last and first 20 % of its length (half and half at the joint
itself), so elbows and knees bend smoothly. Rest frames are the world axes, as in SMPL.
"""
from __future__ import annotations

import math

import numpy as np

from render3d.body.keypoints import hinge_limits, maps_for
from render3d.body.model import BodyModel

JOINTS = (
    ("pelvis", -1, (0.0, 0.95, 0.0)),
    ("chest", 0, (0.0, 1.25, 0.0)),
    ("neck", 1, (0.0, 1.50, 0.0)),
    ("head", 2, (0.0, 1.62, 0.0)),
    ("left_shoulder", 1, (0.18, 1.45, 0.0)),
    ("left_elbow", 4, (0.45, 1.45, 0.0)),
    ("left_wrist", 5, (0.70, 1.45, 0.0)),
    ("right_shoulder", 1, (-0.18, 1.45, 0.0)),
    ("right_elbow", 7, (-0.45, 1.45, 0.0)),
    ("right_wrist", 8, (-0.70, 1.45, 0.0)),
    ("left_hip", 0, (0.10, 0.90, 0.0)),
    ("left_knee", 10, (0.10, 0.50, 0.0)),
    ("left_ankle", 11, (0.10, 0.08, 0.0)),
    ("right_hip", 0, (-0.10, 0.90, 0.0)),
    ("right_knee", 13, (-0.10, 0.50, 0.0)),
    ("right_ankle", 14, (-0.10, 0.08, 0.0)),
)
JOINT_NAMES = tuple(name for name, _, _ in JOINTS)
PARENTS = tuple(parent for _, parent, _ in JOINTS)
REST_JOINTS = np.array([position for _, _, position in JOINTS], dtype=np.float64)

# Bones: (owning joint, start, end, radius, joint blended in at the end or -1).
_HAND = {6: (0.80, 1.45, 0.0), 9: (-0.80, 1.45, 0.0)}
_TOE = {12: (0.10, 0.03, 0.16), 15: (-0.10, 0.03, 0.16)}
HEAD_CENTRE = (0.0, 1.70, 0.0)
HEAD_RADIUS = 0.11
RINGS, AROUND = 7, 10
BLEND = 0.2


def _bones() -> list[tuple[int, np.ndarray, np.ndarray, float, int]]:
    j = {name: index for index, name in enumerate(JOINT_NAMES)}
    p = REST_JOINTS
    bones = [
        (j["pelvis"], p[j["pelvis"]], p[j["chest"]], 0.13, j["chest"]),
        (j["chest"], p[j["chest"]], p[j["neck"]], 0.14, j["neck"]),
        (j["neck"], p[j["neck"]], p[j["head"]], 0.05, j["head"]),
    ]
    for side in ("left", "right"):
        shoulder, elbow, wrist = j[f"{side}_shoulder"], j[f"{side}_elbow"], j[f"{side}_wrist"]
        hip, knee, ankle = j[f"{side}_hip"], j[f"{side}_knee"], j[f"{side}_ankle"]
        bones += [
            (j["chest"], p[j["chest"]] + (0, 0.2, 0), p[shoulder], 0.05, shoulder),
            (shoulder, p[shoulder], p[elbow], 0.05, elbow),
            (elbow, p[elbow], p[wrist], 0.04, wrist),
            (wrist, p[wrist], np.array(_HAND[wrist]), 0.035, -1),
            (j["pelvis"], p[j["pelvis"]], p[hip], 0.09, hip),
            (hip, p[hip], p[knee], 0.07, knee),
            (knee, p[knee], p[ankle], 0.05, ankle),
            (ankle, p[ankle], np.array(_TOE[ankle]), 0.04, -1),
        ]
    return bones


def _tube(start: np.ndarray, end: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed tube from ``start`` to ``end``: vertices ``[RINGS*AROUND + 2, 3]``, faces and
    each vertex's position ``t`` in [0, 1] along the bone (caps bulge out by half a radius)."""
    axis = end - start
    length = float(np.linalg.norm(axis))
    direction = axis / length
    helper = np.array([0.0, 0.0, 1.0]) if abs(direction[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(direction, helper)
    u /= np.linalg.norm(u)
    w = np.cross(direction, u)
    t = np.linspace(0.0, 1.0, RINGS)
    angles = np.linspace(0.0, 2 * math.pi, AROUND, endpoint=False)
    ring = radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * w)  # [AROUND, 3]
    body = start + t[:, None, None] * axis + ring[None]  # [RINGS, AROUND, 3]
    caps = np.stack([start - 0.5 * radius * direction, end + 0.5 * radius * direction])
    vertices = np.concatenate([body.reshape(-1, 3), caps])
    faces = []
    for r in range(RINGS - 1):
        for a in range(AROUND):
            b = (a + 1) % AROUND
            i0, i1, j0, j1 = r * AROUND + a, r * AROUND + b, (r + 1) * AROUND + a, (r + 1) * AROUND + b
            faces += [(i0, i1, j1), (i0, j1, j0)]
    bottom, top = RINGS * AROUND, RINGS * AROUND + 1
    last = (RINGS - 1) * AROUND
    for a in range(AROUND):
        b = (a + 1) % AROUND
        faces += [(bottom, b, a), (top, last + a, last + b)]
    along = np.concatenate([np.repeat(t, AROUND), [0.0, 1.0]])
    return vertices, np.array(faces, dtype=np.int64), along


def _bone_weights(owner: int, end_joint: int, along: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [n, 2], values [n, 2])``: the owner, blended into its parent near the start
    and into ``end_joint`` near the end (half and half at the joints)."""
    parent = PARENTS[owner]
    indices = np.zeros((along.size, 2), dtype=np.int64)
    values = np.zeros((along.size, 2), dtype=np.float64)
    indices[:, 0] = owner
    to_end = np.clip((along - (1 - BLEND)) / (2 * BLEND), 0.0, 0.5) if end_joint >= 0 else np.zeros_like(along)
    to_parent = np.clip((BLEND - along) / (2 * BLEND), 0.0, 0.5) if parent >= 0 else np.zeros_like(along)
    other = np.where(to_end > 0, end_joint, max(parent, 0))
    indices[:, 1] = other
    values[:, 1] = np.maximum(to_end, to_parent)
    values[:, 0] = 1 - values[:, 1]
    return indices, values


def _head() -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=HEAD_RADIUS)
    return np.asarray(sphere.vertices) + HEAD_CENTRE, np.asarray(sphere.faces, dtype=np.int64)


def _nearest(vertices: np.ndarray, point) -> int:
    return int(np.argmin(np.linalg.norm(vertices - np.asarray(point), axis=1)))


def procedural_body() -> BodyModel:
    """The procedural body as a :class:`BodyModel` (no shape directions or pose correctives;
    sparse weights with two joints per vertex; COCO-17 and BODY_25 maps)."""
    vertex_parts, face_parts, index_parts, value_parts = [], [], [], []
    count = 0
    for owner, start, end, radius, end_joint in _bones():
        vertices, faces, along = _tube(np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64), radius)
        indices, values = _bone_weights(owner, end_joint, along)
        vertex_parts.append(vertices)
        face_parts.append(faces + count)
        index_parts.append(indices)
        value_parts.append(values)
        count += len(vertices)
    head_vertices, head_faces = _head()
    head = JOINT_NAMES.index("head")
    vertex_parts.append(head_vertices)
    face_parts.append(head_faces + count)
    index_parts.append(np.full((len(head_vertices), 2), head, dtype=np.int64))
    value_parts.append(np.tile([1.0, 0.0], (len(head_vertices), 1)))
    vertices = np.concatenate(vertex_parts)
    centre, r = np.asarray(HEAD_CENTRE), HEAD_RADIUS
    surface = {
        "nose": centre + (0, 0, r), "left_eye": centre + r * np.array([0.35, 0.3, 0.89]),
        "right_eye": centre + r * np.array([-0.35, 0.3, 0.89]), "left_ear": centre + (r, 0, 0),
        "right_ear": centre - (r, 0, 0),
    }
    for side, sign in (("left", 1.0), ("right", -1.0)):
        toe = np.array(_TOE[JOINT_NAMES.index(f"{side}_ankle")])
        surface[f"{side}_big_toe"] = toe + (-0.03 * sign, 0, 0.02)
        surface[f"{side}_small_toe"] = toe + (0.03 * sign, 0, 0.02)
        surface[f"{side}_heel"] = REST_JOINTS[JOINT_NAMES.index(f"{side}_ankle")] + (0, -0.03, -0.06)
    surface_ids = {name: _nearest(vertices, point) for name, point in surface.items()}
    joint_ids = {name: JOINT_NAMES.index(name) for name in JOINT_NAMES if "_" in name and "chest" not in name}
    joint_ids.update({"neck": JOINT_NAMES.index("neck"), "mid_hip": JOINT_NAMES.index("pelvis")})
    return BodyModel(
        vertices, np.concatenate(face_parts), PARENTS, (np.concatenate(index_parts), np.concatenate(value_parts)),
        rest_joints=REST_JOINTS, joint_names=JOINT_NAMES, keypoint_maps=maps_for(joint_ids, surface_ids),
        bend_limits=hinge_limits({name: k for k, name in enumerate(JOINT_NAMES)}, REST_JOINTS), name="procedural",
    )
