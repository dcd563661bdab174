"""Hash encoding reference: tcnn's layout, indices and values against a slow scalar
implementation written here, gradients, init, config and input validation."""
import math

import numpy as np
import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.hash_encoding import (
    HashGrid,
    grid_indices_reference,
    hash_encode,
    hash_encode_reference,
    hash_grid_layout,
)
from tests.kernels.harness import assert_reference_gradcheck

MIXED = {"otype": "HashGrid", "n_levels": 5, "n_features_per_level": 2, "log2_hashmap_size": 10,
         "base_resolution": 4, "per_level_scale": 1.7}
# Resolutions 2 (8 entries, dense) and 4 (64 > 2^5: hashed, 32 entries): 80 parameters,
# small enough for numerical Jacobians.
TINY = {"otype": "HashGrid", "n_levels": 2, "n_features_per_level": 2, "log2_hashmap_size": 5,
        "base_resolution": 2, "per_level_scale": 2.0}


def _scalar_level(x, level, base_resolution, per_level_scale, log2_size, offset):
    """One point, one level, plain Python after tcnn's kernel_grid: returns the level's
    entries count and the 8 (entry, weight) pairs."""
    scale = float(np.exp2(np.float32(level) * np.log2(np.float32(per_level_scale))) * np.float32(base_resolution)
                  - np.float32(1))
    resolution = math.ceil(scale) + 1
    dense = 2**31 - 1 if float(resolution) ** 3 > 2.0**31 else resolution**3
    size = min((dense + 7) // 8 * 8, 2**log2_size)
    cells, fracs = [], []
    for coordinate in x:
        pos = float(np.float32(float(np.float32(coordinate)) * scale + 0.5))  # fmaf: one rounding
        cells.append(math.floor(pos))
        fracs.append(float(np.float32(pos - math.floor(pos))))
    corners = []
    for corner in range(8):
        local = [cells[d] + ((corner >> d) & 1) for d in range(3)]
        weight = 1.0
        for d in range(3):
            weight *= fracs[d] if (corner >> d) & 1 else 1.0 - fracs[d]
        stride = resolution**3 if resolution <= 1625 else 0xFFFFFFFF
        if size < stride:
            index = local[0] ^ ((local[1] * 2654435761) & 0xFFFFFFFF) ^ ((local[2] * 805459861) & 0xFFFFFFFF)
        else:
            index = (local[0] + local[1] * resolution + local[2] * resolution * resolution) & 0xFFFFFFFF
        corners.append((offset + index % size, weight))
    return size, corners


def _scalar_encode(points, table, config):
    """``[N, L, 8]`` entries, ``[N, L, 8]`` weights and ``[N, L*F]`` values, point by point."""
    entries, weights, values = [], [], []
    for x in points.tolist():
        offset, point_entries, point_weights, point_values = 0, [], [], []
        for level in range(config["n_levels"]):
            size, corners = _scalar_level(x, level, config["base_resolution"], config["per_level_scale"],
                                          config["log2_hashmap_size"], offset)
            offset += size
            point_entries.append([entry for entry, _ in corners])
            point_weights.append([weight for _, weight in corners])
            for feature in range(table.shape[1]):
                point_values.append(sum(w * float(table[e, feature]) for e, w in corners))
        entries.append(point_entries)
        weights.append(point_weights)
        values.append(point_values)
    return torch.tensor(entries), torch.tensor(weights), torch.tensor(values, dtype=torch.float64)


def _points(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    corners = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5]])
    return torch.cat([corners, torch.rand(n, 3, generator=generator)])


def test_default_layout_matches_tcnn_hand_computed():
    layout = hash_grid_layout({"otype": "HashGrid", "n_levels": 16, "n_features_per_level": 2,
                               "log2_hashmap_size": 19, "base_resolution": 16, "per_level_scale": 2.0})
    # Resolutions 16, 32, 64: 16^3 = 4096, 32^3 = 32768, 64^3 = 262144 entries (dense);
    # 128^3 > 2^19, so levels 3..15 hold 2^19 = 524288 entries each and are hashed.
    assert [lv.resolution for lv in layout.levels[:4]] == [16, 32, 64, 128]
    assert [lv.size for lv in layout.levels[:4]] == [4096, 32768, 262144, 524288]
    assert [lv.offset for lv in layout.levels[:5]] == [0, 4096, 36864, 299008, 823296]
    assert [lv.hashed for lv in layout.levels] == [False] * 3 + [True] * 13
    # 4096 + 32768 + 262144 + 13 * 524288 = 7114752 entries, times F = 2.
    assert layout.n_entries == 7114752 and layout.n_params == 14229504 and layout.n_output_dims == 32


def test_non_power_of_two_layout_matches_tcnn_hand_computed():
    layout = hash_grid_layout({"otype": "HashGrid", "n_levels": 4, "n_features_per_level": 1,
                               "log2_hashmap_size": 10, "base_resolution": 3, "per_level_scale": 1.5})
    # scales 2, 3.5, 5.75, 9.125 -> resolutions 3, 5, 7, 11; 27 -> 32, 125 -> 128, 343 -> 344
    # (rounded up to a multiple of 8), 1331 > 1024 -> hashed with 1024 entries.
    assert [lv.resolution for lv in layout.levels] == [3, 5, 7, 11]
    assert [lv.size for lv in layout.levels] == [32, 128, 344, 1024]
    assert [lv.offset for lv in layout.levels] == [0, 32, 160, 504]
    assert [lv.hashed for lv in layout.levels] == [False, False, False, True]
    assert layout.n_params == 1528


def test_huge_resolutions_follow_tcnns_caps():
    # R = 1000: 1e9 entries fit under 2^31 and 2^31 entries -> dense.
    dense = hash_grid_layout({"n_levels": 1, "log2_hashmap_size": 31, "base_resolution": 1001})
    assert (dense.levels[0].resolution, dense.levels[0].size, dense.levels[0].hashed) == (1001, 1003003008, False)
    # R = 1626 > 1625 (tcnn's MAX_BASES[3]): R^3 is capped at 2^31 - 1 -> 2^31 entries, hashed.
    capped = hash_grid_layout({"n_levels": 1, "log2_hashmap_size": 31, "base_resolution": 1626})
    assert (capped.levels[0].size, capped.levels[0].hashed) == (2**31, True)


@pytest.mark.parametrize("config", [
    MIXED,
    {"n_levels": 3, "n_features_per_level": 1, "log2_hashmap_size": 12, "base_resolution": 3, "per_level_scale": 1.5},
    {"n_levels": 2, "n_features_per_level": 4, "log2_hashmap_size": 6, "base_resolution": 5, "per_level_scale": 3.0},
])
def test_reference_matches_scalar_implementation(config):
    layout = hash_grid_layout(config)
    points = _points(12)
    table = torch.randn(layout.n_entries, layout.n_features_per_level, generator=torch.Generator().manual_seed(1))
    entries, weights, values = _scalar_encode(points, table, config)
    got_entries, got_weights = grid_indices_reference(points, config)
    assert torch.equal(got_entries, entries)
    # The scalar weights are products in float64 of float32 fractions; float32 rounding.
    torch.testing.assert_close(got_weights.double(), weights.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(hash_encode_reference(points, table, config).double(), values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hash_encode(points, table.view(-1), config).double(), values, atol=1e-5, rtol=1e-5)


def test_dense_corners_wrap_like_tcnn():
    # Level 0 of MIXED: scale 3, resolution 4, 64 entries. x = 1 gives pos 3.5, cell 3, so
    # the upper corner is 4 = R: index 4 + 4*4 + 4*16 = 84 wraps to 84 % 64 = 20.
    entries, _ = grid_indices_reference(torch.ones(1, 3), MIXED)
    assert entries[0, 0, 7].item() == 20 and entries[0, 0, 0].item() == 3 + 3 * 4 + 3 * 16


def test_encoding_is_continuous_and_level_major():
    layout = hash_grid_layout(MIXED)
    table = torch.zeros(layout.n_entries, 2)
    table[layout.levels[1].offset:layout.levels[2].offset] = 1.0  # only level 1 non-zero
    out = hash_encode_reference(torch.rand(50, 3), table, MIXED)
    expected = torch.zeros(50, 10)
    expected[:, 2:4] = 1.0  # partition of unity on level 1, features 2 and 3 of the output
    torch.testing.assert_close(out, expected)


def test_gradcheck_table_and_positions():
    config = TINY
    layout = hash_grid_layout(config)
    assert [lv.hashed for lv in layout.levels] == [False, True] and layout.n_params == 80
    generator = torch.Generator().manual_seed(3)
    inputs = {"x": torch.rand(4, 3, generator=generator) * 0.9 + 0.05,
              "params": torch.randn(layout.n_params, generator=generator), "config": config}
    assert_reference_gradcheck(hash_encode_reference, inputs)


def test_second_derivative_through_the_reference():
    config = TINY
    layout = hash_grid_layout(config)
    generator = torch.Generator().manual_seed(4)
    x = (torch.rand(3, 3, generator=generator, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    params = torch.randn(layout.n_params, generator=generator, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda p, q: hash_encode_reference(p, q, config), (x, params))


def test_hash_grid_init_and_aabb():
    torch.manual_seed(0)
    grid = HashGrid(MIXED, aabb=[[-2.0, -2.0, -2.0], [2.0, 2.0, 2.0]])
    layout = hash_grid_layout(MIXED)
    assert grid.params.shape == (layout.n_params,) and grid.n_output_dims == 10
    assert grid.params.abs().max() <= 1e-4 and grid.params.std() > 4e-5  # uniform in ±1e-4: std 5.8e-5
    world = torch.rand(2, 7, 3) * 4 - 2
    out = grid(world)
    assert out.shape == (2, 7, 10)
    torch.testing.assert_close(out.view(-1, 10), hash_encode(((world + 2) / 4).view(-1, 3), grid.params, MIXED))
    with pytest.raises(ConfigError, match="outside the aabb"):
        grid(torch.tensor([[2.5, 0.0, 0.0]]))
    with pytest.raises(ConfigError, match="aabb"):
        HashGrid(MIXED, aabb=[[0, 0, 0], [0, 1, 1]])


@pytest.mark.parametrize("bad", [[[1.5, 0.2, 0.2]], [[-0.1, 0.2, 0.2]], [[float("nan"), 0.2, 0.2]]])
def test_inputs_outside_the_unit_cube_are_rejected(bad):
    layout = hash_grid_layout(MIXED)
    with pytest.raises(ConfigError, match=r"x must lie in \[0, 1\]\^3"):
        hash_encode(torch.tensor(bad), torch.zeros(layout.n_params), MIXED)


def test_empty_input():
    layout = hash_grid_layout(MIXED)
    params = torch.zeros(layout.n_params, requires_grad=True)
    out = hash_encode(torch.zeros(0, 3), params, MIXED)
    assert out.shape == (0, 10)
    out.sum().backward()
    assert torch.equal(params.grad, torch.zeros_like(params))


@pytest.mark.parametrize("key, value, message", [
    ("otype", "Frequency", "otype"),
    ("n_levels", 0, "n_levels"),
    ("n_levels", 33, "n_levels"),
    ("n_features_per_level", 3, "n_features_per_level"),
    ("log2_hashmap_size", 40, "log2_hashmap_size"),
    ("base_resolution", 2.5, "base_resolution"),
    ("per_level_scale", float("inf"), "per_level_scale"),
    ("per_level_scale", 0.5, "per_level_scale"),
    ("interpolation", "Smoothstep", "interpolation"),
    ("n_level", 4, "unknown key 'n_level'"),
])
def test_config_validation_names_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        hash_grid_layout(dict(MIXED, **{key: value}))


def test_argument_validation():
    layout = hash_grid_layout(MIXED)
    # MIXED holds 64 + 344 + 3 * 1024 = 3480 entries of 2 features.
    with pytest.raises(ConfigError, match=r"params must have shape \[6960\]"):
        hash_encode(torch.rand(2, 3), torch.zeros(7), MIXED)
    with pytest.raises(ConfigError, match=r"x must have shape \[N, 3\]"):
        hash_encode(torch.rand(2, 2), torch.zeros(layout.n_params), MIXED)
    with pytest.raises(ConfigError, match="params must be a torch.float32"):
        hash_encode(torch.rand(2, 3), torch.zeros(layout.n_params, dtype=torch.float64), MIXED)


def test_chunked_points_give_the_same_values_and_gradients(monkeypatch):
    from render3d.ops import hash_encoding

    layout = hash_grid_layout(MIXED)
    x = _points(20)
    params = torch.randn(layout.n_params, generator=torch.Generator().manual_seed(5))
    cotangent = torch.randn(x.shape[0], layout.n_output_dims, generator=torch.Generator().manual_seed(6))

    def run():
        x_leaf, params_leaf = x.clone().requires_grad_(True), params.clone().requires_grad_(True)
        out = hash_encode_reference(x_leaf, params_leaf, MIXED)
        out.backward(cotangent)
        return out.detach(), x_leaf.grad, params_leaf.grad

    whole = run()
    monkeypatch.setattr(hash_encoding, "POINTS_PER_CHUNK", 7)  # chunks of 7, 7 and 6 points
    for chunked, expected in zip(run(), whole):
        # Same operations per point; table gradient sums regroup across chunks (float64 bincount).
        torch.testing.assert_close(chunked, expected, atol=1e-6, rtol=1e-6)
