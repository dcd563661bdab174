"""Fitting a body to keypoints in several calibrated views (render3d.body.multiview_fitting)."""
import math

import pytest
import torch

from render3d.body import procedural_body
from render3d.body.fitting import Keypoints2D
from render3d.body.multiview_fitting import fit_body_views, triangulate
from render3d.body.render import BodyScene
from render3d.camera_paths import orbit
from render3d.cameras import intrinsics_from_fov
from render3d.errors import DataError


def _cameras(count: int = 6):
    K = intrinsics_from_fov(math.radians(45), 128, 128)
    return orbit(torch.tensor([0.0, 0.9, 0.0]), 3.5, count, K, 128, 128, elevation_deg=15, up=(0.0, 1.0, 0.0))


def _views(body, pose, transl, cameras, noise=0.0, confidence=1.0):
    with torch.no_grad():
        points, _ = body.keypoints(body(pose=pose, transl=transl), "coco17")
    pixels = cameras.project(points[0])[0]
    pixels = pixels + noise * torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
    return [Keypoints2D(pixels[v], torch.full((pixels.shape[1],), confidence), "coco17")
            for v in range(len(cameras))], points[0]


def test_triangulation_recovers_a_point():
    cameras = _cameras(4)
    point = torch.tensor([0.1, 1.2, -0.2])
    pixels = cameras.project(point[None])[0][:, 0]
    assert torch.allclose(triangulate(pixels, torch.ones(4), cameras), point, atol=1e-4)
    assert triangulate(pixels, torch.tensor([1.0, 0.0, 0.0, 0.1]), cameras) is None


def test_fit_recovers_a_turned_bent_body():
    body = procedural_body()
    names = body.joint_names
    pose = torch.zeros(1, body.n_joints, 3)
    pose[0, 0] = torch.tensor([0.0, 2.0, 0.0])  # turned about 115 degrees: the start must find the facing
    pose[0, names.index("left_elbow")] = torch.tensor([0.0, 0.0, 1.0])
    pose[0, names.index("right_knee")] = torch.tensor([0.8, 0.0, 0.0])
    transl = torch.tensor([[0.3, 0.05, -0.2]])
    cameras = _cameras()
    views, truth = _views(body, pose, transl, cameras, noise=0.5)
    fit = fit_body_views(body, views, cameras)
    with torch.no_grad():
        fitted, _ = body.keypoints(body(fit.betas, fit.pose, fit.transl), "coco17")
    assert fit.reprojection_error_px < 2.0
    assert float((fitted[0] - truth).norm(dim=-1).mean()) < 0.03  # metres


def test_fit_needs_the_torso_in_two_views():
    body = procedural_body()
    cameras = _cameras(3)
    views, _ = _views(body, torch.zeros(1, body.n_joints, 3), torch.zeros(1, 3), cameras)
    for view in views[1:]:
        view.confidence = torch.zeros_like(view.confidence)
    with pytest.raises(DataError, match="fewer than two views"):
        fit_body_views(body, views, cameras)


def _bent_body_views(noise: float):
    """The procedural body with bent arms and a leg, six views of its keypoints with ``noise``
    pixels, its masks ``[6, 128, 128]`` and its true vertices."""
    body = procedural_body()
    names = body.joint_names
    pose = torch.zeros(1, body.n_joints, 3)
    pose[0, 0] = torch.tensor([0.0, 0.6, 0.0])
    pose[0, names.index("left_shoulder")] = torch.tensor([0.0, 0.0, 0.9])
    pose[0, names.index("right_elbow")] = torch.tensor([0.0, 1.2, 0.0])
    pose[0, names.index("left_knee")] = torch.tensor([0.7, 0.0, 0.0])
    transl = torch.tensor([[0.1, 0.0, 0.1]])
    cameras = _cameras()
    views, _ = _views(body, pose, transl, cameras, noise=noise)
    masks = BodyScene(body, pose=pose, transl=transl).render(cameras)["alpha"]
    with torch.no_grad():
        truth = body(pose=pose, transl=transl).vertices[0]
    return body, views, cameras, masks, truth


def _vertex_error(body, fit, truth) -> float:
    with torch.no_grad():
        return float((body(fit.betas, fit.pose, fit.transl).vertices[0] - truth).norm(dim=-1).mean())


def test_masks_bring_a_fit_to_noisy_keypoints_closer():
    body, views, cameras, masks, truth = _bent_body_views(noise=4.0)
    keypoints_only = _vertex_error(body, fit_body_views(body, views, cameras), truth)
    with_masks = _vertex_error(body, fit_body_views(body, views, cameras, masks=masks), truth)
    assert with_masks < 0.8 * keypoints_only


def test_masks_must_match_the_cameras():
    body, views, cameras, masks, _ = _bent_body_views(noise=0.0)
    with pytest.raises(DataError, match=r"masks: expected \[6, 128, 128\]"):
        fit_body_views(body, views, cameras, masks=masks[:, :64])


def test_views_with_empty_masks_are_left_out_of_the_silhouettes():
    body, views, cameras, masks, truth = _bent_body_views(noise=0.0)
    masks = masks.clone()
    masks[2] = 0.0  # the person hidden in one view: its keypoints still count
    assert _vertex_error(body, fit_body_views(body, views, cameras, masks=masks), truth) < 0.03
    assert fit_body_views(body, views, cameras, masks=torch.zeros_like(masks)).reprojection_error_px < 2.0
