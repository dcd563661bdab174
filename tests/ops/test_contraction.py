"""Scene contraction against its definition: the inner box kept, the rest of space squeezed
into the shell between the cubes of half-size 1 and 2, and the inverse."""
import pytest
import torch

from render3d.ops.contraction import contract, inner_normalisation, uncontract

INNER = torch.tensor([[-1.0, 0.0, 2.0], [3.0, 1.0, 4.0]])  # centre (1, 0.5, 3), half-sizes (2, 0.5, 1)


def _normalised(points):
    lo, hi = INNER
    return (points - lo) / (hi - lo) * 2 - 1


def test_the_inner_box_is_kept_linearly():
    unit = torch.rand(500, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    points = INNER[0] + (unit + 1) / 2 * (INNER[1] - INNER[0])
    torch.testing.assert_close(contract(points, *inner_normalisation(INNER)), unit, atol=1e-6, rtol=0)


@pytest.mark.parametrize("r", [1.5, 2.0, 10.0, 1000.0])
def test_r_half_sizes_away_lands_at_two_minus_one_over_r(r):
    centre, half = INNER.mean(0), (INNER[1] - INNER[0]) / 2
    # Along each axis and along a diagonal direction whose L-inf norm is r.
    directions = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0], [1.0, -0.5, 0.25]])
    points = centre + r * directions * half
    contracted = contract(points, *inner_normalisation(INNER))
    expected = (2 - 1 / r) * directions  # directions already have L-inf norm 1
    torch.testing.assert_close(contracted, expected, atol=2e-5, rtol=1e-5)


def test_all_of_space_fits_in_the_cube_of_half_size_two_and_comes_back():
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(2000, 3, generator=generator) * torch.logspace(-1, 3, 2000)[:, None]
    contracted = contract(points, *inner_normalisation(INNER))
    assert contracted.abs().max() < 2.0
    norms = _normalised(points).abs().amax(-1)
    # The contraction keeps the direction and is monotone in the L-inf norm.
    order = torch.argsort(norms)
    assert (torch.diff(contracted.abs().amax(-1)[order]) >= -1e-6).all()
    back = uncontract(contracted, *inner_normalisation(INNER))
    near = norms < 100
    torch.testing.assert_close(back[near], points[near], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(contract(back, *inner_normalisation(INNER)), contracted, atol=1e-5, rtol=0)


def test_uncontract_of_the_outer_faces_stays_finite():
    faces = torch.tensor([[2.0, 0.0, 0.0], [-2.0, 2.0, 1.0], [0.5, -0.5, 2.0]])
    points = uncontract(faces, *inner_normalisation(INNER))
    assert torch.isfinite(points).all()
    assert (_normalised(points).abs().amax(-1) > 5000).all()
