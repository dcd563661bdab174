"""Volume rendering references against per-ray loops and the dense formula (packed == dense),
float64 gradcheck, and input checks."""
import math

import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.volume_rendering import (
    accumulate_along_rays,
    render_weights_from_alpha,
    render_weights_from_density,
    volume_render,
)
from tests.kernels.harness import assert_reference_gradcheck


@pytest.fixture(autouse=True)
def _torch_backend(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "torch")


def _packed(counts, seed=0, dtype=torch.float32):
    """Random packed samples with ``counts[r]`` samples on ray r (0 allowed)."""
    generator = torch.Generator().manual_seed(seed)
    counts = torch.tensor(counts)
    ray_indices = torch.repeat_interleave(torch.arange(len(counts)), counts)
    n = ray_indices.numel()
    deltas = torch.rand(n, generator=generator, dtype=torch.float64) * 0.2 + 0.01
    t_starts = torch.rand(n, generator=generator, dtype=torch.float64) * 3
    return dict(
        ray_indices=ray_indices,
        t_starts=t_starts.to(dtype),
        t_ends=(t_starts + deltas).to(dtype),
        sigmas=(torch.rand(n, generator=generator, dtype=torch.float64) * 6).to(dtype),
        rgbs=torch.rand(n, 3, generator=generator, dtype=torch.float64).to(dtype),
    )


def _loop_render(s, n_rays):
    """Per-ray front-to-back compositing in Python floats: weights, rgb, opacity, depth."""
    weights, rgb, opacity, depth = [], [[0.0] * 3 for _ in range(n_rays)], [0.0] * n_rays, [0.0] * n_rays
    transmittance, current = 1.0, -1
    for i, ray in enumerate(s["ray_indices"].tolist()):
        if ray != current:
            transmittance, current = 1.0, ray
        t0, t1, sigma = s["t_starts"][i].item(), s["t_ends"][i].item(), s["sigmas"][i].item()
        alpha = 1 - math.exp(-sigma * (t1 - t0))
        weight = transmittance * alpha
        weights.append(weight)
        for c in range(3):
            rgb[ray][c] += weight * s["rgbs"][i, c].item()
        opacity[ray] += weight
        depth[ray] += weight * (t0 + t1) / 2
        transmittance *= 1 - alpha
    return torch.tensor(weights), torch.tensor(rgb), torch.tensor(opacity)[:, None], torch.tensor(depth)[:, None]


def test_volume_render_matches_per_ray_loop():
    s = _packed([5, 0, 1, 12, 3])
    background = torch.tensor([0.2, 0.4, 0.9])
    out = volume_render(s["t_starts"], s["t_ends"], s["ray_indices"], 5, s["sigmas"], s["rgbs"], background)
    weights, rgb, opacity, depth = _loop_render(s, 5)
    # float32 exp / products against Python doubles.
    torch.testing.assert_close(out["weights"], weights.float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["opacity"], opacity.float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["depth"], depth.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["rgb"], (rgb + (1 - opacity) * background).float(), atol=1e-6, rtol=1e-5)
    assert out["rgb"][1].tolist() == pytest.approx(background.tolist())  # empty ray shows background


def test_weights_from_density_and_alpha_agree_with_loop():
    s = _packed([4, 7, 0, 2])
    weights, transmittance, alphas = render_weights_from_density(
        s["t_starts"], s["t_ends"], s["sigmas"], s["ray_indices"], 4
    )
    expected, _, _, _ = _loop_render(s, 4)
    torch.testing.assert_close(weights, expected.float(), atol=1e-6, rtol=1e-5)
    first = torch.tensor([0, 4, 11])
    assert transmittance[first].tolist() == [1.0, 1.0, 1.0]
    from_alpha = render_weights_from_alpha(alphas, s["ray_indices"], 4)
    for a, b in zip(from_alpha, (weights, transmittance, alphas)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)  # exp(sum log) vs exp(-sum tau) in float32


def test_alpha_of_one_blocks_the_rest_of_its_ray_only():
    alphas = torch.tensor([0.5, 1.0, 0.7, 0.3, 0.4])
    ray_indices = torch.tensor([0, 0, 0, 1, 1])
    weights, transmittance, _ = render_weights_from_alpha(alphas, ray_indices, 2)
    assert weights[:2].tolist() == pytest.approx([0.5, 0.5])
    assert weights[2].item() < 1e-10
    assert transmittance[3:].tolist() == pytest.approx([1.0, 0.7])


def test_packed_equals_dense():
    rays, k = 6, 9
    generator = torch.Generator().manual_seed(4)
    edges = torch.sort(torch.rand(rays, k + 1, generator=generator) * 4, dim=-1).values
    sigmas = torch.rand(rays, k, generator=generator) * 3
    rgbs = torch.rand(rays, k, 3, generator=generator)
    alphas = 1 - torch.exp(-sigmas * (edges[:, 1:] - edges[:, :-1]))
    transmittance = torch.cumprod(torch.cat([torch.ones(rays, 1), 1 - alphas[:, :-1]], dim=-1), dim=-1)
    dense_weights = transmittance * alphas
    ray_indices = torch.arange(rays).repeat_interleave(k)
    out = volume_render(
        edges[:, :-1].reshape(-1), edges[:, 1:].reshape(-1), ray_indices, rays, sigmas.reshape(-1), rgbs.reshape(-1, 3)
    )
    torch.testing.assert_close(out["weights"], dense_weights.reshape(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["rgb"], (dense_weights[..., None] * rgbs).sum(1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["opacity"], dense_weights.sum(1, keepdim=True), atol=1e-6, rtol=1e-5)
    mids = (edges[:, 1:] + edges[:, :-1]) / 2
    torch.testing.assert_close(out["depth"], (dense_weights * mids).sum(1, keepdim=True), atol=1e-5, rtol=1e-5)


def test_late_rays_are_not_cancelled_by_early_optical_depth():
    # Ray 0 accumulates an optical depth of 1e6; ray 1's tiny one must survive exactly.
    t_starts = torch.tensor([0.0, 1.0, 0.0, 0.001])
    t_ends = torch.tensor([1.0, 2.0, 0.001, 0.002])
    sigmas = torch.tensor([5e5, 5e5, 1.0, 1.0])
    _, transmittance, _ = render_weights_from_density(t_starts, t_ends, sigmas, torch.tensor([0, 0, 1, 1]), 2)
    assert transmittance[2].item() == 1.0
    assert transmittance[3].item() == pytest.approx(math.exp(-0.001), rel=1e-6)


def test_accumulate_along_rays():
    weights = torch.tensor([0.5, 0.25, 1.0])
    values = torch.tensor([[1.0, 2.0], [4.0, 8.0], [3.0, 3.0]])
    ray_indices = torch.tensor([0, 0, 2])
    assert accumulate_along_rays(weights, values, ray_indices, 4).tolist() == [[1.5, 3.0], [0, 0], [3, 3], [0, 0]]
    assert accumulate_along_rays(weights, None, ray_indices, 4).tolist() == [[0.75], [0.0], [1.0], [0.0]]


def test_per_ray_background_and_empty_input():
    background = torch.rand(3, 3)
    empty = torch.zeros(0)
    out = volume_render(empty, empty, torch.zeros(0, dtype=torch.int64), 3, empty, torch.zeros(0, 3), background)
    assert torch.equal(out["rgb"], background) and out["opacity"].abs().sum() == 0
    assert out["weights"].shape == (0,) and out["depth"].shape == (3, 1)


def test_reference_gradcheck_float64():
    s = _packed([3, 0, 4], seed=5, dtype=torch.float64)

    def render(t_starts, t_ends, ray_indices, sigmas, rgbs, background):
        out = volume_render(t_starts, t_ends, ray_indices, 3, sigmas, rgbs, background)
        return out["rgb"], out["opacity"], out["depth"], out["weights"]

    assert_reference_gradcheck(
        render, dict(s, background=torch.rand(3, 3, dtype=torch.float64)), grad_inputs={"sigmas", "rgbs", "background"}
    )
    assert_reference_gradcheck(
        lambda **kw: render_weights_from_density(**kw, n_rays=3),
        {k: s[k] for k in ("t_starts", "t_ends", "sigmas", "ray_indices")},
    )
    alphas = 1 - torch.exp(-s["sigmas"] * 0.1)
    assert_reference_gradcheck(
        lambda **kw: render_weights_from_alpha(**kw, n_rays=3), dict(alphas=alphas, ray_indices=s["ray_indices"])
    )


@pytest.mark.parametrize(
    "ray_indices, message",
    [
        (torch.tensor([0, 1, 0]), "sorted"),
        (torch.tensor([0, 1, 2]), r"within \[0, 2\)"),
        (torch.tensor([0.0, 1.0, 1.0]), "int64"),
    ],
)
def test_bad_ray_indices_raise(ray_indices, message):
    x = torch.ones(3)
    with pytest.raises(ConfigError, match=message):
        volume_render(x, x + 1, ray_indices, 2, x, torch.ones(3, 3))


def test_bad_shapes_raise():
    x, ray_indices = torch.ones(3), torch.tensor([0, 0, 1])
    with pytest.raises(ConfigError, match="rgbs must be"):
        volume_render(x, x + 1, ray_indices, 2, x, torch.ones(3, 4))
    with pytest.raises(ConfigError, match="background must be"):
        volume_render(x, x + 1, ray_indices, 2, x, torch.ones(3, 3), torch.ones(5, 3))
    with pytest.raises(ConfigError, match="sigmas must be"):
        volume_render(x, x + 1, ray_indices, 2, torch.ones(2), torch.ones(3, 3))
    with pytest.raises(ConfigError, match="values must be"):
        accumulate_along_rays(x, torch.ones(2, 3), ray_indices, 2)
