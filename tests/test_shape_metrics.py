"""shape_metrics: Occupancy Networks' IoU / Chamfer-L1 / normal consistency / F-score on analytic cases."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from render3d.errors import ConfigError
from render3d.metrics import shape_metrics


def test_a_mesh_against_itself_is_perfect():
    box = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    box.apply_translation((5.0, 0.0, -1.0))
    metrics = shape_metrics(box, box, n_points=20_000)
    assert metrics["iou"] == 1.0
    assert metrics["chamfer_l1"] == 0.0 and metrics["chamfer_l1_fraction"] == 0.0
    assert metrics["fscore@1%"] == metrics["precision@1%"] == metrics["recall@1%"] == 1.0
    assert metrics["normal_consistency"] == pytest.approx(1.0)
    assert metrics["bbox_diagonal"] == pytest.approx(np.sqrt(1 + 4 + 0.25))
    assert metrics["fscore_threshold"] == pytest.approx(0.01 * metrics["bbox_diagonal"])


def test_a_sphere_against_a_slightly_larger_sphere():
    inner, outer = 0.95, 1.0
    small = trimesh.creation.icosphere(subdivisions=4, radius=inner)
    large = trimesh.creation.icosphere(subdivisions=4, radius=outer)  # a scaled copy: volumes scale by r^3
    metrics = shape_metrics(small, large, n_points=100_000, seed=1)
    assert metrics["iou"] == pytest.approx((inner / outer) ** 3, abs=0.01)
    # nearest-sample distances add ~sqrt(gap^2 + spacing^2) - gap ~ 3e-4 to the radius gap
    assert metrics["chamfer_l1"] == pytest.approx(outer - inner, abs=2e-3)
    assert metrics["chamfer_l1_fraction"] == pytest.approx(metrics["chamfer_l1"] / (2 * np.sqrt(3) * outer), rel=1e-3)
    assert metrics["normal_consistency"] > 0.99
    assert metrics["fscore@1%"] == 0.0  # 0.05 apart, threshold 1% of the diagonal ~0.035
    loose = shape_metrics(small, large, n_points=20_000, fscore_fraction=0.02)
    assert loose["fscore@2%"] == 1.0


def test_an_open_prediction_still_gets_a_volume_from_winding_numbers():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    open_sphere = trimesh.Trimesh(sphere.vertices, sphere.faces[sphere.triangles_center[:, 2] < 0.95])
    assert shape_metrics(open_sphere, sphere, n_points=20_000)["iou"] > 0.99


def test_an_empty_prediction_scores_zero_and_a_bad_ground_truth_is_refused():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    empty = shape_metrics(trimesh.Trimesh(), sphere, n_points=2_000)
    assert empty["iou"] == 0.0 and empty["fscore@1%"] == 0.0 and empty["chamfer_l1_fraction"] == 1.0
    with pytest.raises(ConfigError, match="gt_mesh"):
        shape_metrics(sphere, trimesh.Trimesh(), n_points=2_000)
    with pytest.raises(ConfigError, match="fscore_fraction"):
        shape_metrics(sphere, sphere, fscore_fraction=1.5)
