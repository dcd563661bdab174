"""Synthetic SMPL-format model files (random arrays in the published layouts), and an
independent SMPL forward written joint by joint in numpy, for the loader tests."""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import scipy.sparse

SMPL_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])


def smpl_arrays(n_vertices: int = 40, n_betas: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_joints = SMPL_PARENTS.size
    weights = rng.random((n_vertices, n_joints)) ** 4
    regressor = rng.random((n_joints, n_vertices)) ** 8
    kintree = np.stack([SMPL_PARENTS, np.arange(n_joints)]).astype(np.int64)
    kintree[0, 0] = 2**32 - 1  # the sentinel the published files use for the root
    return {
        "v_template": rng.normal(size=(n_vertices, 3)),
        "f": rng.integers(0, n_vertices, size=(20, 3)).astype(np.uint32),
        "shapedirs": 0.05 * rng.normal(size=(n_vertices, 3, n_betas)),
        "posedirs": 0.01 * rng.normal(size=(n_vertices, 3, 9 * (n_joints - 1))),
        "J_regressor": regressor / regressor.sum(1, keepdims=True),
        "kintree_table": kintree,
        "weights": weights / weights.sum(1, keepdims=True),
    }


def write_npz(path, arrays) -> None:
    np.savez(path, **arrays)


class Ch:
    """Stands in for chumpy.ch.Ch while writing a pickle (the state holds the array as x)."""

    def __init__(self, x):
        self.x = x

    def __getstate__(self):
        return {"x": self.x, "_dirty_vars": set()}


def write_pkl(path, arrays) -> None:
    """A pickle shaped like the published SMPL files: chumpy objects for template, shape and
    pose directions, a scipy CSC joint regressor, plain arrays elsewhere."""
    module = types.ModuleType("chumpy.ch")
    Ch.__module__ = "chumpy.ch"
    module.Ch = Ch
    package = types.ModuleType("chumpy")
    package.ch = module
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        content = dict(arrays)
        for key in ("v_template", "shapedirs", "posedirs"):
            content[key] = Ch(arrays[key])
        content["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        with open(path, "wb") as handle:
            pickle.dump(content, handle, protocol=2)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(axis_angle)
    if angle < 1e-12:
        return np.eye(3)
    k = axis_angle / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def numpy_smpl(arrays, betas: np.ndarray, pose: np.ndarray, transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SMPL's forward for one body, one joint at a time: ``(vertices [V, 3], joints [J, 3])``."""
    n_betas = betas.size
    shaped = arrays["v_template"] + arrays["shapedirs"][:, :, :n_betas] @ betas
    joints = arrays["J_regressor"] @ shaped
    rotations = [_rodrigues(p) for p in pose]
    features = np.concatenate([(r - np.eye(3)).ravel() for r in rotations[1:]])
    posed = shaped + arrays["posedirs"] @ features
    world = []
    for k, parent in enumerate(SMPL_PARENTS):
        local = np.eye(4)
        local[:3, :3] = rotations[k]
        local[:3, 3] = joints[k] - (joints[parent] if parent >= 0 else 0)
        world.append(local if parent < 0 else world[parent] @ local)
    skinning = []
    for k in range(len(world)):
        rest = np.eye(4)
        rest[:3, 3] = -joints[k]
        skinning.append(world[k] @ rest)
    blended = np.einsum("vj,jab->vab", arrays["weights"], np.stack(skinning))
    homogeneous = np.concatenate([posed, np.ones((posed.shape[0], 1))], 1)
    vertices = np.einsum("vab,vb->va", blended, homogeneous)[:, :3] + transl
    return vertices, np.stack([w[:3, 3] for w in world]) + transl
