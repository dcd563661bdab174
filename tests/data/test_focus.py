"""The box around a capture's common focus: found where cameras look, absent when they do not
converge, kept in the scene info and used as a capture's default mesh region."""
import math

import pytest
import torch

import render3d
from render3d.camera_paths import orbit
from render3d.cameras import Cameras, intrinsics_from_fov
from render3d.data.focus import focus_box
from render3d.methods.base import SceneInfo

FOV = math.radians(60)


def _orbit(center, radius=4.0, n=12, elevation=25.0):
    return orbit(torch.tensor(center), radius, n, intrinsics_from_fov(FOV, 64, 48), 64, 48, elevation_deg=elevation)


def test_the_focus_of_an_orbit_is_its_centre_and_the_box_what_the_frames_span_there():
    box = focus_box(_orbit([1.0, -2.0, 0.5]))
    torch.testing.assert_close(box.mean(0), torch.tensor([1.0, -2.0, 0.5]), atol=1e-4, rtol=0)
    # The narrower (vertical) half field of view at the orbit's distance of 4.
    half = 4.0 * (48 / 2) / intrinsics_from_fov(FOV, 64, 48)[1, 1]
    torch.testing.assert_close((box[1] - box[0]) / 2, torch.full((3,), float(half)), atol=1e-4, rtol=0)


def test_a_handheld_walk_with_noisy_aims_finds_the_object():
    cameras = _orbit([0.0, 0.0, 0.9], radius=2.5, n=30)
    generator = torch.Generator().manual_seed(0)
    c2w = cameras.c2w.clone()
    for i in range(len(cameras)):  # each aim off by up to ~3 degrees
        axis = torch.nn.functional.normalize(torch.randn(3, generator=generator), dim=0) * 0.05
        skew = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        c2w[i, :3, :3] = torch.linalg.matrix_exp(skew) @ c2w[i, :3, :3]
    box = focus_box(Cameras(c2w=c2w, K=cameras.K, width=cameras.width, height=cameras.height))
    assert (box.mean(0) - torch.tensor([0.0, 0.0, 0.9])).norm() < 0.15


def test_cameras_that_do_not_converge_have_no_focus():
    forward = _orbit([0.0, 0.0, 0.0], n=1)
    c2w = forward.c2w.repeat(5, 1, 1)
    c2w[:, 0, 3] += torch.arange(5.0)  # a row of cameras all looking the same way
    parallel = Cameras(c2w=c2w, K=forward.K.repeat(5, 1, 1), width=64, height=48)
    assert focus_box(parallel) is None
    outward = _orbit([0.0, 0.0, 0.0])
    flipped = outward.c2w.clone()
    flipped[:, :3, 1:3] *= -1  # each camera turned to look away from the centre
    assert focus_box(Cameras(c2w=flipped, K=outward.K, width=64, height=48)) is None
    assert focus_box(outward[:1]) is None


def test_a_capture_meshes_its_focus_by_default(toy_method, sphere_dataset, monkeypatch):
    """The sphere's cameras orbit the origin at distance 3 with a 40 degree field of view: the
    focus box is the origin's cube of half-size 3 tan(20 deg); the capture's box (a room) is larger."""
    capture = sphere_dataset
    capture.format = "colmap"
    capture.aabb = torch.tensor([[-4.0, -4.0, -1.0], [4.0, 4.0, 3.0]])
    scene = render3d.Scene.fit(capture, method="toy", steps=0, progress=False)
    info = scene.method.scene_info
    assert info.focus is not None and SceneInfo.from_dict(info.to_dict()) == info
    old = {key: value for key, value in info.to_dict().items() if key != "focus"}  # a checkpoint from before
    assert SceneInfo.from_dict(old).focus is None
    half = 3 * math.tan(math.radians(20))
    torch.testing.assert_close(torch.tensor(info.focus), torch.tensor([[-half] * 3, [half] * 3]), atol=1e-3, rtol=0)
    boxes = []
    volume = scene.method.density_volume
    monkeypatch.setattr(scene.method, "density_volume", lambda box, *a, **k: boxes.append(box) or volume(box, *a, **k))
    mesh = scene.extract_mesh(resolution=32)
    assert len(mesh.vertices) > 0
    torch.testing.assert_close(boxes[-1], torch.tensor(info.focus))
    scene.extract_mesh(resolution=32, bbox=[[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])  # a user's box wins
    torch.testing.assert_close(boxes[-1], torch.tensor([[-1.0] * 3, [1.0] * 3]))
    capture.format = "synthetic"
    assert render3d.Scene.fit(capture, method="toy", steps=0, progress=False).method.scene_info.focus is None


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_cameras_have_no_focus(n):
    assert focus_box(_orbit([0.0, 0.0, 0.0], n=max(n, 1))[:n]) is None
