"""The silhouette term of multi-view body fitting (render3d.body.silhouette)."""
import pytest
import torch

from render3d.body.silhouette import SilhouetteTargets, silhouette_energy
from render3d.errors import DataError


def _square_mask(size=32, low=8, high=24):
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, low:high, low:high] = True
    return mask


def _square_points(low=8, high=24):
    """``[1, M, 2]`` the centres of the square's pixels: points filling the mask."""
    side = torch.arange(low, high, dtype=torch.float32) + 0.5
    return torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(1, -1, 2)


def test_targets_distance_and_outline():
    targets = SilhouetteTargets.from_masks(_square_mask(), samples=50)
    distance = targets.outside_distance[0, 0]
    assert distance[8:24, 8:24].abs().max() == 0  # inside the mask
    assert distance[4, 16] == pytest.approx(4.0)  # 4 rows above the top edge
    assert distance[0, 0] == pytest.approx((8.0**2 + 8.0**2) ** 0.5)
    outline = targets.outline[0]
    assert outline.shape == (50, 2)
    on_edge = ((outline - 8.5).abs() < 1e-6) | ((outline - 23.5).abs() < 1e-6)  # the square's border pixel centres
    assert bool(on_edge.any(1).all())


def test_targets_pad_short_outlines_and_refuse_empty_masks():
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[0, 7:9, 7:9] = True  # 4 outline pixels
    mask[1, 2:14, 2:14] = True
    assert SilhouetteTargets.from_masks(mask, samples=20).outline.shape == (2, 20, 2)
    with pytest.raises(DataError, match="view 1 has an empty mask"):
        SilhouetteTargets.from_masks(torch.stack([mask[0], torch.zeros(16, 16, dtype=torch.bool)]))


def test_energy_is_least_for_points_filling_the_mask():
    targets = SilhouetteTargets.from_masks(_square_mask())
    points = _square_points()
    filled = float(silhouette_energy(points, targets))
    assert filled < 1e-3
    for shift in ((3.0, 0.0), (0.0, -5.0)):
        assert float(silhouette_energy(points + torch.tensor(shift), targets)) > filled + 1.0
    shrunk = (points - 16.0) * 0.6 + 16.0  # inside the mask, but not reaching its outline
    assert float(silhouette_energy(shrunk, targets)) > filled + 1.0


def test_gradient_descent_recovers_a_shift_and_a_scale():
    """Pixel centres of the square, shrunk and shifted by about 3 px, come back to span the
    square [8, 24]^2 (the mask's extent) to within the pixel grid's resolution."""
    targets = SilhouetteTargets.from_masks(_square_mask())
    points = _square_points()
    shift = torch.tensor([2.5, -1.5], requires_grad=True)
    scale = torch.tensor(0.8, requires_grad=True)
    optimiser = torch.optim.Adam([shift, scale], lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        silhouette_energy((points - 16.0) * scale + 16.0 + shift, targets).backward()
        optimiser.step()
    with torch.no_grad():
        fitted = (points[0] - 16.0) * scale + 16.0 + shift
    low, high = fitted.min(0).values, fitted.max(0).values
    assert float((low - 8.0).abs().max()) < 0.75 and float((high - 24.0).abs().max()) < 0.75


def test_points_outside_the_image_are_finite():
    targets = SilhouetteTargets.from_masks(_square_mask())
    points = torch.tensor([[[-50.0, 10.0], [100.0, 100.0]]], requires_grad=True)
    energy = silhouette_energy(points, targets)
    energy.backward()
    assert torch.isfinite(energy) and torch.isfinite(points.grad).all()
