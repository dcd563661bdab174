"""Fitting to 2D keypoints: synthetic keypoints projected from a known posed procedural body
(2 px noise, 640x480) are recovered; the data term, priors and initial translation behave."""
import math

import pytest
import torch

from render3d.body import procedural_body
from render3d.body.fitting import (
    GMMPosePrior,
    Keypoints2D,
    PinholeCamera,
    fit_body,
    gmof,
    initial_translation,
    procrustes_error,
)
from render3d.errors import DataError

CAMERA = PinholeCamera(torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), 640, 480)


@pytest.fixture(scope="module")
def body():
    return procedural_body()


def synthetic(body, seed: int = 3, scale: float = 0.2, noise: float = 2.0):
    """A known pose (upright, facing the camera, turned 0.3 rad), its 3D keypoints and its
    projected 2D keypoints with ``noise`` px of Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    pose = torch.zeros(1, body.n_joints, 3)
    pose[0, 0] = torch.tensor([math.pi, 0.3, 0.0])
    pose[0, 1:] = scale * torch.randn(body.n_joints - 1, 3, generator=generator)
    transl = torch.tensor([[0.1, -0.9, 4.0]])  # pelvis (y = 0.95 at rest, flipped) near the image centre
    with torch.no_grad():
        points, _ = body.keypoints(body(pose=pose, transl=transl), "coco17")
    uv = CAMERA.project(points[0]) + noise * torch.randn(17, 2, generator=generator)
    return Keypoints2D(uv, torch.ones(17), "coco17"), points[0]


@pytest.mark.slow  # about 10 s on two shared CPU cores
def test_fit_recovers_a_known_pose(body):
    keypoints, truth = synthetic(body)
    result = fit_body(body, keypoints, CAMERA, iterations=10)
    assert result.reprojection_error_px < 3.0
    before = procrustes_error(body.keypoints(body(), "coco17")[0][0], truth)
    after = procrustes_error(result.keypoints_3d[0], truth)
    # Within 40 mm after alignment and well below the rest pose's error (what remains is the
    # monocular depth ambiguity of the limbs).
    assert after < 0.04 and after < 0.75 * before


def test_initial_translation_by_similar_triangles(body):
    keypoints, _ = synthetic(body, scale=0.0, noise=0.0)
    transl = initial_translation(body, keypoints, CAMERA, torch.tensor([math.pi, 0.3, 0.0]))
    # The body stands 4 m away; turning it by 0.3 rad barely changes its torso's height.
    assert abs(float(transl[0, 2]) - 4.0) < 0.1


def test_gmof_is_quadratic_then_saturates():
    residual = torch.tensor([0.1, 1e4])
    values = gmof(residual, sigma=100.0)
    assert float(values[0]) == pytest.approx(0.01, rel=1e-5)
    assert float(values[1]) == pytest.approx(1e4, rel=1e-3)


def test_procrustes_ignores_similarity_transforms():
    points = torch.randn(10, 3, dtype=torch.float64)
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
    rotation = rotation * torch.sign(torch.linalg.det(rotation))
    assert procrustes_error(2.5 * points @ rotation.T + 1.0, points) < 1e-9


def test_gmm_prior_prefers_its_mean():
    prior = GMMPosePrior(torch.zeros(1, 6), torch.eye(6)[None], torch.ones(1))
    assert prior(torch.zeros(1, 2, 3)) < prior(torch.ones(1, 2, 3))


def test_bad_keypoints(body):
    keypoints, _ = synthetic(body)
    keypoints.points[3, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        fit_body(body, keypoints, CAMERA)
    keypoints, _ = synthetic(body)
    keypoints.confidence[5:7] = 0  # no shoulders
    with pytest.raises(DataError, match="shoulders"):
        fit_body(body, keypoints, CAMERA)
