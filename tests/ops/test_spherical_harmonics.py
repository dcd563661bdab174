"""Spherical-harmonics basis: orthonormal on the sphere, known low-order values, gradients."""
import math

import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.spherical_harmonics import num_sh_bases, spherical_harmonics_basis


def _fibonacci_sphere(n: int) -> torch.Tensor:
    """``[n,3]`` float64 near-uniform unit vectors (deterministic quadrature points)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)


def test_basis_is_orthonormal_on_the_sphere():
    dirs = _fibonacci_sphere(200_000)
    basis = spherical_harmonics_basis(dirs, 3)
    gram = basis.T @ basis * (4 * math.pi / dirs.shape[0])
    # Quadrature error of 2e5 Fibonacci points on degree <= 6 polynomials is below 1e-4.
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=1e-4, rtol=0)


def test_low_order_values_follow_the_3dgs_convention():
    basis = spherical_harmonics_basis(torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), 1)
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    torch.testing.assert_close(basis, torch.tensor([[c0, 0.0, c1, 0.0], [c0, 0.0, 0.0, -c1]]))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_shapes_and_gradcheck(degree):
    dirs = torch.nn.functional.normalize(torch.randn(2, 5, 3, dtype=torch.float64), dim=-1)
    assert spherical_harmonics_basis(dirs, degree).shape == (2, 5, num_sh_bases(degree))
    dirs.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: spherical_harmonics_basis(d, degree), (dirs,))


def test_bad_arguments():
    with pytest.raises(ConfigError, match="degree must be"):
        spherical_harmonics_basis(torch.zeros(1, 3), 4)
    with pytest.raises(ConfigError, match="dirs must have shape"):
        spherical_harmonics_basis(torch.zeros(1, 2), 1)
