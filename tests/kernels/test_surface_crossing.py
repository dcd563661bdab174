"""The Triton first-crossing kernel finds exactly the reference's brackets; the reference
equals a plain Python loop over the samples."""
import pytest
import torch

from render3d.kernels.surface_crossing import surface_crossing_triton
from render3d.ops.surface_crossing import surface_crossing, surface_crossing_reference
from tests.kernels.harness import assert_matches_reference


def _packed(n_rays: int, seed: int, device, max_samples: int = 150):
    """Random packed samples: some rays empty or with one sample, values that cross the level
    several times on many rays (the first crossing must win), samples exactly at the level."""
    generator = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_samples, (n_rays,), generator=generator)
    if n_rays >= 3:
        counts[0], counts[1] = 0, 1
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts)
    t = torch.rand(ray_indices.shape[0], generator=generator)
    phase = torch.rand(n_rays, generator=generator)[ray_indices] * 6.0
    frequency = torch.rand(n_rays, generator=generator)[ray_indices] * 3.0
    values = torch.sin(phase + frequency * torch.arange(ray_indices.shape[0], dtype=torch.float32) * 0.1)
    values[::7] = 0.25  # exactly at the level: outside (inside means strictly above)
    return ray_indices.to(device), t.to(device), values.to(device)


def _python_loop(ray_indices, t, values, n_rays, level):
    index = [-1] * n_rays
    for i in range(ray_indices.shape[0] - 1):
        ray = int(ray_indices[i])
        if int(ray_indices[i + 1]) == ray and index[ray] < 0 and values[i] <= level < values[i + 1]:
            index[ray] = i
    return torch.tensor(index, dtype=torch.int64)


@pytest.mark.parametrize("n_rays", [0, 1, 17, 100])
def test_kernel_matches_reference(n_rays, device):
    ray_indices, t, values = _packed(n_rays, seed=n_rays, device=device)
    inputs = dict(ray_indices=ray_indices, t=t, values=values, n_rays=n_rays, level=0.25)
    # Integer index and copied samples: exact equality is the contract.
    assert_matches_reference(surface_crossing_reference, surface_crossing_triton, inputs, atol=0, rtol=0,
                             grad_inputs=set())


def test_kernel_scans_past_its_first_block(device):
    # One ray of 300 samples, outside up to 199, then alternating: the crossings are at
    # 199, 202, 205, ... (blocks of 64: the fourth block holds the first one).
    values = torch.full((300,), -1.0)
    values[200:] = torch.where(torch.arange(100) % 3 == 0, 1.0, -1.0)
    ray_indices = torch.zeros(300, dtype=torch.int64)
    t = torch.linspace(0, 1, 300)
    out = surface_crossing_triton(ray_indices.to(device), t.to(device), values.to(device), 1, 0.0)
    assert out.index.tolist() == [199]
    assert surface_crossing_reference(ray_indices, t, values, 1, 0.0).index.tolist() == [199]


def test_reference_equals_a_python_loop():
    ray_indices, t, values = _packed(23, seed=5, device="cpu", max_samples=40)
    out = surface_crossing_reference(ray_indices, t, values, 25, 0.25)  # two trailing rays without samples
    expected = _python_loop(ray_indices, t, values, 25, 0.25)
    assert torch.equal(out.index, expected)
    assert (expected >= 0).sum() > 5 and (expected < 0).sum() > 2
    hit = out.hit
    assert torch.equal(hit, expected >= 0)
    assert torch.equal(out.t_near[hit], t[expected[hit]]) and torch.equal(out.t_far[hit], t[expected[hit] + 1])
    assert (out.value_near[hit] <= 0.25).all() and (out.value_far[hit] > 0.25).all()
    assert (out.t_near[~hit] == 0).all() and (out.value_far[~hit] == 0).all()


def test_public_function_dispatches_to_the_kernel(monkeypatch, device):
    ray_indices, t, values = _packed(17, seed=2, device=device)
    monkeypatch.setenv("RENDER3D_BACKEND", "torch")
    expected = surface_crossing(ray_indices, t, values, 17, 0.25)
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")
    actual = surface_crossing(ray_indices, t, values, 17, 0.25)
    for a, b in zip(actual, expected):
        assert torch.equal(a, b)
