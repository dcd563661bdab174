"""isect_tiles / isect_offset_encode against a brute-force per-tile enumeration."""
import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.tile_binning import isect_offset_encode, isect_tiles, tile_grid, tile_key_bits
from tests.ops.test_rasterization import random_projected_gaussians


def brute_force_lists(means2d, radii, depths, width, height, tile_size):
    """{(camera, ty, tx): [flat ids front to back]} by testing every tile against every Gaussian."""
    n_cameras, n_gaussians = radii.shape
    tiles_w, tiles_h = tile_grid(width, height, tile_size)
    lists = {}
    for cam in range(n_cameras):
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                hits = []
                for n in range(n_gaussians):
                    r = float(radii[cam, n])
                    x, y = means2d[cam, n].tolist()
                    if r > 0 and (x - r < (tx + 1) * tile_size and x + r > tx * tile_size
                                  and y - r < (ty + 1) * tile_size and y + r > ty * tile_size):
                        hits.append((float(depths[cam, n]), cam * n_gaussians + n))
                lists[(cam, ty, tx)] = [flat for _, flat in sorted(hits)]
    return lists


@pytest.mark.parametrize("n_cameras,n_gaussians,width,height,tile_size", [
    (1, 25, 37, 21, 16),   # odd size, partial tiles
    (2, 30, 20, 20, 8),    # batched cameras
    (1, 15, 9, 7, 4),
])
def test_binning_matches_brute_force(n_cameras, n_gaussians, width, height, tile_size):
    g = random_projected_gaussians(n_cameras, n_gaussians, width, height, seed=n_gaussians, scale=(0.5, 3.0))
    g["radii"][..., ::7] = 0                       # some culled
    g["depths"][..., 3] = g["depths"][..., 4]      # a depth tie, broken by flat index
    counts, isect_ids, flatten_ids = isect_tiles(g["means2d"], g["radii"], g["depths"], width, height, tile_size)
    tiles_w, tiles_h = tile_grid(width, height, tile_size)
    offsets = isect_offset_encode(isect_ids, n_cameras, tiles_w, tiles_h)
    expected = brute_force_lists(g["means2d"], g["radii"], g["depths"], width, height, tile_size)

    assert counts.dtype == torch.int32 and isect_ids.dtype == torch.int64 and flatten_ids.dtype == torch.int64
    assert offsets.shape == (n_cameras, tiles_h, tiles_w) and offsets.dtype == torch.int32
    ends = torch.cat([offsets.reshape(-1)[1:].long(), torch.tensor([flatten_ids.numel()])])
    for index, (key, ids) in enumerate(expected.items()):
        start, end = int(offsets.reshape(-1)[index]), int(ends[index])
        assert flatten_ids[start:end].tolist() == ids, key
    per_gaussian = torch.bincount(flatten_ids, minlength=n_cameras * n_gaussians)
    assert torch.equal(counts.reshape(-1).long(), per_gaussian)
    assert torch.equal(isect_ids, torch.sort(isect_ids).values)
    tile_bits = tile_key_bits(tiles_w, tiles_h)
    assert torch.equal(isect_ids >> (32 + tile_bits), flatten_ids // n_gaussians)
    depth_bits = g["depths"].reshape(-1)[flatten_ids].view(torch.int32).long()
    assert torch.equal(isect_ids & 0xFFFFFFFF, depth_bits)


def test_key_layout_of_one_gaussian():
    # Mean (20, 8), radius 6 on a 64x32 image: x in (14, 26) covers tiles 0 and 1 of row 0.
    counts, keys, ids = isect_tiles(torch.tensor([[[20.0, 8.0]], [[40.0, 24.0]]]),
                                    torch.tensor([[6], [3]], dtype=torch.int32),
                                    torch.tensor([[2.0], [0.5]]), 64, 32, 16)
    depth2, depth05 = (torch.tensor(v).view(torch.int32).item() for v in (2.0, 0.5))
    tile_bits = (4 * 2).bit_length()
    assert counts.tolist() == [[2], [1]] and ids.tolist() == [0, 0, 1]
    assert keys.tolist() == [(0 << 32) | depth2, (1 << 32) | depth2,
                             (1 << (tile_bits + 32)) | (6 << 32) | depth05]


@pytest.mark.parametrize("case", ["no gaussians", "all culled", "off screen"])
def test_nothing_visible(case):
    n = 0 if case == "no gaussians" else 5
    means2d = torch.rand(2, n, 2) * 30 + (200.0 if case == "off screen" else 0.0)
    radii = torch.full((2, n), 0 if case == "all culled" else 3, dtype=torch.int32)
    counts, isect_ids, flatten_ids = isect_tiles(means2d, radii, torch.ones(2, n), 30, 20, 16)
    assert counts.shape == (2, n) and (counts == 0).all()
    assert isect_ids.numel() == 0 and flatten_ids.numel() == 0
    assert torch.equal(isect_offset_encode(isect_ids, 2, 2, 2), torch.zeros(2, 2, 2, dtype=torch.int32))


def test_bad_arguments_raise_config_errors():
    means2d, radii, depths = torch.zeros(1, 3, 2), torch.ones(1, 3, dtype=torch.int32), torch.ones(1, 3)
    with pytest.raises(ConfigError, match="radii must be"):
        isect_tiles(means2d, radii[:, :2], depths, 16, 16)
    with pytest.raises(ConfigError, match="radii must be an integer"):
        isect_tiles(means2d, radii.float(), depths, 16, 16)
    with pytest.raises(ConfigError, match="tile_size must be"):
        isect_tiles(means2d, radii, depths, 16, 16, tile_size=0)
    with pytest.raises(ConfigError, match="isect_ids must be"):
        isect_offset_encode(torch.zeros(3, dtype=torch.int32), 1, 1, 1)
