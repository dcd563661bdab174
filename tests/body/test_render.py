"""Rendering bodies as Gaussians bound to their triangles: masks and depths where the body
is, a pose sequence, the Gaussian binding's geometry and gradients."""
import math

import pytest
import torch

from render3d.body import BodyScene, procedural_body, triangle_gaussians
from render3d.body.render import front_camera
from render3d.cameras import Cameras
from render3d.errors import ConfigError


@pytest.fixture(scope="module")
def body():
    return procedural_body()


@pytest.mark.slow  # CPU rasterization reference: 1-8 s on the shared machine
def test_front_view_mask_and_depth(body):
    scene = BodyScene(body, background=(0.0, 0.0, 1.0))
    camera = front_camera(body.template, 64, 64)
    out = scene.render(camera)
    assert out["rgb"].shape == (1, 64, 64, 3) and out["alpha"].shape == (1, 64, 64)
    # The chest joint projects onto the body: opaque, skin-coloured, at the right distance.
    eye = camera.c2w[0, :3, 3]
    chest = torch.tensor([0.0, 1.25, 0.14])  # the chest tube's front surface
    pixel = camera.K[0] @ ((camera.w2c[0, :3, :3] @ chest) + camera.w2c[0, :3, 3])
    u, v = int(pixel[0] / pixel[2]), int(pixel[1] / pixel[2])
    assert float(out["alpha"][0, v, u]) > 0.95
    assert float(out["depth"][0, v, u]) == pytest.approx(float((chest - eye).norm()), abs=0.03)
    assert float(out["rgb"][0, v, u, 0]) > float(out["rgb"][0, v, u, 2])  # skin, not the blue background
    # A corner is empty: background colour, no depth.
    assert float(out["alpha"][0, 0, 0]) < 1e-3 and float(out["depth"][0, 0, 0]) == 0.0
    assert torch.allclose(out["rgb"][0, 0, 0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)


@pytest.mark.slow  # two frames through the CPU rasterization reference
def test_pose_sequence_moves_the_mask(body):
    pose = torch.zeros(2, body.n_joints, 3)
    pose[1, body.joint_names.index("left_shoulder"), 2] = -math.pi / 2  # arm down along the side
    camera = front_camera(body.template, 48, 48)
    out = BodyScene(body, pose=pose).render(camera)
    assert out["alpha"].shape == (2, 1, 48, 48)
    # The lowered arm leaves the pixels it covered at shoulder height: the masks differ.
    assert float((out["alpha"][0] - out["alpha"][1]).abs().sum()) > 20


def test_binding_geometry_and_gradient():
    vertices = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0]], requires_grad=True)
    faces = torch.tensor([[0, 1, 2]])
    gaussians = triangle_gaussians(vertices, faces, torch.eye(3))
    torch.testing.assert_close(gaussians["means"], torch.tensor([[2 / 3, 2 / 3, 0.0]]))
    torch.testing.assert_close(gaussians["colors"], torch.full((1, 3), 1 / 3))
    torch.testing.assert_close(gaussians["normals"], torch.tensor([[0.0, 0, 1]]))
    scales = gaussians["log_scales"].exp()[0].tolist()
    assert scales[0] == pytest.approx(math.sqrt(2 / math.pi)) and scales[2] == pytest.approx(0.05 * scales[0])
    (gaussians["means"].sum() + gaussians["log_scales"].sum()).backward()
    assert torch.isfinite(vertices.grad).all() and vertices.grad.abs().sum() > 0


def test_bad_arguments(body):
    with pytest.raises(ConfigError, match="colors must be"):
        BodyScene(body, colors=torch.zeros(3, 3))
    with pytest.raises(ConfigError, match="render3d.Cameras"):
        BodyScene(body).render("front")
    assert isinstance(front_camera(body.template), Cameras)
