"""MISE gives the dense grid's mesh while evaluating far fewer points."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from render3d.errors import ConfigError
from render3d.mesh import mesh_from_volume, sample_field
from render3d.mise import extract_mesh_mise, mise_volume

BOX = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


def sphere(points):
    return 0.6 - points.norm(dim=-1)


def two_spheres(points):
    first = 0.35 - (points - torch.tensor([0.4, 0.0, 0.0])).norm(dim=-1)
    second = 0.3 - (points + torch.tensor([0.45, 0.1, 0.0])).norm(dim=-1)
    return torch.maximum(first, second)


def torus(points):
    ring = torch.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2) - 0.5
    return 0.15 - torch.sqrt(ring**2 + points[:, 2] ** 2)


def small_mlp():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Softplus(beta=10), torch.nn.Linear(32, 1))
    with torch.no_grad():  # a wobbly blob: 0.5 - |x| plus a small random MLP
        mlp[2].weight.mul_(0.05)
    return lambda points: 0.5 - points.norm(dim=-1) + mlp(points).squeeze(1)


def assert_same_mesh(mise_mesh, dense_mesh):
    assert len(dense_mesh.faces) > 500
    assert mise_mesh.vertices.shape == dense_mesh.vertices.shape
    np.testing.assert_array_equal(mise_mesh.faces, dense_mesh.faces)
    np.testing.assert_allclose(mise_mesh.vertices, dense_mesh.vertices, rtol=0, atol=1e-6)


@pytest.mark.parametrize("field", [sphere, two_spheres, torus, small_mlp()], ids=["sphere", "two_spheres", "torus", "mlp"])
def test_mise_mesh_equals_the_dense_mesh(field):
    volume, n_evaluated = mise_volume(field, BOX, 64, 0.0, initial_resolution=8)
    dense = sample_field(field, BOX, 65)
    assert volume.shape == (65, 65, 65) and volume.dtype == torch.float32
    assert_same_mesh(mesh_from_volume(volume, BOX, 0.0), mesh_from_volume(dense, BOX, 0.0))
    assert n_evaluated < 0.3 * 65**3
    assert torch.equal(volume > 0.0, dense > 0.0)  # interpolated samples are on the correct side


@pytest.mark.slow
def test_the_evaluated_fraction_shrinks_with_resolution():
    volume, n_evaluated = mise_volume(two_spheres, BOX, 128, 0.0, initial_resolution=16)
    dense = sample_field(two_spheres, BOX, 129)
    assert_same_mesh(mesh_from_volume(volume, BOX, 0.0), mesh_from_volume(dense, BOX, 0.0))
    assert n_evaluated < 0.08 * 129**3


def test_each_point_is_evaluated_once_and_evaluated_values_are_exact():
    seen = []

    def field(points):
        assert not torch.is_grad_enabled() and points.shape[0] <= 1000
        seen.append(points.clone())
        return torus(points)

    volume, n_evaluated = mise_volume(field, BOX, 64, 0.0, initial_resolution=8, chunk_size=1000)
    points = torch.cat(seen)
    assert len(points) == n_evaluated == len(torch.unique(points, dim=0))
    index = torch.round((points + 1.0) * 32.0).long()
    dense = sample_field(torus, BOX, 65)
    np.testing.assert_array_equal(volume[tuple(index.T)].numpy(), dense[tuple(index.T)].numpy())


def test_signed_distance_convention_and_mesh_helper():
    def sdf(points):
        return points.norm(dim=-1) - 0.6

    mesh = extract_mesh_mise(sdf, BOX, 64, 0.0, initial_resolution=16, inside="below")
    dense = mesh_from_volume(sample_field(sdf, BOX, 65), BOX, 0.0, inside="below")
    assert_same_mesh(mesh, dense)
    assert mesh.is_watertight and mesh.volume > 0


def test_initial_resolution_equal_to_resolution_is_the_dense_grid():
    volume, n_evaluated = mise_volume(sphere, BOX, 16, 0.0, initial_resolution=16)
    assert n_evaluated == 17**3
    torch.testing.assert_close(volume, sample_field(sphere, BOX, 17), rtol=0, atol=0)


@pytest.mark.parametrize("resolution", [48, 100, 8, 64.0, True])
def test_a_resolution_that_is_not_a_power_of_two_multiple_is_refused(resolution):
    with pytest.raises(ConfigError, match="resolution"):
        mise_volume(sphere, BOX, resolution, 0.0, initial_resolution=16)


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="initial_resolution"):
        mise_volume(sphere, BOX, 64, 0.0, initial_resolution=0)
    with pytest.raises(ConfigError, match="inside"):
        mise_volume(sphere, BOX, 64, 0.0, inside="outside")
    with pytest.raises(ConfigError, match="bbox"):
        mise_volume(sphere, [[0, 0, 0], [0, 1, 1]], 64, 0.0)
    with pytest.raises(ConfigError, match="field must map"):
        mise_volume(lambda p: p, BOX, 32, 0.0, initial_resolution=16)
    with pytest.raises(ConfigError, match="non-finite"):
        mise_volume(lambda p: p[:, 0] / 0.0, BOX, 32, 0.0, initial_resolution=16)
