"""Implicit differentiation of surface points against finite differences (float64)."""
import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.implicit_surface import implicit_surface_points
from render3d.ops.surface_search import find_surface


def _sphere_hit(origins, dirs, radius, centre):
    """Analytic first intersection of rays with the sphere (all rays must hit)."""
    oc = origins - centre
    b = (oc * dirs).sum(-1) / (dirs * dirs).sum(-1)
    c = ((oc * oc).sum(-1) - radius**2) / (dirs * dirs).sum(-1)
    t = -b - (b * b - c).sqrt()
    return origins + t[:, None] * dirs


def _rays(n=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    origins = torch.tensor([0.1, -0.2, -2.0], dtype=torch.float64) + 0.1 * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    dirs = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) + 0.08 * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return origins, dirs  # not unit length on purpose


def test_sphere_gradient_matches_central_finite_differences():
    origins, dirs = _rays()
    radius = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    centre = torch.tensor([0.05, 0.0, 0.1], dtype=torch.float64, requires_grad=True)
    o = origins.clone().requires_grad_(True)
    d = dirs.clone().requires_grad_(True)
    weights = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def field(p):
        return radius - (p - centre).norm(dim=-1)  # inside above 0

    with torch.no_grad():
        found = _sphere_hit(origins, dirs, radius, centre)
    points = implicit_surface_points(field, found, o, d, params=[radius, centre])
    assert torch.equal(points, found)
    (points * weights).sum().backward()

    def loss(r, c, oo, dd):
        return float((_sphere_hit(oo, dd, r, c) * weights).sum())

    base = [radius.detach(), centre.detach(), origins, dirs]
    eps = 1e-6
    for index, analytic in enumerate([radius.grad, centre.grad, o.grad, d.grad]):
        numeric = torch.zeros_like(base[index])
        for flat in range(base[index].numel()):
            plus = [b.clone() for b in base]
            minus = [b.clone() for b in base]
            plus[index].view(-1)[flat] += eps
            minus[index].view(-1)[flat] -= eps
            numeric.view(-1)[flat] = (loss(*plus) - loss(*minus)) / (2 * eps)
        # central differences in float64: error ~ eps^2 * f''' + 1e-16 / eps, well under 1e-4 relative
        torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-8)


def test_sphere_path_passes_gradcheck():
    origins, dirs = _rays(3, seed=2)

    def through_search(radius, centre, o, d):
        with torch.no_grad():
            found = _sphere_hit(o, d, radius, centre)
        return implicit_surface_points(lambda p: radius - (p - centre).norm(dim=-1), found, o, d, params=[radius, centre])

    inputs = (torch.tensor(0.6, dtype=torch.float64, requires_grad=True),
              torch.tensor([0.0, 0.1, 0.0], dtype=torch.float64, requires_grad=True),
              origins.requires_grad_(True), dirs.requires_grad_(True))
    assert torch.autograd.gradcheck(through_search, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_tiny_mlp_gradient_through_march_and_secant_matches_finite_differences():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Softplus(beta=10), torch.nn.Linear(8, 1)).double()

    def field(p):  # a sphere of radius 0.8 perturbed by the MLP; inside above 0
        return 0.8 - p.norm(dim=-1) + 0.1 * torch.tanh(mlp(p).squeeze(-1))

    origins, dirs = _rays(4, seed=3)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    weights = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def search() -> torch.Tensor:
        hit = find_surface(field, origins, dirs, 0.5, 3.0, n_steps=64, n_secant=40)
        assert hit.hit.all()
        return hit.points

    points = implicit_surface_points(field, search(), origins, dirs, params=mlp.parameters())
    (points * weights).sum().backward()
    eps = 1e-6
    for parameter in mlp.parameters():
        numeric = torch.zeros_like(parameter)
        for flat in range(parameter.numel()):
            values = []
            for sign in (1, -1):
                with torch.no_grad():
                    parameter.view(-1)[flat] += sign * eps
                    values.append(float((search() * weights).sum()))
                    parameter.view(-1)[flat] -= sign * eps
            numeric.view(-1)[flat] = (values[0] - values[1]) / (2 * eps)
        torch.testing.assert_close(parameter.grad, numeric, rtol=1e-4, atol=1e-7)


def test_only_requested_gradients_and_shape_errors():
    origins, dirs = _rays(2)
    radius = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    frozen = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    with torch.no_grad():
        found = _sphere_hit(origins, dirs, radius, frozen)
    points = implicit_surface_points(lambda p: radius - (p - frozen).norm(dim=-1), found, origins, dirs, params=[radius, frozen])
    points.sum().backward()
    assert radius.grad is not None and frozen.grad is None
    with pytest.raises(ConfigError, match="implicit_surface_points"):
        implicit_surface_points(lambda p: p[:, 0], torch.zeros(2, 3), torch.zeros(3, 3), torch.zeros(2, 3))
