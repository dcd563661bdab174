"""Tests for render3d.metrics: PSNR, SSIM against scikit-image, and mesh metrics."""
import math

import numpy as np
import pytest
import torch
import trimesh
from skimage import data as skimage_data
from skimage.metrics import structural_similarity

from render3d.errors import ConfigError
from render3d.metrics import mesh_metrics, psnr, ssim, ssim_map


def skimage_ssim(a: np.ndarray, b: np.ndarray, full: bool = False):
    return structural_similarity(
        a, b, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, full=full,
    )


def degrade(image: np.ndarray, seed: int) -> np.ndarray:
    """A blurred, noisy, slightly brightened copy, still in [0,1]."""
    rng = np.random.default_rng(seed)
    blurred = (image + np.roll(image, 1, axis=0) + np.roll(image, 1, axis=1)) / 3
    return np.clip(1.05 * blurred + 0.05 * rng.standard_normal(image.shape), 0.0, 1.0)


def natural_image(name: str, step: int) -> np.ndarray:
    return getattr(skimage_data, name)()[::step, ::step].astype(np.float64) / 255.0


# ----------------------------------------------------------------------------- PSNR

def test_psnr_known_values():
    target = torch.zeros(8, 6, 3)
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-4)
    assert psnr(target + 0.5, target).item() == pytest.approx(20 * math.log10(2), abs=1e-4)
    # Error 0.2 on half of the values: MSE = 0.02, PSNR = -10 log10(0.02).
    pred = target.clone()
    pred[:4] = 0.2
    assert psnr(pred, target).item() == pytest.approx(-10 * math.log10(0.02), abs=1e-4)


def test_psnr_is_per_image_and_identical_images_give_inf():
    target = torch.rand(2, 3, 5, 7, 3)
    pred = target.clone()
    pred[0, 1] += 0.01
    values = psnr(pred, target)
    assert values.shape == (2, 3)
    assert values[0, 1].item() == pytest.approx(40.0, abs=1e-3)
    assert torch.isinf(values[1]).all() and torch.isinf(values[0, 0])


def test_psnr_mask_ignores_unmasked_pixels():
    target = torch.zeros(2, 4, 4, 3)
    pred = target.clone()
    pred[:, :2] = 0.1  # error 0.1 in the top half
    pred[:, 2:] = 0.9  # large error in the bottom half, masked out below
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2] = True
    assert torch.allclose(psnr(pred, target, mask), torch.tensor([20.0, 20.0]), atol=1e-4)
    float_mask = mask.float()[None, :, :, None].expand(2, 4, 4, 1)
    assert torch.allclose(psnr(pred, target, float_mask), torch.tensor([20.0, 20.0]), atol=1e-4)


def test_psnr_bad_inputs_raise_config_error():
    image = torch.rand(4, 4, 3)
    with pytest.raises(ConfigError, match="pred and target"):
        psnr(image, torch.rand(4, 5, 3))
    with pytest.raises(ConfigError, match="pred"):
        psnr(torch.rand(4, 4, 4), torch.rand(4, 4, 4))
    with pytest.raises(ConfigError, match="mask: selects no pixel"):
        psnr(image, image * 0.5, torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="mask"):
        psnr(image, image, torch.ones(3, 4))


# ----------------------------------------------------------------------------- SSIM

@pytest.mark.parametrize(
    "name, step", [("astronaut", 4), ("coffee", 5), ("chelsea", 3)],
)
def test_ssim_matches_skimage_on_natural_images(name, step):
    target = natural_image(name, step)
    pred = degrade(target, seed=1)
    expected = skimage_ssim(pred, target)
    assert 0.2 < expected < 0.95  # a meaningful, non-trivial comparison
    got64 = ssim(torch.from_numpy(pred), torch.from_numpy(target)).item()
    got32 = ssim(torch.from_numpy(pred).float(), torch.from_numpy(target).float()).item()
    assert got64 == pytest.approx(expected, abs=1e-9)  # same arithmetic in float64
    assert got32 == pytest.approx(expected, abs=1e-3)  # the contract; float32 measured ~1e-7


@pytest.mark.parametrize("height, width", [(11, 11), (11, 12), (13, 29), (37, 53), (64, 17)])
def test_ssim_matches_skimage_on_random_images_of_odd_sizes(height, width):
    rng = np.random.default_rng(height * 100 + width)
    target = rng.random((height, width, 3))
    pred = np.clip(target + 0.2 * rng.standard_normal(target.shape), 0.0, 1.0)
    expected = skimage_ssim(pred, target)
    got = ssim(torch.from_numpy(pred).float(), torch.from_numpy(target).float()).item()
    assert got == pytest.approx(expected, abs=1e-3)
    assert ssim(torch.from_numpy(pred), torch.from_numpy(target)).item() == pytest.approx(expected, abs=1e-9)


def test_ssim_is_per_image_for_batched_inputs():
    rng = np.random.default_rng(7)
    target = rng.random((2, 3, 20, 23, 3))
    pred = np.clip(target + rng.uniform(0.02, 0.3, (2, 3, 1, 1, 1)) * rng.standard_normal(target.shape), 0, 1)
    got = ssim(torch.from_numpy(pred).float(), torch.from_numpy(target).float())
    assert got.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert got[i, j].item() == pytest.approx(skimage_ssim(pred[i, j], target[i, j]), abs=1e-3)
    assert len(set(np.round(got.flatten().tolist(), 4))) == 6  # genuinely different per image


def test_ssim_map_matches_skimage_map_inside_the_border():
    target = natural_image("astronaut", 8)
    pred = degrade(target, seed=2)
    _, expected_map = skimage_ssim(pred, target, full=True)
    got = ssim_map(torch.from_numpy(pred), torch.from_numpy(target)).numpy()
    assert got.shape == (target.shape[0] - 10, target.shape[1] - 10, 3)
    np.testing.assert_allclose(got, expected_map[5:-5, 5:-5], atol=1e-9)


def test_ssim_of_identical_images_is_one():
    image = torch.rand(3, 16, 19, 3)
    assert torch.allclose(ssim(image, image), torch.ones(3), atol=1e-6)


def test_ssim_gradcheck_float64():
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(12, 13, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.rand(12, 13, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    # fast_mode checks a random projection of the Jacobian (full mode costs ~1000 evaluations).
    assert torch.autograd.gradcheck(ssim, (pred, target), fast_mode=True)
    # Full Jacobian of the per-pixel map on the smallest image: 11x11 gives a 1x1x3 map.
    small_pred = pred[:11, :11].detach().requires_grad_(True)
    assert torch.autograd.gradcheck(ssim_map, (small_pred, target[:11, :11].detach()))


def test_dssim_loss_gradient_steps_increase_ssim():
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(24, 24, 3, generator=generator)
    pred = torch.rand(24, 24, 3, generator=generator).requires_grad_(True)
    optimizer = torch.optim.Adam([pred], lr=0.05)
    start = ssim(pred, target).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss = 1.0 - ssim(pred, target)
        loss.backward()
        optimizer.step()
    assert ssim(pred, target).item() > start + 0.3


def test_ssim_rejects_too_small_or_mismatched_images():
    with pytest.raises(ConfigError, match="at least 11x11"):
        ssim(torch.rand(10, 20, 3), torch.rand(10, 20, 3))
    with pytest.raises(ConfigError, match="shapes differ"):
        ssim(torch.rand(12, 12, 3), torch.rand(12, 13, 3))
    with pytest.raises(ConfigError, match="target"):
        ssim(torch.rand(12, 12, 3), np.zeros((12, 12, 3)))


# ----------------------------------------------------------------------------- meshes

@pytest.fixture(scope="module")
def unit_sphere():
    return trimesh.creation.icosphere(subdivisions=5, radius=1.0)


def test_identical_meshes_score_perfectly(unit_sphere):
    metrics = mesh_metrics(unit_sphere, unit_sphere, n_points=5000)
    assert metrics["chamfer_l1"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["normal_consistency"] == pytest.approx(1.0, abs=1e-9)
    assert metrics["fscore@0.01"] == 1.0


def test_concentric_spheres_match_the_analytic_distance(unit_sphere):
    radius_gap, n_points = 0.05, 20_000
    # Different tessellation, so the samples of the two surfaces are not in correspondence.
    larger = trimesh.creation.uv_sphere(radius=1.0 + radius_gap, count=[96, 96])
    thresholds = (0.045, 0.051, 0.053, 0.08)
    metrics = mesh_metrics(larger, unit_sphere, n_points=n_points, fscore_thresholds=thresholds)
    # Nearest sample sits at radial gap h plus a tangential offset rho with E[rho^2] = A/(pi N)
    # for N uniform samples on area A = 4 pi r^2, so E[d] ~ h + E[rho^2]/(2h) = h + 2 r^2/(h N).
    sampling_bias = 2 * (1.0**2 + (1.0 + radius_gap) ** 2) / 2 / (radius_gap * n_points)
    assert metrics["chamfer_l1"] == pytest.approx(radius_gap + sampling_bias, abs=5e-4)
    assert metrics["accuracy"] == pytest.approx(metrics["completeness"], abs=5e-4)
    assert metrics["normal_consistency"] > 0.999
    fscores = [metrics[f"fscore@{tau:g}"] for tau in thresholds]
    assert fscores[0] == 0.0  # every point is at least the gap away
    assert fscores[-1] == 1.0
    assert 0.0 < fscores[1] < fscores[2] < 1.0  # rises across the gap


def test_fscore_with_a_spurious_component(unit_sphere):
    # Prediction = the gt sphere plus a far copy of equal area: precision 1/2, recall 1, F = 2/3.
    pred = trimesh.util.concatenate([unit_sphere, unit_sphere.copy().apply_translation([5.0, 0, 0])])
    metrics = mesh_metrics(pred, unit_sphere, n_points=20_000, fscore_thresholds=(0.05,))
    assert metrics["precision@0.05"] == pytest.approx(0.5, abs=0.02)  # binomial sd 0.0035
    assert metrics["recall@0.05"] > 0.99
    assert metrics["fscore@0.05"] == pytest.approx(2 / 3, abs=0.02)
    assert metrics["accuracy"] > 1.9  # half the samples are ~4 units away


def test_normalize_makes_metrics_scale_free(unit_sphere):
    larger = trimesh.creation.uv_sphere(radius=1.1, count=[48, 48])
    kwargs = dict(n_points=5000, fscore_thresholds=(0.05,), normalize=True)
    small = mesh_metrics(larger, unit_sphere, **kwargs)
    scaled = mesh_metrics(larger.copy().apply_scale(10.0), unit_sphere.copy().apply_scale(10.0), **kwargs)
    for key, value in small.items():
        assert scaled[key] == pytest.approx(value, rel=1e-6, abs=1e-9)
    absolute = mesh_metrics(larger, unit_sphere, n_points=5000)
    # The gt bounding box's longest side is 2 (diameter), so normalised distances are halved.
    assert small["chamfer_l1"] == pytest.approx(absolute["chamfer_l1"] / 2.0, rel=1e-3)


def test_empty_prediction_gets_documented_worst_case(unit_sphere):
    diagonal = float(np.linalg.norm(unit_sphere.extents))
    degenerate = trimesh.Trimesh(vertices=np.zeros((3, 3)), faces=[[0, 1, 2]], process=False)
    for pred in (trimesh.Trimesh(), degenerate):
        metrics = mesh_metrics(pred, unit_sphere, fscore_thresholds=(0.01, 0.1))
        assert metrics["chamfer_l1"] == pytest.approx(diagonal)
        assert metrics["accuracy"] == metrics["completeness"] == metrics["chamfer_l1"]
        assert metrics["normal_consistency"] == 0.0
        assert metrics["fscore@0.01"] == metrics["fscore@0.1"] == metrics["recall@0.1"] == 0.0
    normalized = mesh_metrics(trimesh.Trimesh(), unit_sphere, normalize=True)
    assert normalized["chamfer_l1"] == pytest.approx(diagonal / 2.0)


def test_mesh_metrics_are_seeded(unit_sphere):
    larger = trimesh.creation.uv_sphere(radius=1.1, count=[48, 48])
    first = mesh_metrics(larger, unit_sphere, n_points=2000, seed=3)
    assert mesh_metrics(larger, unit_sphere, n_points=2000, seed=3) == first
    assert mesh_metrics(larger, unit_sphere, n_points=2000, seed=4) != first


def test_mesh_metrics_bad_inputs_raise_config_error(unit_sphere):
    with pytest.raises(ConfigError, match="gt_mesh: has no faces"):
        mesh_metrics(unit_sphere, trimesh.Trimesh())
    with pytest.raises(ConfigError, match="pred_mesh: expected a trimesh.Trimesh"):
        mesh_metrics(np.zeros((4, 3)), unit_sphere)
    with pytest.raises(ConfigError, match="n_points"):
        mesh_metrics(unit_sphere, unit_sphere, n_points=0)
    with pytest.raises(ConfigError, match="fscore_thresholds"):
        mesh_metrics(unit_sphere, unit_sphere, fscore_thresholds=(0.01, -1.0))
    with pytest.raises(ConfigError, match="fscore_thresholds"):
        mesh_metrics(unit_sphere, unit_sphere, fscore_thresholds=0.01)
