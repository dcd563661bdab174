"""Gaussian projection reference: against an independent per-Gaussian numpy implementation,
against Cameras.project, culling rules, float64 gradcheck and argument errors."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from render3d.cameras import Cameras
from render3d.errors import ConfigError
from render3d.ops.gaussian_projection import project_gaussians, project_gaussians_reference
from tests.kernels.harness import assert_reference_gradcheck

WIDTH, HEIGHT = 80, 60
K_OFF_CENTRE = np.array([[70.0, 0.0, 35.0], [0.0, 65.0, 33.0], [0.0, 0.0, 1.0]])


def _project_one(mean, quat, log_scale, w2c, K, *, near=0.01, far=1e10, eps2d=0.3, antialiased=False,
                 radius_clip=0.0, clamp=True):  # fmt: skip
    """One Gaussian, one camera, written from the 3DGS paper: returns None when culled."""
    W, tW = w2c[:3, :3], w2c[:3, 3]
    x, y, z = W @ mean + tW
    if not near < z < far:
        return None
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if clamp:
        # Visible frustum [-cx/fx, (W-cx)/fx] widened by 0.3 of the half width on each side.
        tx = np.clip(x / z, -cx / fx - 0.3 * 0.5 * WIDTH / fx, (WIDTH - cx) / fx + 0.3 * 0.5 * WIDTH / fx)
        ty = np.clip(y / z, -cy / fy - 0.3 * 0.5 * HEIGHT / fy, (HEIGHT - cy) / fy + 0.3 * 0.5 * HEIGHT / fy)
    else:
        tx, ty = x / z, y / z
    rotation = Rotation.from_quat([quat[1], quat[2], quat[3], quat[0]]).as_matrix()  # scipy is xyzw
    scale = np.diag(np.exp(log_scale))
    sigma = rotation @ scale @ scale.T @ rotation.T
    J = np.array([[fx / z, 0.0, -fx * tx / z], [0.0, fy / z, -fy * ty / z]])
    cov2d = J @ W @ sigma @ W.T @ J.T
    det_before = np.linalg.det(cov2d)
    cov2d = cov2d + eps2d * np.eye(2)
    det = np.linalg.det(cov2d)
    if det <= 0:
        return None
    radius = math.ceil(3.0 * math.sqrt(np.linalg.eigvalsh(cov2d).max()))
    center = np.array([fx * x / z + cx, fy * y / z + cy])
    outside = (center + radius <= 0).any() or center[0] - radius >= WIDTH or center[1] - radius >= HEIGHT
    if radius <= radius_clip or outside:
        return None
    conic = np.linalg.inv(cov2d)
    return {
        "means2d": center,
        "conics": np.array([conic[0, 0], conic[0, 1], conic[1, 1]]),
        "depths": z,
        "radii": radius,
        "compensations": math.sqrt(max(det_before / det, 0.0)) if antialiased else 1.0,
    }


def _look_at_w2c(eye, target):
    """World-to-camera for OpenCV axes (z towards ``target``, y roughly down)."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, down, forward], axis=1)
    c2w[:3, 3] = eye
    return np.linalg.inv(c2w)


def _scene():
    """Gaussians chosen to hit each rule, and two cameras (identity and a look-at)."""
    rng = np.random.default_rng(3)
    means = np.array([
        [0.1, -0.2, 3.0],    # central, ordinary
        [3.0, 0.5, 2.0],     # off to the right: the clamp matters, the box still reaches the image
        [0.0, 0.0, -2.0],    # behind the camera
        [0.0, 0.0, 0.005],   # closer than near
        [0.0, 0.0, 50.0],    # beyond far=20
        [0.3, 0.1, 4.0],     # tiny: Sigma2d is almost the 0.3 dilation
        [60.0, 0.0, 2.0],    # 3 sigma box entirely right of the image
        [-0.4, 0.3, 2.5],    # anisotropic, rotated
    ])  # fmt: skip
    log_scales = np.array([
        [-1.5, -1.8, -1.6], [-0.5, -0.5, -0.5], [-1.0] * 3, [-1.0] * 3,
        [-1.0] * 3, [-9.0, -9.0, -9.0], [-1.0] * 3, [-0.8, -2.5, -1.2],
    ])  # fmt: skip
    quats = rng.normal(size=(len(means), 4)) * 2.0  # unnormalised on purpose
    w2c = np.stack([np.eye(4), _look_at_w2c(np.array([1.0, -0.5, -1.0]), np.array([0.0, 0.0, 3.0]))])
    K = np.stack([K_OFF_CENTRE, np.array([[50.0, 0, 40.0], [0, 50.0, 30.0], [0, 0, 1]])])
    return means, quats, log_scales, w2c, K


def _run_reference(means, quats, log_scales, w2c, K, **options):
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return project_gaussians_reference(
        as_tensor(means), as_tensor(quats), as_tensor(log_scales), as_tensor(w2c), as_tensor(K), WIDTH, HEIGHT,
        **options,
    )  # fmt: skip


@pytest.mark.parametrize("antialiased", [False, True])
def test_matches_independent_per_gaussian_implementation(antialiased):
    means, quats, log_scales, w2c, K = _scene()
    options = dict(near=0.01, far=20.0, eps2d=0.3, antialiased=antialiased)
    out = _run_reference(means, quats, log_scales, w2c, K, **options)
    visible = 0
    for c in range(len(w2c)):
        for n in range(len(means)):
            expected = _project_one(means[n], quats[n], log_scales[n], w2c[c], K[c], **options)
            if expected is None:
                assert out["radii"][c, n] == 0, (c, n)
                for key in ("means2d", "conics", "depths", "compensations"):
                    assert not out[key][c, n].any(), (key, c, n)
                continue
            visible += 1
            assert out["radii"][c, n] == expected["radii"], (c, n)
            for key in ("means2d", "conics", "depths", "compensations"):
                # float64 on both sides; the difference is rounding of a few dozen operations.
                np.testing.assert_allclose(out[key][c, n].numpy(), expected[key], rtol=1e-10, atol=1e-12)
    assert out["radii"].dtype == torch.int32
    assert visible >= 8  # most Gaussians are visible in at least one camera
    # The first camera sees the behind / too near / too far / off-image Gaussians culled.
    assert out["radii"][0, [2, 3, 4, 6]].tolist() == [0, 0, 0, 0]
    assert (out["radii"][0, [0, 1, 5, 7]] > 0).all()


def test_clamp_changes_the_far_off_gaussian_only():
    means, quats, log_scales, w2c, K = _scene()
    out = _run_reference(means, quats, log_scales, w2c, K, far=20.0)
    clamped = _project_one(means[1], quats[1], log_scales[1], w2c[0], K[0])
    unclamped = _project_one(means[1], quats[1], log_scales[1], w2c[0], K[0], clamp=False)
    assert not np.allclose(clamped["conics"], unclamped["conics"], rtol=0.05)
    np.testing.assert_allclose(out["conics"][0, 1].numpy(), clamped["conics"], rtol=1e-10)
    central = _project_one(means[0], quats[0], log_scales[0], w2c[0], K[0], clamp=False)
    np.testing.assert_allclose(out["conics"][0, 0].numpy(), central["conics"], rtol=1e-10)


def test_tiny_gaussian_is_the_dilation_filter():
    means, quats, log_scales, w2c, K = _scene()
    plain = _run_reference(means, quats, log_scales, w2c, K)
    aa = _run_reference(means, quats, log_scales, w2c, K, antialiased=True)
    # exp(-9) ~ 1e-4 world units at depth 4 and f ~ 70 px: projected variance ~ 1e-5 px^2.
    np.testing.assert_allclose(plain["conics"][0, 5].numpy(), [1 / 0.3, 0.0, 1 / 0.3], rtol=1e-3, atol=1e-3)
    assert plain["radii"][0, 5] == math.ceil(3 * math.sqrt(0.3))
    assert plain["compensations"][0, 5] == 1.0
    # Mip-Splatting: sqrt(det(S) / det(S + 0.3 I)) ~ sqrt(1e-10 / 0.09), almost zero.
    assert 0 < aa["compensations"][0, 5] < 1e-3
    assert ((aa["compensations"] > 0) == (aa["radii"] > 0)).all() and (aa["compensations"] <= 1).all()


def test_eps2d_and_radius_clip():
    means, quats, log_scales, w2c, K = _scene()
    no_filter = _run_reference(means, quats, log_scales, w2c, K, eps2d=0.0)
    expected = _project_one(means[7], quats[7], log_scales[7], w2c[0], K[0], eps2d=0.0)
    np.testing.assert_allclose(no_filter["conics"][0, 7].numpy(), expected["conics"], rtol=1e-10)
    clipped = _run_reference(means, quats, log_scales, w2c, K, radius_clip=2.0)
    assert clipped["radii"][0, 5] == 0  # radius 2 is not > 2
    assert clipped["radii"][0, 0] > 2


def test_means2d_agree_with_cameras_project():
    means, quats, log_scales, w2c, K = _scene()
    out = _run_reference(means, quats, log_scales, w2c, K, far=20.0)
    cams = Cameras(K=torch.as_tensor(K), c2w=torch.linalg.inv(torch.as_tensor(w2c)), width=WIDTH, height=HEIGHT)
    pixels, depths = cams.project(torch.as_tensor(means))
    visible = out["radii"] > 0
    torch.testing.assert_close(out["means2d"][visible], pixels[visible], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out["depths"][visible], depths[visible], rtol=1e-9, atol=1e-9)


def test_culled_pairs_get_zero_gradients():
    means, quats, log_scales, w2c, K = _scene()
    leaves = [torch.as_tensor(a).requires_grad_(True) for a in (means, quats, log_scales)]
    out = project_gaussians_reference(*leaves, torch.as_tensor(w2c), torch.as_tensor(K), WIDTH, HEIGHT, far=20.0)
    total = sum(out[k].sum() for k in ("means2d", "conics", "depths", "compensations"))
    grads = torch.autograd.grad(total, leaves)
    culled_everywhere = (out["radii"] == 0).all(0)
    assert culled_everywhere.sum() >= 2
    for grad in grads:
        assert torch.isfinite(grad).all()
        assert not grad[culled_everywhere].any()
        assert grad[~culled_everywhere].abs().sum(-1).min() > 0


@pytest.mark.parametrize("antialiased", [False, True])
def test_reference_gradcheck(antialiased):
    means, quats, log_scales, w2c, K = _scene()
    keep = [0, 1, 2, 7]  # visible, clamped, culled, anisotropic
    inputs = dict(means=means[keep], quats=quats[keep], log_scales=log_scales[keep], w2c=w2c, K=K)

    def outputs(**kw):
        return tuple(project_gaussians_reference(**kw, width=WIDTH, height=HEIGHT, antialiased=antialiased).values())

    assert_reference_gradcheck(
        outputs,
        {name: torch.as_tensor(value) for name, value in inputs.items()},
        grad_inputs={"means", "quats", "log_scales"},
    )


def test_public_function_runs_the_reference_on_cpu(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "torch")
    means, quats, log_scales, w2c, K = (torch.as_tensor(a, dtype=torch.float32) for a in _scene())
    out = project_gaussians(means, quats, log_scales, w2c, K, WIDTH, HEIGHT)
    expected = project_gaussians_reference(means, quats, log_scales, w2c, K, WIDTH, HEIGHT)
    for key in expected:
        assert torch.equal(out[key], expected[key]), key
    empty = project_gaussians(means[:0], quats[:0], log_scales[:0], w2c, K, WIDTH, HEIGHT)
    assert empty["means2d"].shape == (2, 0, 2) and empty["radii"].shape == (2, 0)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(means=torch.zeros(4, 2)), "means must have shape"),
        (dict(quats=torch.zeros(3, 4)), "disagree on N"),
        (dict(K=torch.eye(3).repeat(3, 1, 1)), "w2c has 2 cameras but K has 3"),
        (dict(log_scales=torch.zeros(4, 3, dtype=torch.int64)), "log_scales must be a floating-point"),
        (dict(quats=torch.zeros(4, 4, dtype=torch.float64)), "share one dtype"),
        (dict(width=0), "width and height must be positive"),
        (dict(near=1.0, far=0.5), "near < far"),
        (dict(eps2d=-1.0), "eps2d and radius_clip"),
    ],
)
def test_bad_arguments(change, message):
    args = dict(means=torch.zeros(4, 3), quats=torch.ones(4, 4), log_scales=torch.zeros(4, 3),
                w2c=torch.eye(4).repeat(2, 1, 1), K=torch.eye(3).repeat(2, 1, 1), width=8, height=8)  # fmt: skip
    args.update(change)
    with pytest.raises(ConfigError, match=message):
        project_gaussians(**args)


def test_covariance_3d_is_r_s_s_rt_for_unnormalised_quaternions():
    from render3d.ops.gaussian_projection import covariance_3d

    half = math.sqrt(0.5)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2 * half, 0.0, 0.0, 2 * half]])  # identity; 90 deg about z (x2)
    log_scales = torch.log(torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    covariance = covariance_3d(quats, log_scales)
    assert torch.allclose(covariance[0], torch.diag(torch.tensor([1.0, 4.0, 9.0])), atol=1e-5)
    # A 90-degree turn about z swaps the x and y variances.
    assert torch.allclose(covariance[1], torch.diag(torch.tensor([4.0, 1.0, 9.0])), atol=1e-5)
