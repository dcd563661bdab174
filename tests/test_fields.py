"""The shared neural fields: encodings, the geometric initialisation, codes and gradients."""
from functools import partial

import pytest
import torch

from render3d.errors import ConfigError
from render3d.fields import FourierFeatures, ImplicitField, field_gradient

HASH = {"n_levels": 4, "n_features_per_level": 2, "log2_hashmap_size": 10, "base_resolution": 4, "per_level_scale": 2.0}


def test_fourier_features_layout_and_octaves():
    enc = FourierFeatures(3, max_period_extent=1.0)
    x = torch.tensor([[0.25, -0.5, 0.125]])
    out = enc(x)
    assert out.shape == (1, 3 + 2 * 9) and enc.n_output_dims == 21
    assert torch.equal(out[:, :3], x)
    # octave k on axis a is column 3 + 3k + a of the sines: sin(2π 2^k x_a / 2)
    expected = torch.sin(torch.pi * torch.tensor([2.0**k * v for k in range(3) for v in x[0].tolist()]))
    torch.testing.assert_close(out[0, 3:12], expected)
    assert FourierFeatures(0)(x) is x
    assert FourierFeatures(5, "gaussian", sigma=2.0).n_output_dims == 13


@pytest.mark.parametrize("kwargs, match", [
    (dict(encoding="voxels"), "encoding"), (dict(activation="tanh"), "activation"),
    (dict(hidden_dim=0), "hidden_dim"), (dict(latent_dim=-1), "latent_dim"), (dict(bound=0.0), "bound"),
])
def test_bad_field_options_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ImplicitField(**kwargs)


@pytest.mark.parametrize("encoding", ["none", "fourier", "hash"])
def test_geometric_init_is_a_sphere_like_sdf(encoding):
    torch.manual_seed(0)
    radius = 0.3
    field = ImplicitField(encoding=encoding, bound=0.55, hidden_dim=128, n_layers=3, geometric_init=True,
                          init_radius=radius, hash_config=HASH, latent_dim=2)
    x = torch.nn.functional.normalize(torch.randn(4000, 3), dim=-1) * torch.rand(4000, 1) * 0.55
    codes = torch.randn(4000, 2) * 0.01
    values, grads = field_gradient(partial(field, codes=codes), x)
    distance = x.norm(dim=-1) - radius
    far = distance.abs() > 0.12
    # Sign right away from the sphere, gradients pointing outwards with about unit length:
    # SAL's init is a sphere in expectation over the weights, within ~20 % at width 128.
    assert (torch.sign(values[far]) == torch.sign(distance[far])).float().mean() > 0.97
    # (Near the origin softplus smooths the cone's tip, so gradients are checked away from it.)
    away = x.norm(dim=-1) > 0.15
    cosine = torch.nn.functional.cosine_similarity(grads, x, dim=-1)
    assert cosine[away].mean() > 0.9
    assert (grads[away].norm(dim=-1).mean() - 1.0).abs() < 0.3


def test_shapes_codes_and_gradients_flow_twice():
    torch.manual_seed(1)
    field = ImplicitField(encoding="hash", bound=0.55, hidden_dim=16, n_layers=2, hash_config=HASH, latent_dim=3)
    codes = torch.nn.Parameter(torch.randn(7, 3))
    x = torch.rand(7, 3) - 0.5
    values, grads = field_gradient(partial(field, codes=codes, second_order=True), x, create_graph=True)
    assert values.shape == (7,) and grads.shape == (7, 3)
    ((grads.norm(dim=-1) - 1) ** 2).mean().backward()
    assert codes.grad is not None and codes.grad.abs().sum() > 0
    assert field.hash_grid.params.grad.abs().sum() > 0
    assert field.linears[0].weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="codes"):
        field(x)
    with pytest.raises(ConfigError, match="points"):
        field(torch.zeros(3), codes)
    empty = field(torch.zeros(0, 3), torch.zeros(0, 3))
    assert empty.shape == (0,)


def test_eikonal_residual_of_an_exact_sphere_sdf_is_zero():
    x = torch.randn(500, 3, dtype=torch.float64) * 0.4 + 0.01
    values, grads = field_gradient(lambda p: p.norm(dim=-1) - 0.3, x, create_graph=True)
    assert ((grads.norm(dim=-1) - 1) ** 2).mean() < 1e-20
    torch.testing.assert_close(values, x.norm(dim=-1) - 0.3)
