"""Hash-encoding Triton kernels against the PyTorch reference: indices bit for bit, values,
table and position gradients, on odd point counts and dense / hashed / mixed configs."""
import pytest
import torch

from render3d.kernels.hash_encoding import grid_indices_triton
from render3d.ops.hash_encoding import (
    grid_indices_reference,
    hash_encode,
    hash_encode_reference,
    hash_grid_layout,
    kernel_levels,
)
from tests.kernels.harness import assert_matches_reference

# Small tables and few levels: the interpreter runs every program in Python.
CONFIGS = {
    # resolutions 3, 5, 7: all dense (27 -> 32, 125 -> 128, 343 -> 344 entries, the last not a power of two).
    "dense_f1": {"otype": "HashGrid", "n_levels": 3, "n_features_per_level": 1, "log2_hashmap_size": 12,
                 "base_resolution": 3, "per_level_scale": 1.5},
    # resolutions 4, 7, 12, 20: dense, dense (344 entries), then hashed into 2^9 entries.
    "mixed_f2": {"otype": "HashGrid", "n_levels": 4, "n_features_per_level": 2, "log2_hashmap_size": 9,
                 "base_resolution": 4, "per_level_scale": 1.7},
    # resolutions 8, 16: both hashed into 2^6 entries.
    "hashed_f4": {"otype": "HashGrid", "n_levels": 2, "n_features_per_level": 4, "log2_hashmap_size": 6,
                  "base_resolution": 8, "per_level_scale": 2.0},
}


def _points(n: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(n, 3, generator=generator)
    if n >= 3:  # the cube's corners and faces exercise the dense wrap-around
        points[:3] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5]])
    return points.to(device)


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")


def test_config_shapes_are_as_described():
    assert [lv.hashed for lv in hash_grid_layout(CONFIGS["dense_f1"]).levels] == [False] * 3
    assert [lv.size for lv in hash_grid_layout(CONFIGS["dense_f1"]).levels] == [32, 128, 344]
    assert [lv.hashed for lv in hash_grid_layout(CONFIGS["mixed_f2"]).levels] == [False, False, True, True]
    assert [lv.hashed for lv in hash_grid_layout(CONFIGS["hashed_f4"]).levels] == [True, True]


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("n", [0, 1, 17, 1000])
def test_indices_are_bit_exact(name, n, device):
    config = CONFIGS[name]
    points = _points(n, device)
    entries, weights = grid_indices_triton(points, kernel_levels(hash_grid_layout(config)))
    expected_entries, expected_weights = grid_indices_reference(points, config)
    assert torch.equal(entries, expected_entries)
    # Same float32 operations in the same order on both sides.
    assert torch.equal(weights, expected_weights)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("n", [0, 1, 17, 1000])
def test_forward_and_gradients_match_reference(name, n, device, triton_backend):
    config = CONFIGS[name]
    layout = hash_grid_layout(config)
    generator = torch.Generator().manual_seed(n)
    inputs = {"x": _points(n, device),
              "params": torch.randn(layout.n_params, generator=generator).to(device)}
    # Forward: sums of 8 float32 products in another order. Table gradient: float32 atomics
    # vs float64 bincount sums of up to a few hundred terms. Position gradient: the level
    # scale (up to 20) times differences of O(1) values, summed over levels.
    assert_matches_reference(
        lambda x, params: hash_encode_reference(x, params, config),
        lambda x, params: hash_encode(x, params, config),
        inputs, atol=1e-5, rtol=1e-5, grad_atol=1e-4, grad_rtol=1e-4,
    )


@pytest.mark.parametrize("differentiated", [{"params"}, {"x"}])
def test_one_gradient_alone(differentiated, device, triton_backend):
    config = CONFIGS["mixed_f2"]
    layout = hash_grid_layout(config)
    inputs = {"x": _points(17, device), "params": torch.randn(layout.n_entries, 2).to(device)}
    # The kernel skips the gradient nobody asked for (tolerances as above).
    assert_matches_reference(
        lambda x, params: hash_encode_reference(x, params, config),
        lambda x, params: hash_encode(x, params, config),
        inputs, atol=1e-5, rtol=1e-5, grad_atol=1e-4, grad_rtol=1e-4, grad_inputs=differentiated,
    )
