"""Camera pose refinement for 3dgs: moving the Gaussians by ``w2c^-1 D w2c`` renders what the
corrected camera ``D w2c`` sees, the photometric loss brings a perturbed camera back, and off
holds nothing."""
import dataclasses
import math

import pytest
import torch

from render3d.camera_paths import look_at
from render3d.cameras import Cameras, intrinsics_from_fov
from render3d.methods._pose_refinement import PoseRefinement
from render3d.ops.gaussian_rendering import render_gaussians
from render3d.ops.rotations import axis_angle_to_quaternion, quaternion_to_matrix


def _gaussians(n: int = 300, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "means": (torch.rand(n, 3, generator=generator) - 0.5) * 1.6,
        "quats": axis_angle_to_quaternion(torch.randn(n, 3, generator=generator)),
        "log_scales": torch.full((n, 3), math.log(0.06)) + 0.3 * torch.randn(n, 3, generator=generator),
        "opacities": torch.full((n,), 0.8),
        "colors": torch.rand(n, 3, generator=generator),
    }


def _camera(size: int = 40) -> Cameras:
    K = intrinsics_from_fov(math.radians(50), size, size)[None]
    c2w = look_at(torch.tensor([[0.4, -2.8, 1.2]]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    return Cameras(K=K, c2w=c2w, width=size, height=size)


def _render(gaussians: dict, camera: Cameras, means=None, quats=None) -> torch.Tensor:
    rgb, _, _ = render_gaussians(
        gaussians["means"] if means is None else means, gaussians["quats"] if quats is None else quats,
        gaussians["log_scales"], gaussians["opacities"], gaussians["colors"], camera.w2c, camera.K,
        camera.width, camera.height, sh_degree=None, backgrounds=torch.ones(3))
    return rgb[0]


def _refinement(correction: list[float], scale: float = 2.0) -> PoseRefinement:
    refinement = PoseRefinement(True, lr=1e-2, lr_final=1e-2)
    refinement.reset(2, scale, torch.device("cpu"))
    with torch.no_grad():
        refinement.corrections[1] = torch.tensor(correction)
    return refinement


def test_moved_gaussians_show_the_corrected_camera():
    gaussians, camera = _gaussians(), _camera()
    refinement = _refinement([0.02, -0.01, 0.03, 0.03, -0.02, 0.04])
    with torch.no_grad():
        means, quats = refinement.move_gaussians(gaussians["means"], gaussians["quats"], 1, camera.w2c[0])
        corrected = dataclasses.replace(camera, c2w=torch.linalg.inv(refinement.refined_w2c(camera.w2c.expand(2, 4, 4))[1:]))
        torch.testing.assert_close(_render(gaussians, camera, means, quats), _render(gaussians, corrected),
                                   atol=2e-4, rtol=0)
        moved = torch.linalg.inv(camera.w2c[0]) @ refinement.camera_corrections()[1] @ camera.w2c[0]
        torch.testing.assert_close(quaternion_to_matrix(quats), moved[:3, :3] @ quaternion_to_matrix(gaussians["quats"]),
                                   atol=1e-5, rtol=0)
        assert not torch.allclose(means, gaussians["means"], atol=1e-3)  # it did move them
        untouched = refinement.move_gaussians(gaussians["means"], gaussians["quats"], 0, camera.w2c[0])
        torch.testing.assert_close(untouched[0], gaussians["means"], atol=1e-6, rtol=0)


def test_the_photometric_loss_brings_a_perturbed_camera_back():
    """The picture a perturbed camera (2 degrees, 4 cm) should have taken is matched by
    learning its correction alone: the loss falls to a tenth and the camera returns."""
    gaussians, camera = _gaussians(), _camera()
    target = _render(gaussians, camera)
    refinement = _refinement([0.02, -0.01, 0.0, 0.02, 0.025, -0.01], scale=1.0)  # the perturbation, to undo
    perturbed_w2c = refinement.refined_w2c(camera.w2c.expand(2, 4, 4))[1].clone()
    refinement.reset(2, 1.0, torch.device("cpu"))
    losses = []
    for step in range(150):
        refinement.zero_grad()
        means, quats = refinement.move_gaussians(gaussians["means"], gaussians["quats"], 1, perturbed_w2c)
        perturbed = dataclasses.replace(camera, c2w=torch.linalg.inv(perturbed_w2c)[None])
        loss = (_render(gaussians, perturbed, means, quats) - target).abs().mean()
        loss.backward()
        refinement.step(step, 150)
        losses.append(loss.item())
    recovered = refinement.refined_w2c(perturbed_w2c.expand(2, 4, 4))[1]
    assert losses[-1] < 0.1 * losses[0]
    assert torch.allclose(recovered, camera.w2c[0], atol=5e-3), (recovered - camera.w2c[0]).abs().max()


def test_off_holds_nothing_and_moves_nothing():
    refinement = PoseRefinement(False)
    refinement.reset(3, 1.0, torch.device("cpu"))
    means, quats = torch.rand(5, 3), torch.rand(5, 4)
    assert refinement.move_gaussians(means, quats, 1, torch.eye(4)) == (means, quats)
    assert list(refinement.parameters()) == [] and refinement.state_dict() == {}
    w2c = torch.eye(4).expand(3, 4, 4)
    assert refinement.refined_w2c(w2c) is w2c


def test_the_rate_decays_from_lr_to_lr_final():
    refinement = PoseRefinement(True, lr=1e-3, lr_final=1e-5)
    refinement.reset(1, 1.0, torch.device("cpu"))
    rates = []
    for step in (0, 50, 100):
        refinement.corrections.grad = torch.ones(1, 6)
        refinement.step(step, 100)
        rates.append(refinement.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3, 1e-4, 1e-5])
