"""Pieces of the implicit-surface fits that the quality bars depend on: marching cubes on
occupancy logits (surface distances at crossing edges), IGR's local sigma and SAL's distance
term, and the coarse-to-fine hash-level schedule."""
import numpy as np
import pytest
import torch

from render3d.errors import ConfigError
from render3d.fields import ImplicitField, field_gradient
from render3d.mesh import mesh_from_volume
from render3d.methods.implicit import _eikonal_pool, _local_sigma, _point_tree, surface_distances

RADIUS = 0.3
CELLS = 24
CELL = 1.0 / CELLS
BOX = torch.tensor([[-0.5] * 3, [0.5] * 3])
HASH = {"n_levels": 4, "n_features_per_level": 2, "log2_hashmap_size": 10, "base_resolution": 4, "per_level_scale": 2.0}


def _saturated_logit(points: torch.Tensor) -> torch.Tensor:
    """A logit of the ball of radius RADIUS, flat inside and steep outside (as trained occupancy
    logits are across thin parts): linear interpolation between grid corners misplaces its zero."""
    r = points.norm(dim=-1)
    return (RADIUS - r) * (2.0 + 30.0 * torch.sigmoid((r - RADIUS) / (0.2 * CELL)))


def _grid_volume(field) -> torch.Tensor:
    axis = torch.linspace(-0.5, 0.5, CELLS + 1)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return field(points).reshape(CELLS + 1, CELLS + 1, CELLS + 1)


def _radius_errors_in_cells(volume: torch.Tensor) -> np.ndarray:
    mesh = mesh_from_volume(volume, BOX, 0.0, inside="above")
    return (np.linalg.norm(mesh.vertices, axis=1) - RADIUS) / CELL


def test_surface_distances_put_marching_cubes_vertices_on_a_saturated_logits_zero():
    raw = _grid_volume(_saturated_logit)
    fixed = surface_distances(raw, BOX, _saturated_logit, chunk=500)
    raw_errors, fixed_errors = _radius_errors_in_cells(raw), _radius_errors_in_cells(fixed)
    assert raw_errors.mean() < -0.1  # the raw logits shrink the ball by a tenth of a cell or more
    assert abs(fixed_errors.mean()) < 0.01 and np.abs(fixed_errors).max() < 0.03
    assert torch.equal(fixed > 0, raw > 0)  # same signs: the same topology
    assert len(fixed_errors) == len(raw_errors)
    changed = fixed != raw
    assert 0 < int(changed.sum()) < raw.numel() // 4  # only the corners of crossing edges


def test_surface_distances_of_a_volume_without_surface_is_unchanged():
    volume = torch.full((5, 6, 7), -2.0)
    assert torch.equal(surface_distances(volume, BOX, lambda p: torch.full((p.shape[0],), -2.0), chunk=8), volume)


def test_local_sigma_is_the_distance_to_the_kth_neighbour():
    axis = torch.arange(5, dtype=torch.float32) * 0.1
    line = torch.stack([axis, torch.zeros(5), torch.zeros(5)], -1)  # points 0.1 apart on a line
    sigma = _local_sigma(_point_tree(line), line, 2)
    torch.testing.assert_close(sigma, torch.tensor([0.2, 0.1, 0.1, 0.1, 0.2]))
    assert _local_sigma(_point_tree(line), line, 50).max() == pytest.approx(0.4)  # capped at the cloud's size
    with pytest.raises(ConfigError, match="local_sigma_neighbour"):
        _local_sigma(_point_tree(line), line, 0)


def test_coarse_to_fine_hides_the_fine_levels_from_the_mlp():
    torch.manual_seed(0)
    field = ImplicitField(encoding="hash", bound=0.5, hidden_dim=8, n_layers=1, hash_config=HASH)
    with torch.no_grad():
        field.hash_grid.params.normal_()
    x = torch.rand(64, 3) - 0.5
    field.set_active_levels(2)
    values, _ = field_gradient(field, x)
    field(x).sum().backward()
    per_level = field.hash_grid.params.grad.reshape(-1, 2)  # [entries, F], levels in order
    fine_start = field.hash_grid.layout.levels[2].offset
    assert per_level[fine_start:].abs().sum() == 0 and per_level[:fine_start].abs().sum() > 0
    with torch.no_grad():
        field.hash_grid.params.reshape(-1, 2)[fine_start:] += 1.0
    torch.testing.assert_close(field(x).detach(), values)  # the fine levels do not matter
    field.set_active_levels(None)
    assert not torch.allclose(field(x).detach(), values)
    field.set_active_levels(4)
    assert field.active_levels is None
    for bad in (0, 5, 1.5):
        with pytest.raises(ConfigError, match="active levels"):
            field.set_active_levels(bad)
    with pytest.raises(ConfigError, match="hash"):
        ImplicitField(encoding="fourier").set_active_levels(1)


def test_eikonal_pool_is_half_near_the_cloud_half_uniform_with_distances_to_the_cloud():
    cloud = torch.nn.functional.normalize(torch.randn(300, 3, generator=torch.Generator().manual_seed(0)), dim=-1) * 0.4
    sigma = torch.full((300,), 0.01)
    pool = _eikonal_pool(_point_tree(cloud), cloud, sigma, 4000, 2000, 0.5, seed=1, with_distances=True)
    assert pool.points.shape == (4000, 3) and pool.n_near == 2000
    nearest = torch.cdist(pool.points.double(), cloud.double()).amin(-1).float()
    torch.testing.assert_close(pool.distances, nearest, atol=1e-6, rtol=0)
    assert nearest[:2000].max() < 6 * 0.01  # Gaussian offsets of sigma from cloud points
    uniform = pool.points[2000:]
    assert nearest[2000:].median() > 0.1 and uniform.abs().max() <= 0.5 and (uniform.abs().amax(0) > 0.49).all()
    # sample: the first half are near points of the pool, unmoved; the uniform ones move by up to
    # half their spacing, so that a field cannot fit a fixed set of them alone; the slack is how far
    # each moved (the distance is 1-Lipschitz)
    assert pool.jitter == pytest.approx(0.5 * 1.0 / 2000 ** (1 / 3))
    points, distances, slack = pool.sample(2000)
    assert (points[:1000, None] == pool.points[None, :2000]).all(-1).any(-1).all()
    assert (torch.cdist(points[1000:].double(), pool.points[2000:].double()).amin(-1) <= slack[1000:] + 1e-6).all()
    nearest = torch.cdist(points.double(), cloud.double()).amin(-1).float()
    assert (slack[:1000] == 0).all() and (slack[1000:] > 0).all() and (slack <= pool.jitter * 3**0.5 + 1e-6).all()
    assert ((nearest - distances).abs() <= slack + 1e-5).all() and points.abs().max() <= 0.5
    assert _eikonal_pool(_point_tree(cloud), cloud, sigma, 10, 5, 0.5, seed=1, with_distances=False).distances is None


def test_igr_on_a_cloud_uses_local_sigma_the_distance_term_and_the_level_schedule(tmp_path):
    import trimesh

    import render3d

    points, _ = trimesh.sample.sample_surface(trimesh.creation.icosphere(subdivisions=3, radius=1.0), 400, seed=0)
    path = tmp_path / "cloud.npy"
    np.save(path, points)
    config = {"encoding": "hash", "hash_levels": 4, "log2_hashmap_size": 10, "base_resolution": 4, "max_resolution": 32,
              "hidden_dim": 16, "batch_size": 64, "local_sigma_neighbour": 5, "distance_weight": 1.0,
              "coarse_to_fine": 0.5, "coarse_levels": 2, "n_samples": 20_000}
    scene = render3d.Scene.fit(path, method="sdf", steps=2, config=config, progress=False, device="cpu")
    method = scene.method
    pool = method.eikonal_pool  # uniform_fraction of the samples uniform in the cube
    assert pool.points.shape == (20_000, 3) and pool.distances.shape == (20_000,) and pool.n_near == 18_000
    _, metrics = method._igr_loss()
    assert set(metrics) == {"surface", "eikonal", "distance"} and all(np.isfinite(list(metrics.values())))
    method.config["steps"] = 100  # ramp over 50 steps: 2 levels, then one more every 50 / 3 steps
    assert [method._active_levels(step) for step in (0, 16, 17, 33, 34, 99)] == [2, 2, 3, 3, 4, 4]
