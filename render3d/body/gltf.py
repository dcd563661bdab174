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

import json
import struct
from pathlib import Path

import numpy as np
import torch

from render3d.body.model import BodyModel, _local_transforms as _model_local_transforms, _rigid_inverse
from render3d.io.atomic import atomic_write_bytes
from render3d.ops.rotations import matrix_to_quaternion

INFLUENCES = 4
_FLOAT, _UINT, _USHORT = 5126, 5125, 5123
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


class _Buffer:
    """The binary chunk and its bufferViews/accessors, built up one array at a time."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, component: int, kind: str, target: int | None = None,
            bounds: bool = False) -> int:
        while len(self.data) % 4:
            self.data.append(0)
        raw = np.ascontiguousarray(array).tobytes()
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.data.extend(raw)
        accessor = {"bufferView": len(self.views) - 1, "componentType": component, "count": int(array.shape[0]),
                    "type": kind}
        if bounds:
            flat = array.reshape(array.shape[0], -1)
            accessor["min"] = flat.min(0).astype(float).tolist()
            accessor["max"] = flat.max(0).astype(float).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1


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
    buffer = _Buffer()
    positions = buffer.add(shaped.numpy().astype(np.float32), _FLOAT, "VEC3", _ARRAY_BUFFER, bounds=True)
    joints, weights = _top_influences(model)
    joints_accessor = buffer.add(joints, _USHORT, "VEC4", _ARRAY_BUFFER)
    weights_accessor = buffer.add(weights, _FLOAT, "VEC4", _ARRAY_BUFFER)
    indices = buffer.add(model.faces.numpy().astype(np.uint32).reshape(-1), _UINT, "SCALAR", _ELEMENT_ARRAY_BUFFER)
    # glTF matrices are column-major.
    bind = buffer.add(inverse_bind.transpose(-1, -2).reshape(-1, 16).numpy().astype(np.float32), _FLOAT, "MAT4")

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
    document["buffers"] = [{"byteLength": len(buffer.data)}]
    document["bufferViews"] = buffer.views
    document["accessors"] = buffer.accessors
    return _write_glb(Path(path), document, bytes(buffer.data))


def _animation(buffer: _Buffer, model: BodyModel, rest_frames: torch.Tensor, frames: torch.Tensor,
               transl: torch.Tensor, fps: float) -> dict:
    with torch.no_grad():
        rotations = model.pose_matrices(frames.detach().cpu().float())
        count = rotations.shape[0]
        local = _local_transforms(model, rest_frames, rotations, transl.detach().cpu().float().expand(count, 3))
    times = buffer.add((np.arange(count) / fps).astype(np.float32), _FLOAT, "SCALAR", bounds=True)
    samplers, channels = [], []
    quaternions = _quaternions_xyzw(local[..., :3, :3])
    for joint in range(model.n_joints):
        output = buffer.add(quaternions[:, joint], _FLOAT, "VEC4")
        samplers.append({"input": times, "output": output, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": joint, "path": "rotation"}})
    for joint in (j for j, parent in enumerate(model.parents.tolist()) if parent < 0):
        output = buffer.add(local[:, joint, :3, 3].numpy().astype(np.float32), _FLOAT, "VEC3")
        samplers.append({"input": times, "output": output, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": joint, "path": "translation"}})
    return {"name": "pose", "samplers": samplers, "channels": channels}


def _write_glb(path: Path, document: dict, binary: bytes) -> Path:
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return atomic_write_bytes(path, struct.pack("<4sII", b"glTF", 2, total)
                              + struct.pack("<I4s", len(text), b"JSON") + text
                              + struct.pack("<I4s", len(binary), b"BIN\0") + binary)


def read_glb(path: str | Path) -> tuple[dict, bytes]:
    """The JSON document and binary chunk of a ``.glb`` (for checks and tests)."""
    data = Path(path).read_bytes()
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise ValueError(f"{path}: not a glTF 2.0 binary")
    json_length, _ = struct.unpack_from("<I4s", data, 12)
    document = json.loads(data[20:20 + json_length])
    offset = 20 + json_length
    bin_length, _ = struct.unpack_from("<I4s", data, offset)
    return document, data[offset + 8:offset + 8 + bin_length]


def accessor_array(document: dict, binary: bytes, index: int) -> np.ndarray:
    """An accessor's data as a numpy array (tightly packed views only, as written here)."""
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = {_FLOAT: np.float32, _UINT: np.uint32, _USHORT: np.uint16}[accessor["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[accessor["type"]]
    flat = np.frombuffer(binary, dtype=dtype, count=accessor["count"] * width, offset=view["byteOffset"])
    return flat.reshape(accessor["count"], width) if width > 1 else flat
