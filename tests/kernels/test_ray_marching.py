"""The Triton ray-marching kernel emits exactly the reference's samples."""
import importlib

import pytest
import torch

from render3d.kernels.ray_marching import ray_marching_triton
from render3d.ops.ray_marching import MarchSpec, OccupancyGrid, ray_marching, ray_marching_reference
from tests.kernels.harness import assert_matches_reference

# The module itself: `render3d.ops.ray_marching` as an attribute is the re-exported function.
rm = importlib.import_module("render3d.ops.ray_marching")

BOX = torch.tensor([[-1.0, -0.5, -0.75], [1.0, 0.5, 0.75]])


def _rays(count, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    origins = torch.randn(count, 3, generator=generator) * 2.0
    dirs = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator) * 0.3 - origins, dim=-1)
    dirs[: count // 5, 0] = 0.0  # some rays parallel to the x slabs
    return origins.to(device), dirs.to(device)


def _grid(device, contracted=False):
    grid = OccupancyGrid(BOX, resolution=10, contracted=contracted)
    # A shell around the centre, and (contracted) another 2 to 4 box sizes away.
    shells = lambda r: ((r - 0.4).abs() < 0.15) | ((r > 2.0) & (r < 4.0))  # noqa: E731
    grid.update(0, lambda x: shells(x.norm(dim=-1)).float() * 30.0, occ_thre=1.0)
    return grid.to(device)


@pytest.mark.parametrize("n_rays", [0, 1, 17, 100])
@pytest.mark.parametrize("cone", [0.0, 0.04])
@pytest.mark.parametrize("grid_kind", [None, "box", "contracted"])
def test_kernel_emits_the_reference_samples(n_rays, cone, grid_kind, device):
    origins, dirs = _rays(n_rays, device, seed=n_rays)
    grid = None if grid_kind is None else _grid(device, contracted=grid_kind == "contracted")
    box = BOX * (5.0 if grid_kind == "contracted" else 1.0)
    t_min, t_max = rm._clipped_interval(origins, dirs, box.to(device), 0.2, 8.0)
    spec = MarchSpec.build(grid, 0.1, cone)
    inputs = dict(origins=origins, dirs=dirs, t_min=t_min, t_max=t_max, spec=spec)
    # Same float32 operations in the same order on both sides: exact equality is the contract.
    assert_matches_reference(ray_marching_reference, ray_marching_triton, inputs, atol=0, rtol=0, grad_inputs=set())
    if n_rays >= 17:
        assert ray_marching_reference(**inputs)[0].numel() > n_rays


def test_public_function_dispatches_to_kernel_with_sigma_filter(monkeypatch, device):
    origins, dirs = _rays(17, device, seed=3)
    grid = _grid(device)

    def sigma_fn(t_starts, t_ends, ray_indices):
        return 40.0 * torch.sigmoid(8 * (t_starts - 2.0))

    def march():
        return ray_marching(
            origins, dirs, grid, aabb=BOX, step_size=0.05, sigma_fn=sigma_fn, alpha_thre=0.01, early_stop_eps=1e-3
        )

    monkeypatch.setenv("RENDER3D_BACKEND", "torch")
    expected = march()
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")
    actual = march()
    assert expected[0].numel() > 17
    for a, b in zip(actual, expected):
        assert torch.equal(a, b)
