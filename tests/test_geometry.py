"""render3d.geometry: winding-number labels and signed distances against analytic shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from render3d.errors import ConfigError
from render3d.geometry import inside, sample_surface, signed_distance, winding_numbers


def _uniform(count: int, half: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-half, half, (count, 3))


def test_winding_numbers_label_a_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=3)  # tessellation error < 0.005
    points = _uniform(20_000, 1.5)
    radius = np.linalg.norm(points, axis=1)
    clear = np.abs(radius - 1.0) > 0.01
    winding = winding_numbers(sphere, points)
    assert winding.shape == (20_000,) and winding.dtype == np.float64
    np.testing.assert_allclose(winding[clear], (radius < 1.0)[clear].astype(float), atol=0.02)
    np.testing.assert_array_equal(inside(sphere, points)[clear], (radius < 1.0)[clear])


def test_winding_numbers_label_a_box_and_flipped_orientation():
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    points = _uniform(20_000, 2.0, seed=1)
    margin = np.abs(points) - np.array([0.5, 1.0, 1.5])
    truth = np.all(margin < 0, axis=1)
    clear = np.min(np.abs(margin), axis=1) > 1e-3
    np.testing.assert_array_equal(inside(box, points)[clear], truth[clear])
    flipped = trimesh.Trimesh(box.vertices, box.faces[:, ::-1], process=False)
    assert np.all(winding_numbers(flipped, points[clear & truth]) < -0.98)
    np.testing.assert_array_equal(inside(flipped, points)[clear], truth[clear])


def test_a_hole_blurs_the_labels_only_near_the_hole():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    open_sphere = trimesh.Trimesh(sphere.vertices, sphere.faces[sphere.triangles_center[:, 2] < 0.9])
    assert not open_sphere.is_watertight  # the cap z > 0.9 (radius ~0.44 around (0, 0, 1)) is gone
    points = _uniform(20_000, 1.5, seed=2)
    winding = winding_numbers(open_sphere, points)
    to_hole = np.linalg.norm(points - np.array([0.0, 0.0, 1.0]), axis=1)
    undecided = (winding > 0.2) & (winding < 0.8)
    assert undecided.sum() > 20 and to_hole[undecided].max() < 0.6
    radius = np.linalg.norm(points, axis=1)
    away = (to_hole > 1.0) & (np.abs(radius - 1.0) > 0.01)
    np.testing.assert_array_equal(inside(open_sphere, points)[away], (radius < 1.0)[away])


def test_signed_distance_of_a_sphere_mesh_matches_the_analytic_distance():
    sphere = trimesh.creation.icosphere(subdivisions=4)  # vertices on the unit sphere, sagitta ~1e-3
    points = _uniform(5_000, 1.5, seed=3)
    distance = signed_distance(sphere, points)
    analytic = np.linalg.norm(points, axis=1) - 1.0
    np.testing.assert_allclose(distance, analytic, atol=2e-3)
    clear = np.abs(analytic) > 2e-3
    np.testing.assert_array_equal(np.sign(distance[clear]), np.sign(analytic[clear]))


def test_tensors_in_give_tensors_out():
    box = trimesh.creation.box()
    points = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.75, 0.0]])
    winding = winding_numbers(box, points)
    assert isinstance(winding, torch.Tensor) and winding.dtype == torch.float32
    assert inside(box, points).tolist() == [True, False, False]
    torch.testing.assert_close(signed_distance(box, points), torch.tensor([-0.5, 1.5, 0.25]))
    assert winding_numbers(box, torch.zeros(0, 3)).shape == (0,)


def test_bad_points_and_meshes_are_refused():
    box = trimesh.creation.box()
    with pytest.raises(ConfigError, match="points"):
        winding_numbers(box, np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="mesh"):
        signed_distance(trimesh.Trimesh(), np.zeros((4, 3)))


def test_sample_surface_is_area_uniform_and_seeded():
    box = trimesh.creation.box(extents=(1.0, 1.0, 4.0))  # the four long sides hold 16/18 of the area
    points, normals = sample_surface(box, 9_000, seed=5)
    assert points.shape == normals.shape == (9_000, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0)
    on_long_sides = np.abs(normals[:, 2]) < 0.5
    assert abs(on_long_sides.mean() - 16 / 18) < 0.02
    again, _ = sample_surface(box, 9_000, seed=5)
    np.testing.assert_array_equal(points, again)
