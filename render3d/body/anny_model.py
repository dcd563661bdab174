"""The free body model: an adapter for the ``anny`` package (Apache-2.0 code, CC0
MakeHuman-derived assets shipped in its wheel; the optional extra ``body``).

``anny.Anny()`` (rig ``anny``: 104 bones; topology ``anny``: 13,718 vertices, 27,420
triangles; up to 9 bones per vertex) is evaluated once at a phenotype (gender, age, muscle,
weight, height, proportions, each in [0, 1], 0.5 by default) and its arrays are read into a
:class:`BodyModel` with the same layout as the SMPL family:

- template: anny's rest vertices at that phenotype; faces; sparse skinning weights;
- rest frames: anny's oriented rest bone poses ``P_k = [R_k | h_k]`` (bone head and axes),
  so that ``local_k = inv(P_parent) P_k L_k`` (anny's ``local-bone`` parameterisation with
  identity reference orientations);
- shape: the six phenotype values linearised around the chosen phenotype (central finite
  differences of the rest vertices and bone heads, step 0.02), so ``betas`` are phenotype
  offsets; the rest orientations stay those of the chosen phenotype;
- keypoints: anny's own COCO regressor (vertex blends) for COCO-17 and, with the neck and
  mid-hip as shoulder and hip midpoints and its foot keypoints, for BODY_25.

Axes are converted from anny's (z up, facing -y) to the engine's body convention (y up,
facing +z, the person's left +x), a rotation, so distances are unchanged.

Nothing is downloaded: the assets are in the wheel. The first ``anny.Anny()`` on a machine
parses them and writes a cache (about 800 MB under ``~/.cache/anny``; several minutes on
two CPU cores); later ones load in about a second.
"""
from __future__ import annotations

import functools

import torch

from render3d.body.keypoints import BODY25, COCO17, hinge_limits
from render3d.body.keypoints import KeypointMap
from render3d.body.model import BodyModel
from render3d.errors import ConfigError

# (x, y, z) anny -> (x, z, -y): z up becomes y up, facing -y becomes facing +z.
ANNY_TO_BODY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
FINITE_DIFFERENCE_STEP = 0.02
HINGE_BONES = {"left_elbow": "lowerarm01.L", "left_wrist": "wrist.L", "left_knee": "lowerleg01.L",
               "left_ankle": "foot.L", "right_elbow": "lowerarm01.R", "right_wrist": "wrist.R",
               "right_knee": "lowerleg01.R", "right_ankle": "foot.R"}


@functools.lru_cache(maxsize=1)
def anny_instance():
    """The ``anny.Anny()`` model in float64 (built once per process)."""
    try:
        import anny
    except ImportError:
        raise ConfigError("the anny body model needs the optional extra: pip install 'render3d[body]'") from None
    return anny.Anny().to(dtype=torch.float64)


def phenotype_values(model, phenotype: dict | None) -> dict[str, float]:
    """Every phenotype label with its value (0.5 unless given). ConfigError for an unknown
    label or a value outside [0, 1]."""
    values = {label: 0.5 for label in model.phenotype_labels}
    for key, value in (phenotype or {}).items():
        if key not in values:
            raise ConfigError(f"anny phenotype: unknown key {key!r} (known: {', '.join(values)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"anny phenotype: {key} must be a number in [0, 1], got {value!r}")
        values[key] = float(value)
    return values


def anny_rest(model, phenotype: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """anny's rest vertices ``[V, 3]`` and rest bone poses ``[J, 4, 4]`` (anny's axes, float64)."""
    identity = torch.eye(4, dtype=torch.float64).expand(1, model.bone_count, 4, 4)
    with torch.no_grad():
        out = model(pose_parameters=identity, phenotype_kwargs=phenotype)
    return out["rest_vertices"][0], out["rest_bone_poses"][0]


def _shape_directions(model, phenotype: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[V, 3, S]`` and ``[J, 3, S]`` derivatives of the rest vertices and bone heads with
    respect to each phenotype value (central differences, one-sided at the ends of [0, 1])."""
    vertex_dirs, head_dirs = [], []
    for label in model.phenotype_labels:
        high = dict(phenotype, **{label: min(1.0, phenotype[label] + FINITE_DIFFERENCE_STEP)})
        low = dict(phenotype, **{label: max(0.0, phenotype[label] - FINITE_DIFFERENCE_STEP)})
        vertices_high, frames_high = anny_rest(model, high)
        vertices_low, frames_low = anny_rest(model, low)
        span = high[label] - low[label]
        vertex_dirs.append((vertices_high - vertices_low) / span)
        head_dirs.append((frames_high[:, :3, 3] - frames_low[:, :3, 3]) / span)
    return torch.stack(vertex_dirs, -1), torch.stack(head_dirs, -1)


def _keypoint_maps(model, n_vertices: int) -> dict[str, KeypointMap]:
    """COCO-17 and BODY_25 maps from anny's COCO keypoint regressor."""
    from anny.keypoints import KeypointsRegressor

    regressor = KeypointsRegressor.coco(model)
    weights = dict(zip(regressor.labels, regressor.regression_weights.to(torch.float32)))
    weights["neck"] = 0.5 * (weights["left_shoulder"] + weights["right_shoulder"])
    weights["mid_hip"] = 0.5 * (weights["left_hip"] + weights["right_hip"])
    zero = torch.zeros(n_vertices)
    maps = {}
    for convention, names in (("coco17", COCO17), ("body25", BODY25)):
        rows = torch.stack([weights.get(name, zero) for name in names])
        maps[convention] = KeypointMap(names, (-1,) * len(names), (-1,) * len(names), rows)
    return maps


def from_anny(phenotype: dict | None = None, shape: bool = True) -> BodyModel:
    """A :class:`BodyModel` from anny at ``phenotype`` (module doc).

    Args:
        phenotype: ``{"gender", "age", "muscle", "weight", "height", "proportions"}`` values
            in [0, 1] (missing ones 0.5).
        shape: linearise the phenotype into shape directions (12 extra anny evaluations).

    Returns:
        The model; ``model.phenotype`` holds the phenotype and ``model.shape_labels`` the
        meaning of each beta.

    Raises:
        ConfigError: anny not installed, a bad phenotype.
    """
    model = anny_instance()
    values = phenotype_values(model, phenotype)
    vertices, frames = anny_rest(model, values)
    rotate = ANNY_TO_BODY
    shape_dirs = joint_shape_dirs = None
    if shape:
        vertex_dirs, head_dirs = _shape_directions(model, values)
        shape_dirs = torch.einsum("ab,vbs->vas", rotate, vertex_dirs)
        joint_shape_dirs = torch.einsum("ab,jbs->jas", rotate, head_dirs)
    names = tuple(model.bone_labels)
    rest_joints = frames[:, :3, 3] @ rotate.T
    rest_orientations = rotate @ frames[:, :3, :3]
    body = BodyModel(
        vertices @ rotate.T, model.faces.to(torch.int64), [int(p) for p in model.bone_parents],
        (model.vertex_bone_indices.to(torch.int64), model.vertex_bone_weights),
        shape_dirs=shape_dirs, rest_joints=rest_joints, joint_shape_dirs=joint_shape_dirs,
        rest_orientations=rest_orientations, joint_names=names,
        keypoint_maps=_keypoint_maps(model, vertices.shape[0]),
        bend_limits=hinge_limits({key: names.index(bone) for key, bone in HINGE_BONES.items()},
                                 rest_joints.numpy(), rest_orientations.numpy()),
        name="anny",
    )
    body.phenotype = values
    body.shape_labels = tuple(model.phenotype_labels) if shape else ()
    return body


def anny_pose_to_body(model: BodyModel, anny_bone_poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Express anny's posed bone poses ``W [B, J, 4, 4]`` (anny's axes, any of its pose
    parameterisations) as this model's pose: ``L_k = inv(inv(P_parent) P_k) inv(W_parent) W_k``
    and, for the root, ``L_0 = R_0^T W_0`` with the translation ``W_0 t - h_0``.

    Returns:
        ``(rotations [B, J, 3, 3], transl [B, 3])`` for :meth:`BodyModel.forward` (betas zero).
    """
    rotate = torch.eye(4, dtype=anny_bone_poses.dtype)
    rotate[:3, :3] = ANNY_TO_BODY.to(anny_bone_poses.dtype)
    world = rotate @ anny_bone_poses
    frames = torch.zeros(model.n_joints, 4, 4, dtype=world.dtype)
    frames[:, :3, :3] = model.rest_orientations.to(world.dtype)
    frames[:, :3, 3] = model.rest_joints.to(world.dtype)
    frames[:, 3, 3] = 1
    parents = model.parents.clamp_min(0)
    relative_rest = torch.linalg.inv(frames[parents]) @ frames
    relative_posed = torch.linalg.inv(world[:, parents]) @ world
    local = torch.linalg.inv(relative_rest) @ relative_posed
    roots = model.parents < 0
    root_rotation = frames[roots, :3, :3].transpose(-1, -2) @ world[:, roots, :3, :3]
    rotations = local[..., :3, :3].clone()
    rotations[:, roots] = root_rotation
    transl = (world[:, roots, :3, 3] - frames[roots, :3, 3])[:, 0]
    return rotations, transl
