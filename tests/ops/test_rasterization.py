"""rasterize_gaussians_reference against a naive per-pixel loop, gradcheck, absgrad and input checks."""
import math

import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.rasterization import (ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN, rasterize_gaussians,
                                        rasterize_gaussians_reference)
from render3d.ops.tile_binning import isect_offset_encode, isect_tiles, tile_grid
from tests.kernels.harness import assert_reference_gradcheck


def random_projected_gaussians(n_cameras, n_gaussians, width, height, n_channels=3, seed=0,
                               scale=(1.0, 4.0), opacity=(0.05, 1.0), dtype=torch.float32):
    """Projection-like inputs: means over (and a little past) the image, random SPD covariances.

    Returns a dict with means2d [C,N,2], conics [C,N,3], colors [C,N,D], opacities [C,N],
    depths [C,N] and radii [C,N] int32 = ceil(3 sqrt(max eigenvalue)).
    """
    g = torch.Generator().manual_seed(seed)
    shape = (n_cameras, n_gaussians)
    means2d = torch.rand(shape + (2,), generator=g, dtype=torch.float64) * torch.tensor(
        [width + 8.0, height + 8.0], dtype=torch.float64) - 4.0
    angle = torch.rand(shape, generator=g, dtype=torch.float64) * math.pi
    sigmas = scale[0] + torch.rand(shape + (2,), generator=g, dtype=torch.float64) * (scale[1] - scale[0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    covariance = rotation @ torch.diag_embed(sigmas**2) @ rotation.transpose(-1, -2)
    inverse = torch.linalg.inv(covariance)
    conics = torch.stack([inverse[..., 0, 0], inverse[..., 0, 1], inverse[..., 1, 1]], -1)
    radii = torch.ceil(3.0 * sigmas.amax(-1)).to(torch.int32)
    return {
        "means2d": means2d.to(dtype),
        "conics": conics.to(dtype),
        "colors": torch.rand(shape + (n_channels,), generator=g, dtype=torch.float64).to(dtype),
        "opacities": (opacity[0] + torch.rand(shape, generator=g, dtype=torch.float64)
                      * (opacity[1] - opacity[0])).to(dtype),
        "depths": (1.0 + 9.0 * torch.rand(shape, generator=g, dtype=torch.float64)).to(dtype),
        "radii": radii,
    }


def raster_inputs(gaussians, width, height, tile_size=16, backgrounds=None):
    """Bin the Gaussians and return the keyword arguments of rasterize_gaussians."""
    _, isect_ids, flatten_ids = isect_tiles(gaussians["means2d"], gaussians["radii"], gaussians["depths"],
                                            width, height, tile_size)
    tiles_w, tiles_h = tile_grid(width, height, tile_size)
    offsets = isect_offset_encode(isect_ids, gaussians["means2d"].shape[0], tiles_w, tiles_h)
    return {
        "means2d": gaussians["means2d"], "conics": gaussians["conics"], "colors": gaussians["colors"],
        "opacities": gaussians["opacities"], "width": width, "height": height, "tile_size": tile_size,
        "isect_offsets": offsets, "flatten_ids": flatten_ids, "backgrounds": backgrounds,
    }


def naive_render(gaussians, width, height, tile_size, backgrounds=None):
    """Per-pixel loop over every visible Gaussian touching the pixel's tile, sorted by depth, in float64."""
    means, conics = gaussians["means2d"].double(), gaussians["conics"].double()
    colors, opacities = gaussians["colors"].double(), gaussians["opacities"].double()
    n_cameras, _, n_channels = colors.shape
    image = torch.zeros(n_cameras, height, width, n_channels, dtype=torch.float64)
    alpha_image = torch.zeros(n_cameras, height, width, 1, dtype=torch.float64)
    for cam in range(n_cameras):
        order = torch.argsort(gaussians["depths"][cam], stable=True).tolist()
        for y in range(height):
            for x in range(width):
                tx, ty = x // tile_size, y // tile_size
                transmittance, colour = 1.0, torch.zeros(n_channels, dtype=torch.float64)
                for n in order:
                    r = float(gaussians["radii"][cam, n])
                    mx, my = means[cam, n].tolist()
                    if r <= 0 or not (mx - r < (tx + 1) * tile_size and mx + r > tx * tile_size
                                      and my - r < (ty + 1) * tile_size and my + r > ty * tile_size):
                        continue
                    dx, dy = mx - (x + 0.5), my - (y + 0.5)
                    a, b, c = conics[cam, n].tolist()
                    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                    if sigma < 0:
                        continue
                    alpha = min(ALPHA_MAX, float(opacities[cam, n]) * math.exp(-sigma))
                    if alpha < ALPHA_MIN:
                        continue
                    next_t = transmittance * (1.0 - alpha)
                    if next_t <= TRANSMITTANCE_MIN:
                        break
                    colour += colors[cam, n] * alpha * transmittance
                    transmittance = next_t
                if backgrounds is not None:
                    colour += transmittance * backgrounds[cam].double()
                image[cam, y, x] = colour
                alpha_image[cam, y, x, 0] = 1.0 - transmittance
    return image, alpha_image


# float32 compositing of up to ~20 terms against float64: a few ulps of values <= 1.
FORWARD_ATOL = 1e-5


@pytest.mark.parametrize("n_cameras,width,height,n_channels,tile_size", [
    (1, 12, 10, 3, 16),   # one partial tile
    (2, 21, 18, 4, 8),    # batched cameras, odd size, several tiles, RGB + depth
    (1, 13, 11, 1, 4),    # single channel, many small tiles
])
def test_reference_matches_naive_loop(n_cameras, width, height, n_channels, tile_size):
    gaussians = random_projected_gaussians(n_cameras, 20, width, height, n_channels, seed=width,
                                           scale=(1.0, 5.0), opacity=(0.3, 1.0))
    backgrounds = torch.rand(n_cameras, n_channels, generator=torch.Generator().manual_seed(1))
    inputs = raster_inputs(gaussians, width, height, tile_size, backgrounds)
    colors, alphas = rasterize_gaussians_reference(**inputs)
    expected_colors, expected_alphas = naive_render(gaussians, width, height, tile_size, backgrounds)
    assert colors.shape == (n_cameras, height, width, n_channels) and alphas.shape == (n_cameras, height, width, 1)
    torch.testing.assert_close(colors.double(), expected_colors, atol=FORWARD_ATOL, rtol=0)
    torch.testing.assert_close(alphas.double(), expected_alphas, atol=FORWARD_ATOL, rtol=0)


def test_early_stop_and_clamp_follow_the_sequential_rule():
    # Four Gaussians centred on pixel (2, 2), front to back with opacities 1, 0.5, 1, 1:
    # alpha 0.99 (clamped) -> T = 0.01; alpha 0.5 -> T = 0.005; the third would leave
    # T = 5e-5 <= 1e-4, so the pixel stops before adding it.
    n = 4
    gaussians = {"means2d": torch.full((1, n, 2), 2.5),
                 "conics": torch.tensor([1.0, 0.0, 1.0]).expand(1, n, 3).contiguous(),
                 "colors": torch.arange(1.0, n + 1).reshape(1, n, 1),
                 "opacities": torch.tensor([[1.0, 0.5, 1.0, 1.0]]),
                 "depths": torch.arange(1.0, n + 1).reshape(1, n), "radii": torch.full((1, n), 3, dtype=torch.int32)}
    rendered, alphas = rasterize_gaussians_reference(**raster_inputs(gaussians, 5, 5, 16))
    expected, expected_alpha = naive_render(gaussians, 5, 5, 16)
    torch.testing.assert_close(rendered.double(), expected, atol=FORWARD_ATOL, rtol=0)
    torch.testing.assert_close(alphas.double(), expected_alpha, atol=FORWARD_ATOL, rtol=0)
    assert rendered[0, 2, 2, 0].item() == pytest.approx(1 * 0.99 + 2 * 0.5 * 0.01, abs=1e-6)
    assert alphas[0, 2, 2, 0].item() == pytest.approx(1 - 0.005, abs=1e-6)


def test_skips_negative_sigma_and_faint_alpha():
    # An indefinite conic (sigma < 0 on part of the image) and a faint Gaussian (alpha < 1/255).
    gaussians = {"means2d": torch.tensor([[[4.0, 4.0], [6.0, 5.0]]]),
                 "conics": torch.tensor([[[0.5, 1.0, 0.5], [0.1, 0.0, 0.1]]]),
                 "colors": torch.tensor([[[1.0], [2.0]]]), "opacities": torch.tensor([[0.8, 0.003]]),
                 "depths": torch.tensor([[1.0, 2.0]]), "radii": torch.tensor([[6, 6]], dtype=torch.int32)}
    rendered, alphas = rasterize_gaussians_reference(**raster_inputs(gaussians, 11, 9, 16))
    expected, expected_alpha = naive_render(gaussians, 11, 9, 16)
    torch.testing.assert_close(rendered.double(), expected, atol=FORWARD_ATOL, rtol=0)
    torch.testing.assert_close(alphas.double(), expected_alpha, atol=FORWARD_ATOL, rtol=0)
    assert (expected == 0).any() and (expected > 0).any()


def test_many_gaussians_span_several_chunks():
    # 120 Gaussians over a 10x12 image: lists longer than one reference chunk, most pixels stop.
    gaussians = random_projected_gaussians(1, 120, 10, 12, 3, seed=5, scale=(2.0, 6.0), opacity=(0.1, 0.9))
    rendered, alphas = rasterize_gaussians_reference(**raster_inputs(gaussians, 10, 12, 16))
    expected, expected_alpha = naive_render(gaussians, 10, 12, 16)
    torch.testing.assert_close(rendered.double(), expected, atol=FORWARD_ATOL, rtol=0)
    torch.testing.assert_close(alphas.double(), expected_alpha, atol=FORWARD_ATOL, rtol=0)
    assert (expected_alpha > 1 - 2 * TRANSMITTANCE_MIN).float().mean() > 0.5


@pytest.mark.parametrize("n_gaussians,culled", [(0, False), (6, True)])
def test_no_visible_gaussians_render_the_background(n_gaussians, culled):
    gaussians = random_projected_gaussians(2, n_gaussians, 17, 9, 2)
    if culled:
        gaussians["radii"].zero_()
    backgrounds = torch.tensor([[0.25, 0.5], [1.0, 0.0]])
    inputs = raster_inputs(gaussians, 17, 9, 16, backgrounds)
    assert inputs["flatten_ids"].numel() == 0
    rendered, alphas = rasterize_gaussians_reference(**inputs)
    assert torch.equal(rendered, backgrounds[:, None, None, :].expand(2, 9, 17, 2))
    assert torch.equal(alphas, torch.zeros(2, 9, 17, 1))


def test_reference_gradcheck():
    # Two cameras, two tiles each, three Gaussians: every gradient path at a few seconds' cost.
    gaussians = random_projected_gaussians(2, 3, 5, 3, 2, seed=3, scale=(1.5, 3.0), opacity=(0.3, 0.9),
                                           dtype=torch.float64)
    inputs = raster_inputs(gaussians, 5, 3, 4, backgrounds=torch.rand(2, 2, dtype=torch.float64))
    assert_reference_gradcheck(rasterize_gaussians_reference, inputs)


def test_absgrad_is_set_on_means2d():
    gaussians = random_projected_gaussians(1, 8, 9, 8, 3, seed=2, scale=(1.5, 3.0))
    inputs = raster_inputs(gaussians, 9, 8, 16)
    means2d = inputs["means2d"].clone().requires_grad_(True)
    colors, alphas = rasterize_gaussians_reference(**{**inputs, "means2d": means2d, "absgrad": True})
    (colors.sum() + alphas.sum()).backward()
    assert means2d.absgrad.shape == means2d.shape
    # |sum of per-pixel terms| <= sum of |per-pixel terms|, strictly for some Gaussian here.
    assert (means2d.absgrad >= means2d.grad.abs() - 1e-6).all()
    assert (means2d.absgrad > means2d.grad.abs() + 1e-4).any()


def test_public_function_checks_its_arguments():
    gaussians = random_projected_gaussians(1, 3, 8, 8)
    inputs = raster_inputs(gaussians, 8, 8, 16)
    with pytest.raises(ConfigError, match="conics must be"):
        rasterize_gaussians(**{**inputs, "conics": inputs["conics"][..., :2]})
    with pytest.raises(ConfigError, match="isect_offsets must be"):
        rasterize_gaussians(**{**inputs, "tile_size": 4})
    with pytest.raises(ConfigError, match="backgrounds must be"):
        rasterize_gaussians(**{**inputs, "backgrounds": torch.zeros(2, 3)})
    with pytest.raises(ConfigError, match="width must be"):
        rasterize_gaussians(**{**inputs, "width": 0})


def test_block_lists_only_drop_gaussians_skipped_at_every_pixel_of_the_block():
    from render3d.ops.rasterization import _BlockLists, _flatten

    gaussians = random_projected_gaussians(1, 60, 32, 32, seed=11, scale=(0.3, 6.0), opacity=(0.0, 1.0))
    gaussians["conics"][0, :5, 1] = 2.0 * gaussians["conics"][0, :5, 0]      # indefinite conics
    gaussians["conics"][0, 5:10, 1] = 0.9999 * torch.sqrt(gaussians["conics"][0, 5:10, 0]
                                                          * gaussians["conics"][0, 5:10, 2])  # near-singular
    inputs = raster_inputs(gaussians, 32, 32, 16)
    means, conics, _, opacities = _flatten(inputs["means2d"], inputs["conics"], inputs["colors"], inputs["opacities"])
    lists = _BlockLists(1, 32, 32, 16, inputs["isect_offsets"], inputs["flatten_ids"], means, conics, opacities)
    kept = {(block, int(g)) for block in range(lists.n_blocks)
            for g in lists.ids[lists.starts[block]:lists.ends[block]]}
    tile_starts = inputs["isect_offsets"].reshape(-1).tolist() + [inputs["flatten_ids"].numel()]
    blocks_per_tile = lists.blocks_per_edge**2
    dropped = 0
    for tile in range(len(tile_starts) - 1):
        for g in inputs["flatten_ids"][tile_starts[tile]:tile_starts[tile + 1]].tolist():
            for block in range(tile * blocks_per_tile, (tile + 1) * blocks_per_tile):
                if (block, g) in kept:
                    continue
                dropped += 1
                dx = means[g, 0].double() - lists.centre_x[block].double()
                dy = means[g, 1].double() - lists.centre_y[block].double()
                a, b, c = conics[g].double()
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                alpha = (opacities[g].double() * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
                # float64 here vs float32 in the op: 0.1 % below the threshold is still "skipped".
                assert not ((sigma >= 0) & (alpha >= ALPHA_MIN * 0.999)).any(), (block, g)
    assert dropped > 100 and len(kept) > 100
