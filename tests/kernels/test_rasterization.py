"""Triton rasterization kernels against rasterize_gaussians_reference: forward, every gradient, absgrad."""
import pytest
import torch

from render3d.kernels.rasterization import rasterize_gaussians_triton
from render3d.ops.rasterization import rasterize_gaussians, rasterize_gaussians_reference
from tests.kernels.harness import assert_matches_reference
from tests.ops.test_rasterization import random_projected_gaussians, raster_inputs

# Forward: both sides composite the same contributors in float32; they differ only in the
# rounding of the chunk cumprod (tree scan vs sequential) and of T / (1 - alpha): at most
# 2.4e-7 observed on these cases, so 2e-6 leaves ~10x room without hiding a wrong contributor.
FORWARD_ATOL, FORWARD_RTOL = 2e-6, 1e-5
# Gradients: sums over up to 256 pixels, accumulated with atomics in another order, and the
# back-to-front division T_after / prod(1 - alpha): at most 1e-5 observed on gradients up to
# 20 in magnitude (relative ~1e-6).
GRAD_ATOL, GRAD_RTOL = 5e-5, 1e-4


def _inputs(device, n_cameras, n_gaussians, width, height, n_channels, tile_size, background, seed):
    gaussians = random_projected_gaussians(n_cameras, n_gaussians, width, height, n_channels, seed=seed,
                                           scale=(1.0, 4.0), opacity=(0.2, 1.0))
    backgrounds = torch.rand(n_cameras, n_channels, generator=torch.Generator().manual_seed(seed)) if background else None
    inputs = raster_inputs(gaussians, width, height, tile_size, backgrounds)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


@pytest.mark.parametrize("n_cameras,n_gaussians,width,height,n_channels,tile_size,background", [
    (1, 17, 19, 13, 3, 16, True),    # odd size, one partial tile row, 17 Gaussians
    (2, 60, 20, 9, 4, 8, False),     # batched cameras, RGB + depth, lists over several batches
    (1, 40, 9, 11, 1, 4, True),      # one channel, 4x4 tiles (16 lanes)
])
def test_rasterize_matches_reference(device, n_cameras, n_gaussians, width, height, n_channels, tile_size,
                                     background):
    inputs = _inputs(device, n_cameras, n_gaussians, width, height, n_channels, tile_size, background,
                     seed=n_gaussians)
    assert_matches_reference(rasterize_gaussians_reference, rasterize_gaussians_triton, inputs,
                             atol=FORWARD_ATOL, rtol=FORWARD_RTOL, grad_atol=GRAD_ATOL, grad_rtol=GRAD_RTOL)


def test_rasterize_without_gaussians(device):
    inputs = _inputs(device, 2, 0, 7, 5, 3, 8, True, seed=0)
    assert_matches_reference(rasterize_gaussians_reference, rasterize_gaussians_triton, inputs,
                             # background only: exact forward; its gradient sums 35 pixels in
                             # another order (float32 rounding, ~1e-6 observed)
                             atol=0, rtol=0, grad_atol=1e-5, grad_rtol=1e-5, grad_inputs={"backgrounds"})


def test_absgrad_matches_reference(device):
    inputs = _inputs(device, 1, 30, 18, 17, 3, 16, False, seed=7)
    absgrads = []
    for implementation in (rasterize_gaussians_reference, rasterize_gaussians_triton):
        means2d = inputs["means2d"].clone().requires_grad_(True)
        colors, alphas = implementation(**{**inputs, "means2d": means2d, "absgrad": True})
        weights = torch.linspace(-1.0, 1.0, colors.numel(), device=device).reshape(colors.shape)
        ((colors * weights).sum() + alphas.sum()).backward()
        absgrads.append(means2d.absgrad)
    assert absgrads[0].abs().sum() > 0
    torch.testing.assert_close(absgrads[1], absgrads[0], atol=GRAD_ATOL, rtol=GRAD_RTOL)


def test_public_function_dispatches_to_triton_and_sets_absgrad_on_the_callers_tensor(device, monkeypatch):
    inputs = _inputs(device, 1, 12, 10, 9, 3, 8, False, seed=3)
    results = []
    for backend in ("torch", "triton"):
        monkeypatch.setenv("RENDER3D_BACKEND", backend)
        padded = torch.cat([inputs["means2d"], torch.zeros_like(inputs["means2d"][..., :1])], -1)
        padded.requires_grad_(True)
        means2d = padded[..., :2]                      # a non-contiguous view
        means2d.retain_grad()
        colors, alphas = rasterize_gaussians(**{**inputs, "means2d": means2d, "absgrad": True})
        (colors.sum() + alphas.sum()).backward()
        results.append((colors.detach(), means2d.grad, means2d.absgrad))
    for (expected, actual) in zip(results[0], results[1]):
        torch.testing.assert_close(actual, expected, atol=GRAD_ATOL, rtol=GRAD_RTOL)
