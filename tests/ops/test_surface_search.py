"""Surface search: the secant root, the uniform march + crossing + secant, and sphere tracing
against an analytic sphere."""
import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.surface_search import find_surface, secant_refine, sphere_trace

RADIUS = 0.6


def _inside_sphere(points):  # inside above level 0: the negated signed distance
    return RADIUS - points.norm(dim=-1)


def _rays(n, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=dtype), dim=-1) * 2.0
    targets = (torch.rand(n, 3, generator=generator, dtype=dtype) - 0.5) * 1.4  # some rays miss the sphere
    return origins, torch.nn.functional.normalize(targets - origins, dim=-1)


def _analytic_depth(origins, dirs):
    """First intersection distance with the sphere and whether there is one."""
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - RADIUS**2
    disc = b * b - c
    return -b - disc.clamp(min=0).sqrt(), disc > 0


def test_secant_root_matches_the_analytic_sphere_to_1e6():
    origins, dirs = _rays(200)
    depth, hits = _analytic_depth(origins, dirs)
    origins, dirs, depth = origins[hits], dirs[hits], depth[hits]
    # brackets of width 0.05 around the root, not centred on it
    t_near = depth - 0.03
    t_far = depth + 0.02
    value_near = _inside_sphere(origins + t_near[:, None] * dirs)
    value_far = _inside_sphere(origins + t_far[:, None] * dirs)
    assert (value_near <= 0).all() and (value_far > 0).all()
    t = secant_refine(_inside_sphere, origins, dirs, t_near, t_far, value_near, value_far)
    assert (t - depth).abs().max() < 1e-6


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_find_surface_hits_the_sphere_at_the_analytic_depth(dtype, tolerance):
    origins, dirs = _rays(300, dtype)
    depth, expected_hit = _analytic_depth(origins.double(), dirs.double())
    # Grazing rays (chord shorter than the step) may be missed: only clear hits and misses count.
    b = (origins.double() * dirs.double()).sum(-1)
    margin = (b * b - (origins.double() ** 2).sum(-1) + RADIUS**2)
    clear = margin.abs() > 0.01
    out = find_surface(_inside_sphere, origins, dirs, 0.5, 4.0, n_steps=64)
    assert torch.equal(out.hit[clear], expected_hit[clear])
    both = out.hit & expected_hit
    assert (out.t[both].double() - depth[both]).abs().max() < tolerance
    assert (out.t[~out.hit] == 4.0).all()
    torch.testing.assert_close(out.points, origins + out.t[:, None] * dirs)


def test_find_surface_takes_the_first_of_two_surfaces_and_per_ray_bounds():
    def shells(points):  # inside two concentric shells: 0.3 < r < 0.4 and 0.7 < r < 0.8
        r = points.norm(dim=-1)
        return torch.maximum(0.05 - (r - 0.35).abs(), 0.05 - (r - 0.75).abs())

    origins = torch.tensor([[0.0, 0.0, -2.0], [0.0, 0.0, -2.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    dirs = torch.tensor([[0.0, 0.0, 1.0]] * 3, dtype=torch.float64)
    out = find_surface(shells, origins, dirs, torch.tensor([0.5, 1.3, 3.0], dtype=torch.float64), 3.0, n_steps=200)
    assert out.hit.tolist() == [True, True, False]
    torch.testing.assert_close(out.t[:2], torch.tensor([2.0 - 0.8, 2.0 - 0.4], dtype=torch.float64), atol=1e-6, rtol=0)


def test_find_surface_handles_no_rays_and_bad_arguments():
    empty = find_surface(_inside_sphere, torch.zeros(0, 3), torch.zeros(0, 3), 0.0, 1.0)
    assert empty.hit.shape == (0,) and empty.points.shape == (0, 3)
    with pytest.raises(ConfigError, match="n_steps"):
        find_surface(_inside_sphere, torch.zeros(1, 3), torch.ones(1, 3), 0.0, 1.0, n_steps=1)
    with pytest.raises(ConfigError, match="near"):
        find_surface(_inside_sphere, torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3), 1.0)


def test_sphere_tracing_hits_the_sphere_at_the_analytic_depth():
    origins, dirs = _rays(300)
    depth, expected_hit = _analytic_depth(origins, dirs)
    b = (origins * dirs).sum(-1)
    clear = (b * b - (origins**2).sum(-1) + RADIUS**2).abs() > 0.01
    out = sphere_trace(lambda p: p.norm(dim=-1) - RADIUS, origins, dirs, 0.0, 4.0, n_steps=100, epsilon=1e-7)
    assert torch.equal(out.hit[clear], expected_hit[clear])
    both = out.hit & expected_hit
    assert (out.t[both] - depth[both]).abs().max() < 1e-6


def test_sphere_tracing_with_a_step_limit_does_not_skip_a_surface_behind_overestimates():
    def overestimate(points):  # a unit sphere's distance, times 10 outside: unsafe steps
        d = points.norm(dim=-1) - RADIUS
        return torch.where(d > 0, 10 * d, d)

    origins = torch.tensor([[0.0, 0.0, -2.0]], dtype=torch.float64)
    dirs = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    unsafe = sphere_trace(overestimate, origins, dirs, 0.0, 4.0, n_steps=200, epsilon=1e-9)
    limited = sphere_trace(overestimate, origins, dirs, 0.0, 4.0, n_steps=200, epsilon=1e-9, max_step=0.05)
    assert not unsafe.hit.item() or abs(unsafe.t.item() - (2 - RADIUS)) > 1e-3
    assert limited.hit.item() and abs(limited.t.item() - (2 - RADIUS)) < 1e-6
