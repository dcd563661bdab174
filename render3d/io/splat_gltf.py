"""3D Gaussian splats as glTF 2.0 binary (``.glb``) with the ``KHR_gaussian_splatting`` extension.

One mesh with one ``POINTS`` primitive whose attributes are, per Gaussian (float32):

- ``POSITION`` (VEC3, with min/max), ``KHR_gaussian_splatting:ROTATION`` (VEC4, a unit
  quaternion in glTF's xyzw order), ``KHR_gaussian_splatting:SCALE`` (VEC3, linear),
  ``KHR_gaussian_splatting:OPACITY`` (SCALAR, after the sigmoid);
- ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n`` (VEC3 RGB) for every degree up to the
  scene's, coefficients in the order of :mod:`render3d.ops.spherical_harmonics` (that of the
  3DGS PLY, which is the extension's: m from -l to l, Condon-Shortley phase);
- ``COLOR_0`` (VEC4): the point-cloud fallback, ``clamp(0.5 + 0.2821 * SH0)`` turned from
  sRGB to linear (glTF colours are linear), opacity in alpha.

The extension object says ``kernel: "ellipse"`` and ``colorSpace: "srgb_rec709_display"``
(render3d fits colours to the images' sRGB values).

Axes: glTF is y-up, render3d's world has an ``up`` vector (+z by default: Blender's and
nerfstudio's scenes). The writer turns ``up`` onto +y (means, rotations and SH coefficients,
so a viewer that ignores node transforms still sees it upright) and the reader turns +y back
onto ``up``, so a round trip is exact. The reader also applies the node transforms of the
file's scene, as the extension asks, and reads every splat primitive in it.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from render3d.errors import ConfigError, DataError
from render3d.io.glb import ARRAY_BUFFER, FLOAT, GlbBuffer, accessor_array, read_glb, write_glb
from render3d.io.splat_ply import check_splat_arrays
from render3d.ops.rotations import matrix_to_quaternion, quaternion_to_matrix
from render3d.ops.spherical_harmonics import sh_rotation_matrix

__all__ = ["EXTENSION", "has_splats", "load_splat_glb", "save_splat_glb"]

EXTENSION = "KHR_gaussian_splatting"
_C0 = 0.28209479177387814
_MAX_DEGREE = 3


def _sh_attribute(degree: int, coefficient: int) -> str:
    return f"{EXTENSION}:SH_DEGREE_{degree}_COEF_{coefficient}"


def save_splat_glb(
    path: str | os.PathLike,
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacity_logits: Tensor,
    sh: Tensor,
    up=(0.0, 0.0, 1.0),
) -> Path:
    """Write Gaussians as a ``KHR_gaussian_splatting`` ``.glb`` (module doc), atomically.

    Args:
        means: ``[N,3]`` centres. quats: ``[N,4]`` wxyz. log_scales: ``[N,3]``.
        opacity_logits: ``[N]``. sh: ``[N,K,3]``, K in {1, 4, 9, 16}.
        up: ``[3]`` the world's up direction, written as glTF's +y.
    """
    means, quats, log_scales, opacity_logits, sh = check_splat_arrays(means, quats, log_scales, opacity_logits, sh)
    to_file = _rotation_onto(_unit(up, "up"), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    means, quats, sh = _rotate(means, quats, sh, to_file)
    opacity = torch.sigmoid(opacity_logits)
    buffer = GlbBuffer()

    def vectors(values: Tensor, kind: str, bounds: bool = False) -> int:
        return buffer.add(values.numpy().astype("<f4"), FLOAT, kind, ARRAY_BUFFER, bounds=bounds)

    diffuse = (0.5 + _C0 * sh[:, 0, :]).clamp(0.0, 1.0)
    attributes = {
        "POSITION": vectors(means, "VEC3", bounds=True),
        "COLOR_0": vectors(torch.cat([_srgb_to_linear(diffuse), opacity[:, None]], dim=1), "VEC4"),
        f"{EXTENSION}:ROTATION": vectors(torch.cat([quats[:, 1:], quats[:, :1]], dim=1), "VEC4"),
        f"{EXTENSION}:SCALE": vectors(log_scales.exp(), "VEC3"),
        f"{EXTENSION}:OPACITY": vectors(opacity, "SCALAR"),
    }
    degree = math.isqrt(sh.shape[1]) - 1
    for level in range(degree + 1):
        for coefficient in range(2 * level + 1):
            attributes[_sh_attribute(level, coefficient)] = vectors(sh[:, level * level + coefficient, :], "VEC3")
    document = {
        "asset": {"version": "2.0", "generator": "render3d"},
        "extensionsUsed": [EXTENSION],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": "gaussians", "mesh": 0}],
        "meshes": [{"name": "gaussians", "primitives": [{
            "attributes": attributes, "mode": 0,
            "extensions": {EXTENSION: {"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}}}]}],
    }
    return write_glb(path, buffer.finish(document), bytes(buffer.data))


def load_splat_glb(path: str | os.PathLike, up=(0.0, 0.0, 1.0)) -> dict[str, Tensor]:
    """Read the ``KHR_gaussian_splatting`` primitives of a ``.glb``'s scene.

    Args:
        path: the file. up: ``[3]`` the world direction that glTF's +y becomes.

    Returns:
        ``{"means" [N,3], "quats" [N,4] wxyz, "log_scales" [N,3], "opacity_logits" [N],
        "sh" [N,K,3]}`` float32, in the layout of :func:`render3d.io.splat_ply.load_splat_ply`
        (K from the highest degree in the file; primitives with fewer degrees get zeros).

    Raises:
        DataError: not a ``.glb``, no splat primitive, a primitive that is not ``POINTS``,
        missing or misshapen attributes, partial SH degrees, or out-of-range values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: splat glTF file does not exist")
    document, binary = read_glb(path)
    parts = []
    try:
        for matrix, primitive in _splat_primitives(document):
            parts.append(_transformed(_read_primitive(document, binary, primitive), matrix))
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    if not parts:
        raise DataError(f"{path}: no mesh primitive with the {EXTENSION} extension in the file's scene "
                        "(a plain mesh or point cloud?)")
    n_bases = max(part["sh"].shape[1] for part in parts)
    for part in parts:
        missing = n_bases - part["sh"].shape[1]
        part["sh"] = torch.cat([part["sh"], part["sh"].new_zeros(part["sh"].shape[0], missing, 3)], dim=1)
    values = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    from_file = _rotation_onto(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), _unit(up, "up"))
    means, quats, sh = _rotate(values["means"], values["quats"], values["sh"], from_file)
    result = {"means": means, "quats": quats, "log_scales": values["log_scales"],
              "opacity_logits": values["opacity_logits"], "sh": sh}
    result = {key: value.float().contiguous() for key, value in result.items()}
    for key, value in result.items():
        if not torch.isfinite(value).all():
            raise DataError(f"{path}: non-finite values in {key}")
    return result


def has_splats(path: str | os.PathLike) -> bool:
    """Whether the ``.glb`` at ``path`` has a ``KHR_gaussian_splatting`` primitive in its scene
    (a splat file, rather than a mesh); DataError for a file that is not a ``.glb``."""
    document, _ = read_glb(path)
    return any(True for _ in _splat_primitives(document))


def _splat_primitives(document: dict):
    """``(global [4,4] float64 matrix, primitive)`` for each splat primitive of the scene."""
    nodes = document.get("nodes", [])
    scenes = document.get("scenes")
    if scenes:
        roots = scenes[document.get("scene", 0)].get("nodes", [])
    else:
        children = {child for node in nodes for child in node.get("children", [])}
        roots = [index for index in range(len(nodes)) if index not in children]
    stack = [(index, np.eye(4)) for index in roots]
    while stack:
        index, parent = stack.pop()
        node = nodes[index]
        matrix = parent @ _node_matrix(node)
        stack.extend((child, matrix) for child in node.get("children", []))
        if "mesh" in node:
            for primitive in document["meshes"][node["mesh"]].get("primitives", []):
                if EXTENSION in primitive.get("extensions", {}):
                    yield matrix, primitive


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # glTF stores columns
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(torch.tensor([w, x, y, z], dtype=torch.float64)).numpy()
    matrix[:3, :3] *= np.asarray(node.get("scale", (1.0, 1.0, 1.0)), dtype=np.float64)[None, :]
    matrix[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return matrix


def _read_primitive(document: dict, binary: bytes, primitive: dict) -> dict[str, Tensor]:
    if primitive.get("mode", 4) != 0:
        raise DataError(f"a {EXTENSION} primitive has mode {primitive.get('mode', 4)}; the extension needs POINTS (0)")
    attributes = primitive.get("attributes", {})

    def read(name: str, width: int) -> Tensor:
        if name not in attributes:
            raise DataError(f"the splat primitive has no {name} attribute")
        values = accessor_array(document, binary, attributes[name])
        values = values.reshape(values.shape[0], -1)
        if values.shape[1] != width:
            raise DataError(f"{name} has {values.shape[1]} components per Gaussian, not {width}")
        return torch.from_numpy(values.astype(np.float64))

    means = read("POSITION", 3)
    xyzw = read(f"{EXTENSION}:ROTATION", 4)
    scales = read(f"{EXTENSION}:SCALE", 3)
    opacity = read(f"{EXTENSION}:OPACITY", 1)[:, 0]
    coefficients = [read(_sh_attribute(0, 0), 3)]
    for level in range(1, _MAX_DEGREE + 1):
        present = [_sh_attribute(level, n) in attributes for n in range(2 * level + 1)]
        if not any(present):
            break
        if not all(present):
            raise DataError(f"SH degree {level} is partly defined ({sum(present)} of {2 * level + 1} coefficients)")
        coefficients += [read(_sh_attribute(level, n), 3) for n in range(2 * level + 1)]
    count = means.shape[0]
    if any(value.shape[0] != count for value in (xyzw, scales, opacity, *coefficients)):
        raise DataError("the splat attributes do not all have one value per Gaussian")
    if (scales < 0).any():
        raise DataError(f"{EXTENSION}:SCALE has negative values (scales are linear and must not be negative)")
    if ((opacity < -1e-6) | (opacity > 1 + 1e-6)).any():
        raise DataError(f"{EXTENSION}:OPACITY has values outside [0, 1]")
    norms = xyzw.norm(dim=1, keepdim=True)
    if (norms < 1e-8).any():
        raise DataError(f"{EXTENSION}:ROTATION has zero quaternions")
    return {"means": means, "quats": torch.cat([xyzw[:, 3:], xyzw[:, :3]], dim=1) / norms,
            "scales": scales, "opacity": opacity, "sh": torch.stack(coefficients, dim=1)}


def _transformed(part: dict[str, Tensor], matrix: np.ndarray) -> dict[str, Tensor]:
    """The primitive's Gaussians carried by the node's global ``matrix [4,4]``, with
    log-scales and opacity logits."""
    linear = torch.from_numpy(matrix[:3, :3])
    lengths = linear.norm(dim=0)
    rotation = linear / lengths.clamp_min(1e-300)
    orthogonality = float((rotation.T @ rotation - torch.eye(3, dtype=torch.float64)).abs().max())
    if not bool((lengths > 0).all()) or orthogonality > 1e-4 or float(torch.linalg.det(rotation)) < 0:
        raise DataError("a splat node's transform is not a rotation times positive scales (the extension "
                        "leaves other transforms undefined)")
    scales, quats = part["scales"], part["quats"]
    if float(lengths.max() - lengths.min()) <= 1e-9 * float(lengths.max()):  # a similarity: scales just grow
        quats = matrix_to_quaternion(rotation @ quaternion_to_matrix(quats))
        scales = scales * lengths[0]
    else:  # a non-uniform scale: re-diagonalise the covariance A R S^2 R^T A^T
        axes = linear @ quaternion_to_matrix(quats) * scales[:, None, :]
        variances, frames = torch.linalg.eigh(axes @ axes.transpose(1, 2))
        frames = frames * torch.linalg.det(frames)[:, None, None].sign()
        quats, scales = matrix_to_quaternion(frames), variances.clamp_min(0).sqrt()
    sh = torch.einsum("jk,nkc->njc", sh_rotation_matrix(rotation, math.isqrt(part["sh"].shape[1]) - 1), part["sh"])
    opacity = part["opacity"].clamp(1e-6, 1 - 1e-6)
    return {"means": part["means"] @ linear.T + torch.from_numpy(matrix[:3, 3]),
            "quats": quats, "log_scales": scales.clamp_min(1e-12).log(),
            "opacity_logits": torch.log(opacity) - torch.log1p(-opacity), "sh": sh}


def _rotate(means: Tensor, quats: Tensor, sh: Tensor, rotation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussians turned by ``rotation [3,3]``: centres, wxyz orientations and SH colours."""
    rotation = rotation.to(torch.float64)
    if torch.equal(rotation, torch.eye(3, dtype=torch.float64)):
        return means.double(), quats.double() / quats.double().norm(dim=1, keepdim=True), sh.double()
    degree = math.isqrt(sh.shape[1]) - 1
    turned_sh = torch.einsum("jk,nkc->njc", sh_rotation_matrix(rotation, degree), sh.double())
    turned_quats = matrix_to_quaternion(rotation @ quaternion_to_matrix(quats.double()))
    return means.double() @ rotation.T, turned_quats, turned_sh


def _rotation_onto(source: Tensor, target: Tensor) -> Tensor:
    """The smallest ``[3,3]`` rotation taking unit ``source`` onto unit ``target``."""
    axis = torch.linalg.cross(source, target)
    cosine = float(source @ target)
    if cosine > 1 - 1e-12:
        return torch.eye(3, dtype=torch.float64)
    if cosine < -1 + 1e-12:  # opposite: half a turn about any axis orthogonal to source
        helper = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
        if abs(float(source[0])) > 0.9:
            helper = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        axis = torch.nn.functional.normalize(torch.linalg.cross(source, helper), dim=0)
        return 2.0 * torch.outer(axis, axis) - torch.eye(3, dtype=torch.float64)
    skew = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
                        dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + skew + skew @ skew / (1.0 + cosine)


def _unit(vector, name: str) -> Tensor:
    try:
        value = torch.as_tensor(vector, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        value = torch.zeros(0, dtype=torch.float64)
    if value.numel() != 3 or not bool(torch.isfinite(value).all()) or float(value.norm()) < 1e-12:
        raise ConfigError(f"{name} must be 3 finite numbers, not all zero, got {vector!r}")
    return value / value.norm()


def _srgb_to_linear(values: Tensor) -> Tensor:
    return torch.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)
