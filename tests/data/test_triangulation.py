"""Points triangulated from known cameras (render3d.data.triangulation) and 3dgs's use of them
for captures that come without structure-from-motion points."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from render3d.data import load_dataset
from render3d.data.triangulation import neighbour_pairs, triangulate
from render3d.errors import DataError
from render3d.methods._captures import MIN_TRIANGULATED_POINTS, with_triangulated_points
from render3d.methods.gaussians import GaussianSplatting

ASSETS = Path(__file__).resolve().parents[2] / "assets"


@pytest.fixture(scope="module")
def capture_without_points():
    """The demo's COLMAP twin (known poses, train split) with its points taken away."""
    data = load_dataset(ASSETS / "demo_colmap", split="train")
    assert data.points is not None and data.points.shape[0] > 0
    return dataclasses.replace(data, points=None, point_colors=None)


def test_neighbour_pairs_pair_each_camera_with_its_nearest():
    centers = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2.5, 0, 0], [4.5, 0, 0], [7, 0, 0]])
    assert neighbour_pairs(centers, neighbours=1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert neighbour_pairs(centers, neighbours=2) == [(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)]
    all_pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    assert neighbour_pairs(centers, neighbours=10) == all_pairs


def test_triangulated_points_lie_on_the_object(capture_without_points):
    points, colors = triangulate(capture_without_points, progress=False)
    assert points.dtype == colors.dtype == torch.float32
    assert points.shape == colors.shape and points.shape[0] > 300
    mesh = trimesh.load(ASSETS / "demo" / "mesh.ply", force="mesh")
    surface, _ = trimesh.sample.sample_surface(mesh, 200_000, seed=0)
    distance, _ = cKDTree(surface).query(points.numpy())
    # A pixel spans about 0.018 world units at the object (as the twin's own points).
    assert np.median(distance) < 0.015
    assert np.mean(distance < 0.05) > 0.8
    # Colours come from the images: the object is not white like the background around it.
    assert 0.0 <= float(colors.min()) and float(colors.max()) <= 1.0
    assert float(colors.mean()) < 0.9 and float(colors.std()) > 0.02


def test_triangulation_needs_two_loaded_images(capture_without_points):
    one_image = dataclasses.replace(capture_without_points, images=capture_without_points.images[:1],
                                    cameras=capture_without_points.cameras[:1],
                                    image_names=capture_without_points.image_names[:1])
    for data in (one_image, dataclasses.replace(capture_without_points, images=None)):
        with pytest.raises(DataError, match="triangulating points needs at least 2 loaded images"):
            triangulate(data, progress=False)


def test_3dgs_starts_a_capture_without_points_from_triangulated_ones(capture_without_points, capsys):
    completed = GaussianSplatting.complete_training_data(capture_without_points, None, progress=True)
    assert completed.points.shape[0] >= MIN_TRIANGULATED_POINTS
    assert completed.point_colors.shape == completed.points.shape
    assert f"starting from {completed.points.shape[0]} points triangulated" in capsys.readouterr().out
    # The data defaults see points now: no random cloud beyond the cameras' box.
    assert "init_extent" not in GaussianSplatting.data_defaults(completed, "balanced")
    # A user's random initialisation is left alone, and so is a capture with points.
    assert GaussianSplatting.complete_training_data(capture_without_points, {"init": "random"},
                                                    progress=False).points is None
    assert GaussianSplatting.complete_training_data(completed, None, progress=False) is completed


def test_without_pycolmap_a_capture_keeps_its_random_start_with_a_notice(capture_without_points, capsys,
                                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # makes `import pycolmap` raise ImportError
    assert with_triangulated_points(capture_without_points, progress=True) is capture_without_points
    out = capsys.readouterr().out
    assert "needs pycolmap: pip install 'render3d[sfm]'; starting from a random cloud" in out
    assert len(out.strip().splitlines()) == 1
