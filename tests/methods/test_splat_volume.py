"""splat_density_volume: the Gaussians' opacity field on a grid, with the documented
(spacing/2)^2 widening, the 1/255 footprint cut-off and memory-bounded blocks."""
import math

import torch

from render3d.methods._splat_volume import ALPHA_CUTOFF, splat_density_volume
from render3d.ops.rotations import quaternion_to_matrix

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
RES = (21, 21, 21)  # spacing 0.1, voxel 10 at the centre


def grid_points(box=BOX, res=RES):
    axes = [torch.linspace(float(box[0, i]), float(box[1, i]), res[i]) for i in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def dense_reference(means, quats, log_scales, opacities, box=BOX, res=RES):
    """sum_i o_i exp(-d^T (Sigma_i + (spacing/2)^2 I)^-1 d / 2) at every grid point, float64."""
    spacing = float(((box[1] - box[0]) / (torch.tensor(res) - 1)).max())
    rotation = quaternion_to_matrix(quats.double())
    cov = rotation @ torch.diag_embed(log_scales.double().exp() ** 2) @ rotation.transpose(1, 2)
    cov = cov + torch.eye(3, dtype=torch.float64) * (spacing / 2) ** 2
    d = grid_points(box, res).double()[..., None, :] - means.double()  # [X,Y,Z,N,3]
    q = torch.einsum("...ni,nij,...nj->...n", d, torch.linalg.inv(cov), d)
    terms = opacities.double() * torch.exp(-0.5 * q)
    return terms, terms.sum(-1)


def test_isotropic_gaussian_at_the_centre_matches_the_formula():
    sigma, o = 0.1, 0.8
    means, quats = torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]])
    log_scales = torch.full((1, 3), math.log(sigma))
    volume = splat_density_volume(means, quats, log_scales, torch.tensor([o]), BOX, RES)
    assert volume.shape == RES and volume.dtype == torch.float32
    assert float(volume[10, 10, 10]) == pytest_approx(o)
    assert torch.argmax(volume).item() == 10 * 21 * 21 + 10 * 21 + 10
    var = sigma**2 + 0.05**2  # widened by (spacing / 2)^2
    for index in [(11, 10, 10), (10, 12, 10), (11, 11, 9), (13, 10, 10)]:
        r2 = sum(((i - 10) * 0.1) ** 2 for i in index)
        expected = o * math.exp(-r2 / (2 * var))
        assert float(volume[index]) == pytest_approx(expected), index
    # far from the Gaussian (below the cut-off) nothing is written
    assert float(volume[0, 0, 0]) == 0.0 and float(volume[10, 10, 20]) == 0.0


def pytest_approx(value):
    import pytest

    return pytest.approx(value, rel=1e-4, abs=1e-6)


def test_anisotropic_rotated_gaussians_match_the_dense_field_above_the_cutoff():
    g = torch.Generator().manual_seed(0)
    n = 6
    means = (torch.rand(n, 3, generator=g) - 0.5) * 1.2
    quats = torch.randn(n, 4, generator=g)
    log_scales = torch.log(torch.rand(n, 3, generator=g) * 0.15 + 0.02)
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    volume = splat_density_volume(means, quats, log_scales, opacities, BOX, RES).double()
    terms, total = dense_reference(means, quats, log_scales, opacities)
    # every term above the cut-off is written; terms below it may be dropped
    counted = torch.where(terms >= ALPHA_CUTOFF, terms, torch.zeros(())).sum(-1)
    assert torch.all(volume >= counted - 1e-5)
    assert torch.all(volume <= total + 1e-5)
    assert float((volume - total).abs().max()) < n * ALPHA_CUTOFF
    assert float(total.max()) > 0.5  # the test field is not empty


def test_gaussian_outside_the_box_or_too_transparent_contributes_nothing():
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2)
    outside = splat_density_volume(torch.tensor([[2.0, 0, 0], [0, -1.6, 0]]), quats, torch.full((2, 3), math.log(0.05)),
                                   torch.tensor([0.9, 0.9]), BOX, RES)
    assert torch.all(outside == 0)
    faint = splat_density_volume(torch.tensor([[0.03, -0.02, 0.01]]), quats[:1], torch.full((1, 3), math.log(0.3)),
                                 torch.tensor([0.9 / 255]), BOX, RES)
    assert torch.all(faint == 0)
    visible = splat_density_volume(torch.zeros(1, 3), quats[:1], torch.full((1, 3), math.log(0.3)),
                                   torch.tensor([1.5 / 255]), BOX, RES)
    assert float(visible[10, 10, 10]) == pytest_approx(1.5 / 255)
    empty = splat_density_volume(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), BOX, RES)
    assert empty.shape == RES and torch.all(empty == 0)


def test_non_cubic_box_and_resolution():
    box = torch.tensor([[0.0, -1.0, 2.0], [2.0, 1.0, 3.0]])
    res = (11, 21, 6)  # spacing 0.2, 0.1, 0.2
    means = torch.tensor([[1.0, 0.3, 2.4]])
    quats = torch.tensor([[0.9, 0.1, -0.3, 0.2]])
    log_scales = torch.log(torch.tensor([[0.3, 0.1, 0.2]]))
    volume = splat_density_volume(means, quats, log_scales, torch.tensor([0.7]), box, res)
    assert volume.shape == res
    terms, total = dense_reference(means, quats, log_scales, torch.tensor([0.7]), box, res)
    above = total >= ALPHA_CUTOFF
    torch.testing.assert_close(volume.double()[above], total[above], atol=1e-5, rtol=1e-4)


def test_result_is_independent_of_the_pair_budget():
    g = torch.Generator().manual_seed(1)
    n = 30
    means = (torch.rand(n, 3, generator=g) - 0.5) * 1.8
    quats = torch.randn(n, 4, generator=g)
    log_scales = torch.log(torch.rand(n, 3, generator=g) * 0.1 + 0.02)
    opacities = torch.rand(n, generator=g)
    huge = splat_density_volume(means, quats, log_scales, opacities, BOX, RES, pair_budget=1 << 30)
    for budget in (1, 7, 500):
        small = splat_density_volume(means, quats, log_scales, opacities, BOX, RES, pair_budget=budget)
        torch.testing.assert_close(small, huge, atol=1e-6, rtol=1e-6)
    assert float(huge.sum()) > 1.0
