"""Gaussians bound to a skinned body: binding, weights and linear blend skinning of centres and
rotations (render3d.body.gaussian_binding)."""
import math

import torch

from render3d.body import procedural_body
from render3d.body.gaussian_binding import (barycentric_samples, binding_weights, orthogonal_polar_factor,
                                            skin_gaussians, surface_points)
from render3d.ops.rotations import axis_angle_to_matrix, quaternion_to_matrix


def test_barycentric_samples_lie_in_the_triangle_and_start_at_the_centroid():
    samples = barycentric_samples(6)
    assert samples.shape == (6, 3)
    assert torch.allclose(samples.sum(1), torch.ones(6), atol=1e-6) and bool((samples >= 0).all())
    assert torch.allclose(samples[0], torch.full((3,), 1 / 3))
    assert len({tuple(row.tolist()) for row in samples}) == 6  # distinct points
    assert torch.equal(samples, barycentric_samples(6))  # fixed: a checkpoint rebuilds the same binding


def test_one_rigid_joint_moves_centres_and_rotations_rigidly():
    torch.manual_seed(0)
    means = torch.randn(5, 3)
    quats = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    rotation = axis_angle_to_matrix(torch.tensor([0.3, -0.5, 0.8]))
    transform = torch.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation, torch.tensor([0.1, 0.2, -0.3])
    weights = (torch.zeros(5, 1, dtype=torch.int64), torch.ones(5, 1))
    posed_means, posed_quats = skin_gaussians(means, quats, weights, transform[None])
    assert torch.allclose(posed_means, means @ rotation.T + transform[:3, 3], atol=1e-5)
    assert torch.allclose(quaternion_to_matrix(posed_quats), rotation @ quaternion_to_matrix(quats), atol=1e-5)


def test_gaussians_at_vertices_follow_the_posed_mesh():
    body = procedural_body()
    faces = body.faces
    triangles = torch.arange(faces.shape[0])
    corner = torch.tensor([[1.0, 0.0, 0.0]]).expand(faces.shape[0], 3)  # each triangle's first vertex
    weights = binding_weights(body.dense_weights, faces, triangles, corner, slots=body.n_joints)
    pose = 0.4 * torch.randn(1, body.n_joints, 3, generator=torch.Generator().manual_seed(1))
    transl = torch.tensor([[0.2, -0.1, 0.3]])
    shaped, skinning = body.skinning_transforms(pose=pose, transl=transl)
    means = surface_points(shaped[0], faces, triangles, corner)
    posed, _ = skin_gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).expand(len(triangles), 4), weights, skinning[0])
    expected = body(pose=pose, transl=transl).vertices[0][faces[:, 0]]
    assert torch.allclose(posed, expected, atol=1e-5)


def test_binding_weights_interpolate_and_keep_the_largest():
    dense = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.2, 0.8]])
    faces = torch.tensor([[0, 1, 2]])
    indices, values = binding_weights(dense, faces, torch.tensor([0]), torch.tensor([[0.5, 0.3, 0.2]]), slots=2)
    # interpolated: [0.5, 0.34, 0.16] -> the two largest, renormalised
    assert indices.tolist() == [[0, 1]]
    assert torch.allclose(values, torch.tensor([[0.5 / 0.84, 0.34 / 0.84]]))


def test_polar_factor_is_the_rotation_of_a_stretched_rotation():
    torch.manual_seed(2)
    rotation = axis_angle_to_matrix(torch.randn(4, 3))
    stretch = torch.diag_embed(torch.rand(4, 3) * 0.3 + 0.8)
    assert torch.allclose(orthogonal_polar_factor(rotation @ stretch), rotation, atol=1e-5)
    # A blend of two rotations 40 degrees apart (a joint's skin) has a rotation for polar factor.
    blend = 0.5 * (axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.0])) +
                   axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(40)])))
    factor = orthogonal_polar_factor(blend[None])[0]
    assert torch.allclose(factor, axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(20)])), atol=1e-5)


def test_gradients_match_finite_differences():
    torch.manual_seed(3)
    means = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    quats = torch.nn.functional.normalize(torch.randn(4, 4, dtype=torch.float64), dim=-1).requires_grad_()
    rotations = axis_angle_to_matrix(0.5 * torch.randn(3, 3, dtype=torch.float64))
    transforms = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    transforms[:, :3, :3] = rotations
    transforms[:, :3, 3] = torch.randn(3, 3, dtype=torch.float64)
    transforms.requires_grad_()
    indices = torch.tensor([[0, 1], [1, 2], [2, 0], [0, 2]])
    values = torch.softmax(torch.randn(4, 2, dtype=torch.float64), 1).requires_grad_()

    def posed(m, q, v, t):
        centres, rotations = skin_gaussians(m, q, (indices, v), t)
        return centres, rotations

    assert torch.autograd.gradcheck(posed, (means, quats, values, transforms), atol=1e-6)
