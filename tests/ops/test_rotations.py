"""Rotation conversions: round trips, known values, safe gradients at zero angle, gradcheck."""
import math

import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_multiply,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rigid_transform,
    rotation_6d_to_matrix,
)


def _axis_angles(n: int, seed: int = 0) -> torch.Tensor:
    """Random axis-angles with angles in (0, pi), plus zero and tiny angles."""
    generator = torch.Generator().manual_seed(seed)
    axes = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=torch.float64), dim=-1)
    angles = torch.rand(n, 1, generator=generator, dtype=torch.float64) * (math.pi - 0.01)
    angles[:3, 0] = torch.tensor([0.0, 1e-9, 1e-4], dtype=torch.float64)
    return axes * angles


def test_rodrigues_matches_a_hand_computed_rotation():
    rotation = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(rotation, expected, atol=1e-12, rtol=0)


def test_matrices_are_rotations():
    rotation = axis_angle_to_matrix(_axis_angles(50))
    eye = torch.eye(3, dtype=torch.float64).expand_as(rotation)
    torch.testing.assert_close(rotation @ rotation.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(50, dtype=torch.float64), atol=1e-12, rtol=0)


def test_round_trips():
    axis_angle = _axis_angles(200)
    matrix = axis_angle_to_matrix(axis_angle)
    torch.testing.assert_close(matrix_to_axis_angle(matrix), axis_angle, atol=1e-9, rtol=0)
    quaternion = axis_angle_to_quaternion(axis_angle)
    torch.testing.assert_close(quaternion_to_matrix(quaternion), matrix, atol=1e-12, rtol=0)
    torch.testing.assert_close(matrix_to_quaternion(matrix), quaternion, atol=1e-9, rtol=0)
    torch.testing.assert_close(quaternion_to_axis_angle(quaternion), axis_angle, atol=1e-9, rtol=0)
    torch.testing.assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(matrix)), matrix, atol=1e-12, rtol=0)


def test_quaternion_sign_and_scale_do_not_matter():
    quaternion = axis_angle_to_quaternion(_axis_angles(20))
    torch.testing.assert_close(quaternion_to_matrix(-3 * quaternion), quaternion_to_matrix(quaternion))
    torch.testing.assert_close(quaternion_to_axis_angle(-quaternion), quaternion_to_axis_angle(quaternion))


def test_near_pi_matrix_to_quaternion_is_stable():
    axis_angle = torch.tensor([[math.pi - 1e-7, 0.0, 0.0], [0.0, 0.0, math.pi]], dtype=torch.float64)
    recovered = quaternion_to_matrix(matrix_to_quaternion(axis_angle_to_matrix(axis_angle)))
    torch.testing.assert_close(recovered, axis_angle_to_matrix(axis_angle), atol=1e-9, rtol=0)


def test_six_d_orthonormalises_any_input():
    rotation = rotation_6d_to_matrix(torch.randn(30, 6, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand_as(rotation)
    torch.testing.assert_close(rotation.transpose(-1, -2) @ rotation, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(30, dtype=torch.float64), atol=1e-12, rtol=0)


def test_gradients_are_finite_and_exact_at_zero_angle():
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    for convert in (axis_angle_to_matrix, axis_angle_to_quaternion):
        (jacobian,) = torch.autograd.functional.jacobian(convert, (zero,))
        assert torch.isfinite(jacobian).all()
    # dR/d(aa_i) at zero is the skew matrix of e_i.
    jacobian = torch.autograd.functional.jacobian(axis_angle_to_matrix, zero)
    expected_x = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(jacobian[..., 0], expected_x)
    identity_quaternion = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    jacobian = torch.autograd.functional.jacobian(quaternion_to_axis_angle, identity_quaternion)
    torch.testing.assert_close(jacobian[:, 1:], 2 * torch.eye(3, dtype=torch.float64))


@pytest.mark.parametrize("convert, make", [
    (axis_angle_to_matrix, lambda: _axis_angles(6)),
    (axis_angle_to_quaternion, lambda: _axis_angles(6)),
    (quaternion_to_axis_angle, lambda: axis_angle_to_quaternion(_axis_angles(6))),
    (quaternion_to_matrix, lambda: torch.randn(6, 4, dtype=torch.float64)),
    (matrix_to_quaternion, lambda: axis_angle_to_matrix(_axis_angles(6)[3:])),
    (rotation_6d_to_matrix, lambda: torch.randn(6, 6, dtype=torch.float64)),
])
def test_gradcheck(convert, make):
    inputs = make().detach().requires_grad_(True)
    assert torch.autograd.gradcheck(convert, (inputs,), eps=1e-7, atol=1e-6)


def test_rigid_transform_layout():
    rotation = axis_angle_to_matrix(_axis_angles(4))
    transform = rigid_transform(rotation, torch.ones(3, dtype=torch.float64))
    assert transform.shape == (4, 4, 4)
    torch.testing.assert_close(transform[:, :3, :3], rotation)
    torch.testing.assert_close(transform[:, 3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64).expand(4, 4))
    assert torch.equal(transform[:, :3, 3], torch.ones(4, 3, dtype=torch.float64))


def test_bad_shapes_are_named():
    with pytest.raises(ConfigError, match="axis_angle"):
        axis_angle_to_matrix(torch.zeros(4, 2))
    with pytest.raises(ConfigError, match="rotation_6d"):
        rotation_6d_to_matrix(torch.zeros(5))


def test_rigid_transform_bad_shapes_are_named():
    with pytest.raises(ConfigError, match="rigid_transform: rotation"):
        rigid_transform(torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ConfigError, match="rigid_transform: translation"):
        rigid_transform(torch.zeros(3, 3), torch.zeros(4))
    with pytest.raises(ConfigError, match="do not broadcast"):
        rigid_transform(torch.zeros(2, 3, 3), torch.zeros(5, 3))


def test_quaternion_product_composes_rotations():
    first, second = axis_angle_to_quaternion(_axis_angles(20, seed=1)), axis_angle_to_quaternion(_axis_angles(20, seed=2))
    product = quaternion_multiply(first, 2.0 * second)
    torch.testing.assert_close(quaternion_to_matrix(product), quaternion_to_matrix(first) @ quaternion_to_matrix(second),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(product.norm(dim=-1), torch.full((20,), 2.0, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ConfigError, match="quaternion_multiply: second must have shape"):
        quaternion_multiply(first, torch.zeros(20, 3))
