"""3D Gaussians attached to a skinned body: where they sit on its surface, the skinning weights
they inherit, and how linear blend skinning carries them from rest space to a pose.

Binding: each triangle of the body carries ``S`` Gaussians at fixed barycentric coordinates
(the centroid when ``S = 1``; a fixed stratified set otherwise). A Gaussian's skinning weights
are its triangle's vertex weights interpolated at those coordinates, cut to the ``M`` largest
and renormalised (sparse ``(indices [N, M], values [N, M])``, the layout of
:func:`render3d.ops.skinning.linear_blend_skinning`).

Posing (:func:`skin_gaussians`): the blended transform ``A_i = sum_k w_ik G_k inv(P_k)`` is
affine, so the Gaussian's centre goes to ``A_i mu_i`` and its covariance to ``L_i Sigma_i L_i^T``
with ``L_i`` the linear part of ``A_i``. Both come from the skinning op itself: the centre and
the three points ``mu_i + e_x, mu_i + e_y, mu_i + e_z`` are skinned in one call (the op's
kernel on CUDA, its reference on CPU) and ``L_i``'s columns are the differences. A blend of
rotations is a rotation times a mild shrink, so the posed rotation is the orthogonal polar
factor of ``L_i`` (a few Newton steps ``X <- (X + X^-T) / 2``, which converge quadratically
from a near-orthogonal start) composed with the Gaussian's own, and its scales are kept.
Every step is differentiable: gradients reach the Gaussians, the weights and the transforms
(and through them the body's shape and pose).
"""
from __future__ import annotations

import torch

from render3d.errors import ConfigError
from render3d.ops.rotations import matrix_to_quaternion, quaternion_multiply
from render3d.ops.skinning import linear_blend_skinning

POLAR_ITERATIONS = 5


def barycentric_samples(per_triangle: int) -> torch.Tensor:
    """``[S, 3]`` barycentric coordinates used on every triangle: the centroid for one; for
    more, the centroid and then points of a fixed low-discrepancy set (no randomness, so a
    checkpoint's binding is rebuilt identically)."""
    if per_triangle < 1:
        raise ConfigError(f"barycentric_samples: per_triangle must be >= 1, got {per_triangle}")
    samples = [torch.full((3,), 1.0 / 3.0, dtype=torch.float64)]
    golden = (5 ** 0.5 - 1) / 2
    for index in range(1, per_triangle):
        u, v = (index * golden) % 1.0, (index + 0.5) / per_triangle
        root = u ** 0.5  # uniform on the triangle
        samples.append(torch.tensor([1 - root, root * (1 - v), root * v], dtype=torch.float64))
    return torch.stack(samples).float()


def triangle_frames(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each triangle's frame ``[F, 3, 3]`` (columns: first edge, in-plane perpendicular,
    normal) and area ``[F]`` for ``vertices [V, 3]``, ``faces [F, 3]``."""
    corners = vertices[faces]
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    cross = torch.linalg.cross(edge1, edge2, dim=-1)
    area = 0.5 * cross.norm(dim=-1).clamp_min(1e-12)
    normal = cross / (2 * area[:, None])
    tangent = edge1 / edge1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.stack([tangent, torch.linalg.cross(normal, tangent, dim=-1), normal], -1), area


def surface_points(vertices: torch.Tensor, faces: torch.Tensor, triangles: torch.Tensor,
                   barycentric: torch.Tensor) -> torch.Tensor:
    """``[N, 3]`` points at ``barycentric [N, 3]`` in ``triangles [N]`` of the mesh
    (``vertices [V, 3]``, ``faces [F, 3]``); differentiable in the vertices."""
    return (barycentric[:, :, None] * vertices[faces[triangles]]).sum(1)


def binding_weights(dense: torch.Tensor, faces: torch.Tensor, triangles: torch.Tensor, barycentric: torch.Tensor,
                    slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse skinning weights ``(indices [N, M], values [N, M])`` of points at
    ``barycentric [N, 3]`` in ``triangles [N]``, from the vertices' dense weights ``[V, J]``:
    interpolated, cut to the ``M = min(slots, J)`` largest, renormalised to sum to one."""
    blended = (barycentric[:, :, None] * dense[faces[triangles]]).sum(1)  # [N, J]
    values, indices = blended.topk(min(slots, dense.shape[1]), dim=1)
    values = values.clamp_min(0)
    return indices, values / values.sum(1, keepdim=True).clamp_min(1e-12)


def orthogonal_polar_factor(matrices: torch.Tensor) -> torch.Tensor:
    """The rotation ``Q`` of the polar decomposition ``L = Q H`` of ``[N, 3, 3]`` matrices with
    positive determinant, by Newton's iteration (module doc)."""
    rotation = matrices
    for _ in range(POLAR_ITERATIONS):
        rotation = 0.5 * (rotation + torch.linalg.inv(rotation).transpose(-1, -2))
    return rotation


def skin_gaussians(means: torch.Tensor, quats: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor],
                   skinning: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose Gaussians by linear blend skinning (module doc).

    Args:
        means: ``[N, 3]`` rest-space centres; quats ``[N, 4]`` wxyz rest-space rotations.
        weights: sparse ``(indices [N, M], values [N, M])`` skinning weights.
        skinning: ``[J, 4, 4]`` transforms ``G_k inv(P_k)`` from rest to posed space
            (:meth:`render3d.body.BodyModel.skinning_transforms`).

    Returns:
        Posed ``means [N, 3]`` and unit ``quats [N, 4]``.
    """
    n = means.shape[0]
    axes = torch.eye(3, dtype=means.dtype, device=means.device)
    points = torch.cat([means, *(means + axis for axis in axes)])  # [4N, 3]: centre, then one point per axis
    indices, values = weights
    skinned = linear_blend_skinning(points, skinning, (indices.repeat(4, 1), values.repeat(4, 1)))
    centres, ends = skinned[:n], skinned[n:].view(3, n, 3)
    linear = (ends - centres).permute(1, 2, 0)  # [N, 3, 3]: column j is L e_j
    rotation = matrix_to_quaternion(orthogonal_polar_factor(linear))
    posed = quaternion_multiply(rotation, torch.nn.functional.normalize(quats, dim=-1))
    return centres, posed
