"""Cameras: conventions (OpenCV axes, +0.5 pixel centres, unit rays), projection, paths."""
import math

import pytest
import torch

from render3d.camera_paths import interpolate, look_at, orbit, orbit_around
from render3d.cameras import Cameras, intrinsics_from_fov, opengl_to_opencv
from render3d.errors import ConfigError


def _random_cameras(n=3, width=31, height=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    eye = torch.randn(n, 3, generator=g) * 3
    c2w = look_at(eye, torch.randn(3, generator=g) * 0.1, torch.tensor([0.0, 0.0, 1.0]))
    K = torch.tensor([[40.0, 0, 15.0], [0, 45.0, 9.0], [0, 0, 1]]).expand(n, 3, 3)
    return Cameras(K=K, c2w=c2w, width=width, height=height)


def test_rays_through_pixel_centres_project_back_to_them():
    cams = _random_cameras()
    origins, dirs = cams.generate_rays()
    assert origins.shape == dirs.shape == (3, 17, 31, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(3, 17, 31))
    for c in range(3):
        points = (origins[c] + 2.5 * dirs[c]).reshape(-1, 3)
        pixels, depth = cams[c].project(points)
        # Pixel (u, v) has its centre at (u + 0.5, v + 0.5).
        torch.testing.assert_close(pixels[0], cams.pixel_grid().reshape(-1, 2), atol=1e-3, rtol=0)
        assert (depth > 0).all()


def test_principal_point_ray_is_the_optical_axis():
    K = torch.tensor([[50.0, 0, 10.0], [0, 50.0, 8.0], [0, 0, 1]])
    cams = Cameras(K=K, c2w=torch.eye(4), width=20, height=16)
    _, dirs = cams.pixel_rays(torch.tensor([0]), torch.tensor([[10.0, 8.0]]))
    torch.testing.assert_close(dirs, torch.tensor([[0.0, 0.0, 1.0]]))  # OpenCV: looks along +z
    _, dirs = cams.pixel_rays(torch.tensor([0]), torch.tensor([[10.0, 16.0]]))
    assert dirs[0, 1] > 0  # rows grow downwards: +y is down


def test_opengl_conversion_flips_y_and_z_and_is_an_involution():
    c2w_gl = look_at(torch.tensor([[0.0, -4.0, 1.0]]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    c2w_cv = opengl_to_opencv(c2w_gl)
    torch.testing.assert_close(c2w_cv[:, :3, 1], -c2w_gl[:, :3, 1])
    torch.testing.assert_close(c2w_cv[:, :3, 2], -c2w_gl[:, :3, 2])
    torch.testing.assert_close(opengl_to_opencv(c2w_cv), c2w_gl)


def test_w2c_inverts_c2w():
    cams = _random_cameras(5)
    torch.testing.assert_close(cams.w2c @ cams.c2w, torch.eye(4).expand(5, 4, 4), atol=1e-5, rtol=0)


def test_indexing_and_scaling():
    cams = _random_cameras(4)
    assert len(cams[1]) == 1 and len(cams[1:3]) == 2 and len(cams[-1]) == 1
    assert len(cams[torch.tensor([True, False, True, True])]) == 3
    torch.testing.assert_close(cams[-1].c2w, cams.c2w[3:])
    half = cams.scaled(0.5)
    assert (half.width, half.height) == (16, 8) or (half.width, half.height) == (15, 8)
    # A world point lands on the same relative image position after scaling.
    point = torch.tensor([[0.1, 0.2, 0.3]])
    full_px, _ = cams.project(point)
    half_px, _ = half.project(point)
    torch.testing.assert_close(half_px[..., 0] / half.width, full_px[..., 0] / cams.width)


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(math.radians(90), 200, 100)
    torch.testing.assert_close(K[0, 0], torch.tensor(100.0))
    assert K[0, 2] == 100 and K[1, 2] == 50


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"K": torch.eye(2)}, "K must have shape"),
        ({"c2w": torch.eye(4)[None].repeat(2, 1, 1)}, "K has 1 cameras but c2w has 2"),
        ({"width": 0}, "width and height must be positive"),
        ({"c2w": torch.full((4, 4), float("nan"))}, "finite"),
    ],
)
def test_bad_camera_arguments_are_named(kwargs, message):
    args = {"K": torch.eye(3), "c2w": torch.eye(4), "width": 8, "height": 8} | kwargs
    with pytest.raises(ConfigError, match=message):
        Cameras(**args)


def test_orbit_looks_at_its_centre():
    center = torch.tensor([0.5, -0.2, 0.1])
    K = intrinsics_from_fov(math.radians(60), 64, 48)
    cams = orbit(center, 3.0, 12, K, 64, 48, elevation_deg=25)
    torch.testing.assert_close((cams.centers - center).norm(dim=-1), torch.full((12,), 3.0))
    pixels, depth = cams.project(center[None])
    torch.testing.assert_close(pixels[:, 0], torch.tensor([32.0, 24.0]).expand(12, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(depth[:, 0], torch.full((12,), 3.0))
    dets = torch.linalg.det(cams.c2w[:, :3, :3])
    torch.testing.assert_close(dets, torch.ones(12))
    # The world up vector points up in the image (negative image y).
    up_in_image = cams.w2c[:, :3, :3] @ torch.tensor([0.0, 0.0, 1.0])
    assert (up_in_image[:, 1] < 0).all()


def test_orbit_around_matches_the_dataset_cameras():
    K = intrinsics_from_fov(math.radians(50), 40, 40)
    truth = orbit(torch.zeros(3), 4.0, 20, K, 40, 40, elevation_deg=30, up=(0.0, 1.0, 0.0))
    path = orbit_around(truth, 7, torch.zeros(3))
    torch.testing.assert_close(path.centers.norm(dim=-1), torch.full((7,), 4.0))
    torch.testing.assert_close(path.centers[:, 1], torch.full((7,), 2.0), atol=1e-4, rtol=0)  # 4 sin 30°


def test_interpolate_hits_keyframes_and_stays_rigid():
    keys = _random_cameras(3)
    path = interpolate(keys, 9)
    torch.testing.assert_close(path.c2w[0], keys.c2w[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(path.c2w[4], keys.c2w[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(path.c2w[-1], keys.c2w[2], atol=1e-5, rtol=0)
    R = path.c2w[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(9, 3, 3), atol=1e-5, rtol=0)
