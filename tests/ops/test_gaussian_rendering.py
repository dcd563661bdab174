"""render_gaussians: the composition of projection, SH colours, tile binning and rasterization,
its depth channel, empty and behind-the-camera scenes, gradients, plain features, input checks."""
import pytest
import torch

from render3d.cameras import Cameras
from render3d.errors import ConfigError
from render3d.ops.gaussian_projection import project_gaussians
from render3d.ops.gaussian_rendering import camera_centers_from_w2c, render_gaussians
from render3d.ops.rasterization import rasterize_gaussians
from render3d.ops.sh_colors import sh_colors
from render3d.ops.tile_binning import isect_offset_encode, isect_tiles, tile_grid

W, H = 24, 20


def two_cameras():
    """A camera at the origin looking down +z and one shifted along x and turned a little."""
    K = torch.tensor([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]]).repeat(2, 1, 1)
    c2w = torch.eye(4).repeat(2, 1, 1)
    angle = torch.tensor(0.2)
    c2w[1, :3, :3] = torch.tensor([[torch.cos(angle), 0, torch.sin(angle)], [0, 1, 0],
                                   [-torch.sin(angle), 0, torch.cos(angle)]])
    c2w[1, :3, 3] = torch.tensor([-0.3, 0.05, 0.0])
    return Cameras(K=K, c2w=c2w, width=W, height=H)


def gaussians(n=12, seed=0, sh_bases=4):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.4, 0.3, 0.2]) + torch.tensor([0.0, 0.0, 2.5])
    quats = torch.randn(n, 4, generator=g)
    log_scales = torch.rand(n, 3, generator=g) * 1.5 - 3.0
    opacities = torch.rand(n, generator=g) * 0.8 + 0.1
    coeffs = torch.randn(n, sh_bases, 3, generator=g) * 0.3
    return means, quats, log_scales, opacities, coeffs


def by_hand(means, quats, log_scales, opacities, coeffs, cams, degree, backgrounds):
    p = project_gaussians(means, quats, log_scales, cams.w2c, cams.K, W, H)
    dirs = means[None] - camera_centers_from_w2c(cams.w2c)[:, None]
    colors = sh_colors(coeffs, dirs, degree)
    tiles_w, tiles_h = tile_grid(W, H, 16)
    _, ids, flat = isect_tiles(p["means2d"], p["radii"], p["depths"], W, H, 16)
    offsets = isect_offset_encode(ids, cams.w2c.shape[0], tiles_w, tiles_h)
    return rasterize_gaussians(p["means2d"], p["conics"], colors, opacities[None] * p["compensations"], W, H, 16,
                               offsets, flat, backgrounds)


def test_camera_centers_from_w2c():
    cams = two_cameras()
    torch.testing.assert_close(camera_centers_from_w2c(cams.w2c), cams.c2w[:, :3, 3])


@pytest.mark.parametrize("degree", [0, 1])
def test_equals_the_ops_called_by_hand(degree):
    cams = two_cameras()
    args = gaussians()
    background = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]])
    rgb, alpha, info = render_gaussians(*args, cams.w2c, cams.K, W, H, sh_degree=degree, backgrounds=background)
    rgb_ref, alpha_ref = by_hand(*args, cams, degree, background)
    assert rgb.shape == (2, H, W, 3) and alpha.shape == (2, H, W, 1)
    assert float(alpha.max()) > 0.3  # something is drawn
    torch.testing.assert_close(rgb, rgb_ref)
    torch.testing.assert_close(alpha, alpha_ref)
    assert info["radii"].shape == (2, 12) and info["means2d"].shape == (2, 12, 2)
    assert info["depths"].shape == (2, 12) and info["conics"].shape == (2, 12, 3)
    assert int(info["n_intersections"]) > 0


def test_depth_channel_of_one_gaussian_facing_the_camera():
    cams = two_cameras()[0]
    z = 2.0
    means = torch.tensor([[0.0, 0.0, z]])
    quats = torch.tensor([[1.0, 0, 0, 0]])
    log_scales = torch.log(torch.tensor([[0.2, 0.2, 0.01]]))
    opacities = torch.tensor([0.9])
    colors = torch.tensor([[0.2, 0.4, 0.6]])
    out, alpha, info = render_gaussians(means, quats, log_scales, opacities, colors, cams.w2c, cams.K, W, H,
                                        with_depth=True)
    assert out.shape == (1, H, W, 4)
    torch.testing.assert_close(info["depths"], torch.tensor([[z]]))
    # centre pixel: alpha ~ 0.9, depth channel = alpha * z, colour = alpha * colour (black background)
    assert float(alpha[0, H // 2, W // 2, 0]) > 0.85
    torch.testing.assert_close(out[..., 3], alpha[..., 0] * z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[..., :3], alpha * colors, atol=1e-5, rtol=1e-5)
    # a background does not leak into the depth channel
    bg = torch.tensor([1.0, 1.0, 1.0])
    out_bg, alpha_bg, _ = render_gaussians(means, quats, log_scales, opacities, colors, cams.w2c, cams.K, W, H,
                                           with_depth=True, backgrounds=bg)
    torch.testing.assert_close(out_bg[..., 3], out[..., 3])
    torch.testing.assert_close(out_bg[..., :3], out[..., :3] + (1 - alpha_bg) * bg)


def test_zero_gaussians_give_the_background():
    cams = two_cameras()
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    rgb, alpha, info = render_gaussians(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0),
                                        torch.zeros(0, 1, 3), cams.w2c, cams.K, W, H, sh_degree=0, backgrounds=bg,
                                        with_depth=True)
    assert rgb.shape == (2, H, W, 4)
    torch.testing.assert_close(rgb[..., :3], bg[:, None, None, :].expand(2, H, W, 3))
    assert torch.all(rgb[..., 3] == 0) and torch.all(alpha == 0)
    assert int(info["n_intersections"]) == 0


def test_gaussians_behind_the_camera_give_the_background():
    cams = two_cameras()
    means, quats, log_scales, opacities, coeffs = gaussians()
    means = means * torch.tensor([1.0, 1.0, -1.0])  # z in about [-3, -2]: behind both cameras
    bg = torch.tensor([0.3, 0.6, 0.9])
    rgb, alpha, info = render_gaussians(means, quats, log_scales, opacities, coeffs, cams.w2c, cams.K, W, H,
                                        sh_degree=1, backgrounds=bg)
    assert torch.all(info["radii"] == 0)
    torch.testing.assert_close(rgb, bg.expand(2, H, W, 3))
    assert torch.all(alpha == 0)


def test_gradients_reach_every_input():
    cams = two_cameras()
    tensors = [t.clone().requires_grad_(True) for t in gaussians()]
    rgb, alpha, info = render_gaussians(*tensors, cams.w2c, cams.K, W, H, sh_degree=1, with_depth=True)
    info["means2d"].retain_grad()
    weights = torch.randn(rgb.shape, generator=torch.Generator().manual_seed(3))
    ((rgb * weights).sum() + alpha.sum()).backward()
    for name, tensor in zip(("means", "quats", "log_scales", "opacities", "colors"), tensors):
        assert tensor.grad is not None, name
        assert torch.isfinite(tensor.grad).all(), name
        assert float(tensor.grad.abs().sum()) > 0, name
    assert info["means2d"].grad is not None and float(info["means2d"].grad.abs().sum()) > 0


def test_absgrad_is_recorded():
    cams = two_cameras()
    means, quats, log_scales, opacities, coeffs = gaussians()
    means.requires_grad_(True)
    rgb, _, info = render_gaussians(means, quats, log_scales, opacities, coeffs, cams.w2c, cams.K, W, H,
                                    sh_degree=0, absgrad=True)
    info["means2d"].retain_grad()
    (rgb * torch.randn(rgb.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    absgrad = info["means2d"].absgrad
    assert absgrad.shape == (2, 12, 2)
    assert torch.all(absgrad >= info["means2d"].grad.abs() - 1e-6)


def test_plain_features_shared_and_per_camera():
    cams = two_cameras()
    means, quats, log_scales, opacities, _ = gaussians()
    features = torch.rand(12, 5, generator=torch.Generator().manual_seed(4))
    shared, alpha_shared, _ = render_gaussians(means, quats, log_scales, opacities, features, cams.w2c, cams.K, W, H)
    assert shared.shape == (2, H, W, 5)
    per_camera, alpha_per_camera, _ = render_gaussians(means, quats, log_scales, opacities,
                                                       features.expand(2, 12, 5).contiguous(), cams.w2c, cams.K, W, H)
    torch.testing.assert_close(per_camera, shared)
    torch.testing.assert_close(alpha_per_camera, alpha_shared)
    # per-camera features: camera 1 gets twice the features -> twice the image (black background)
    doubled = torch.stack([features, 2 * features])
    out, _, _ = render_gaussians(means, quats, log_scales, opacities, doubled, cams.w2c, cams.K, W, H)
    torch.testing.assert_close(out[0], shared[0])
    torch.testing.assert_close(out[1], 2 * shared[1])
    # degree-0 SH equals plain features 0.5 + C0 * f_dc (clamped at 0)
    coeffs = torch.rand(12, 1, 3, generator=torch.Generator().manual_seed(5))
    sh_rgb, _, _ = render_gaussians(means, quats, log_scales, opacities, coeffs, cams.w2c, cams.K, W, H, sh_degree=0)
    plain, _, _ = render_gaussians(means, quats, log_scales, opacities, 0.5 + 0.28209479177387814 * coeffs[:, 0],
                                   cams.w2c, cams.K, W, H)
    torch.testing.assert_close(sh_rgb, plain)


def test_bad_shapes_name_the_argument():
    cams = two_cameras()
    means, quats, log_scales, opacities, coeffs = gaussians()
    with pytest.raises(ConfigError, match="opacities"):
        render_gaussians(means, quats, log_scales, opacities[:-1], coeffs, cams.w2c, cams.K, W, H, sh_degree=0)
    with pytest.raises(ConfigError, match="opacities"):
        render_gaussians(means, quats, log_scales, opacities[:, None], coeffs, cams.w2c, cams.K, W, H, sh_degree=0)
    with pytest.raises(ConfigError, match="w2c"):
        render_gaussians(means, quats, log_scales, opacities, coeffs, cams.w2c[:, :3], cams.K, W, H, sh_degree=0)
    with pytest.raises(ConfigError, match="w2c"):
        render_gaussians(means, quats, log_scales, opacities, coeffs, cams.w2c[0], cams.K, W, H, sh_degree=0)
    with pytest.raises(ConfigError, match="colors"):
        render_gaussians(means, quats, log_scales, opacities, torch.rand(11, 3), cams.w2c, cams.K, W, H)
    with pytest.raises(ConfigError, match="colors"):
        render_gaussians(means, quats, log_scales, opacities, torch.rand(12), cams.w2c, cams.K, W, H)
    with pytest.raises(ConfigError, match="tile_size"):
        render_gaussians(means, quats, log_scales, opacities, coeffs, cams.w2c, cams.K, W, H, sh_degree=0,
                         tile_size=0)
