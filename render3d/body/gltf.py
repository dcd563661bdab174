"""Skinned glTF 2.0 binary (``.glb``) export of a posed :class:`BodyModel`, optionally animated.

What the file holds:

- one mesh whose vertices are the shaped rest mesh (the bind pose), with ``JOINTS_0`` /
  ``WEIGHTS_0``: each vertex's four largest skinning weights, renormalised (glTF viewers
  read four influences per set);
- one node per joint, parented like the skeleton, whose local transform is the body's
  ``inv(P_parent) P_k L_k`` as translation + rotation (the root carries the translation);
- a skin whose inverse bind matrices are ``inv(P_k)``, so a viewer reproduces the pose by
  linear blend skinning;
- with ``frames``, an animation with one rotation channel per joint and the root's
  translation, linear interpolation at ``fps``.

Pose correctives are not representable in glTF (a viewer would need per-pose morph weights),
so a model that has them is exported without them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from render3d.body.model import BodyModel, _local_transforms as _model_local_transforms, _rigid_inverse
from render3d.io.glb import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, FLOAT, UNSIGNED_INT, UNSIGNED_SHORT, GlbBuffer, write_glb
from render3d.ops.rotations import matrix_to_quaternion

INFLUENCES = 4


def _top_influences(model: BodyModel) -> tuple[np.ndarray, np.ndarray]:
    """``(joints [V, 4] uint16, weights [V, 4] float32)``: the four largest weights per
    vertex, renormalised to sum to one."""
    dense = model.dense_weights.detach().cpu().float()
    count = min(INFLUENCES, model.n_joints)
    top = dense.topk(count, dim=1)
    values = top.values.clamp_min(0)
    values = values / values.sum(1, keepdim=True).clamp_min(1e-12)
    joints = top.indices
    if count < INFLUENCES:
        pad = INFLUENCES - count
        values = torch.cat([values, torch.zeros(values.shape[0], pad)], 1)
        joints = torch.cat([joints, torch.zeros(joints.shape[0], pad, dtype=joints.dtype)], 1)
    return joints.numpy().astype(np.uint16), values.numpy().astype(np.float32)


def _local_transforms(model: BodyModel, frames: torch.Tensor, rotations: torch.Tensor,
                      transl: torch.Tensor) -> torch.Tensor:
    """``[T, J, 4, 4]`` local joint transforms ``inv(P_parent) P_k L_k`` with ``transl``
    added to the roots' translations."""
    local, _ = _model_local_transforms(model.parents, frames, rotations)
    local[:, model.parents < 0, :3, 3] += transl[:, None, :]
    return local


def _quaternions_xyzw(matrices: torch.Tensor) -> np.ndarray:
    wxyz = matrix_to_quaternion(matrices.double())
    return torch.cat([wxyz[..., 1:], wxyz[..., :1]], -1).float().numpy()


def write_skinned_glb(path: str | Path, model: BodyModel, betas: torch.Tensor, pose: torch.Tensor,
                      transl: torch.Tensor, frames: torch.Tensor | None = None, fps: float = 30.0) -> Path:
    """Write the body as a skinned ``.glb`` (module doc), atomically.

    Args:
        path: output file.
        model: the body model (on CPU).
        betas: ``[1, S']`` shape; pose: ``[1, J, 3|6]`` or ``[1, J, 3, 3]`` (the still pose of
            the nodes); transl: ``[1, 3]``.
        frames: optional ``[T, J, 3]`` axis-angle (or ``[T, J, 3, 3]``) poses to animate, with
            optional translations ignored (the root keeps ``transl``).
        fps: animation frame rate.
    """
    model = model.cpu()
    with torch.no_grad():
        shaped, rest_frames = model.rest_frames(betas.detach().cpu().float())
        shaped, rest_frames = shaped[0], rest_frames[0]
        still = _local_transforms(model, rest_frames, model.pose_matrices(pose.detach().cpu().float()),
                                  transl.detach().cpu().float())[0]
        inverse_bind = _rigid_inverse(rest_frames)
    buffer = GlbBuffer()
    positions = buffer.add(shaped.numpy().astype(np.float32), FLOAT, "VEC3", ARRAY_BUFFER, bounds=True)
    joints, weights = _top_influences(model)
    joints_accessor = buffer.add(joints, UNSIGNED_SHORT, "VEC4", ARRAY_BUFFER)
    weights_accessor = buffer.add(weights, FLOAT, "VEC4", ARRAY_BUFFER)
    indices = buffer.add(model.faces.numpy().astype(np.uint32).reshape(-1), UNSIGNED_INT, "SCALAR", ELEMENT_ARRAY_BUFFER)
    # glTF matrices are column-major.
    bind = buffer.add(inverse_bind.transpose(-1, -2).reshape(-1, 16).numpy().astype(np.float32), FLOAT, "MAT4")

    nodes = []
    children: list[list[int]] = [[] for _ in range(model.n_joints)]
    for joint, parent in enumerate(model.parents.tolist()):
        if parent >= 0:
            children[parent].append(joint)
    still_rotations = _quaternions_xyzw(still[:, :3, :3])
    for joint in range(model.n_joints):
        node = {"name": model.joint_names[joint], "translation": still[joint, :3, 3].tolist(),
                "rotation": still_rotations[joint].tolist()}
        if children[joint]:
            node["children"] = children[joint]
        nodes.append(node)
    roots = [joint for joint, parent in enumerate(model.parents.tolist()) if parent < 0]
    nodes.append({"name": model.name, "mesh": 0, "skin": 0})
    document = {
        "asset": {"version": "2.0", "generator": "render3d"},
        "scene": 0,
        "scenes": [{"nodes": roots + [model.n_joints]}],
        "nodes": nodes,
        "meshes": [{"name": model.name, "primitives": [{
            "attributes": {"POSITION": positions, "JOINTS_0": joints_accessor, "WEIGHTS_0": weights_accessor},
            "indices": indices, "mode": 4}]}],
        "skins": [{"joints": list(range(model.n_joints)), "inverseBindMatrices": bind, "skeleton": roots[0]}],
    }
    if frames is not None:
        document["animations"] = [_animation(buffer, model, rest_frames, frames, transl, fps)]
    return write_glb(path, buffer.finish(document), bytes(buffer.data))


def _animation(buffer: GlbBuffer, model: BodyModel, rest_frames: torch.Tensor, frames: torch.Tensor,
               transl: torch.Tensor, fps: float) -> dict:
    with torch.no_grad():
        rotations = model.pose_matrices(frames.detach().cpu().float())
        count = rotations.shape[0]
        local = _local_transforms(model, rest_frames, rotations, transl.detach().cpu().float().expand(count, 3))
    times = buffer.add((np.arange(count) / fps).astype(np.float32), FLOAT, "SCALAR", bounds=True)
    samplers, channels = [], []
    quaternions = _quaternions_xyzw(local[..., :3, :3])
    for joint in range(model.n_joints):
        output = buffer.add(quaternions[:, joint], FLOAT, "VEC4")
        samplers.append({"input": times, "output": output, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": joint, "path": "rotation"}})
    for joint in (j for j, parent in enumerate(model.parents.tolist()) if parent < 0):
        output = buffer.add(local[:, joint, :3, 3].numpy().astype(np.float32), FLOAT, "VEC3")
        samplers.append({"input": times, "output": output, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": joint, "path": "translation"}})
    return {"name": "pose", "samplers": samplers, "channels": channels}
