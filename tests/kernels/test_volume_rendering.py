"""The Triton volume-rendering kernels against the reference, forward and every gradient."""
import pytest
import torch

from render3d.kernels.volume_rendering import BLOCK_SAMPLES, volume_render_triton
from render3d.ops.volume_rendering import volume_render, volume_render_reference
from tests.kernels.harness import assert_matches_reference, assert_reference_gradcheck

# Forward: the kernel's float32 running sum of optical depth vs the reference's float64 scan,
# over up to ~2 BLOCK_SAMPLES samples of optical depth ~0.5 each; observed errors ~1e-7.
ATOL, RTOL = 2e-6, 1e-5
# Gradients: the kernel's suffix sums are float32 "total - prefix" differences of O(1) sums
# (observed errors ~5e-7).
GRAD_ATOL, GRAD_RTOL = 1e-5, 1e-4


def _packed(n_rays, max_count, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_count + 1, (n_rays,), generator=generator)
    if n_rays > 2:
        counts[1] = 0  # an empty ray in the middle
        counts[2] = BLOCK_SAMPLES + 7  # a ray spanning two blocks
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts)
    s = ray_indices.numel()
    t_starts = torch.sort(torch.rand(s, generator=generator) * 4).values
    return dict(
        t_starts=t_starts.to(device),
        t_ends=(t_starts + torch.rand(s, generator=generator) * 0.1 + 0.01).to(device),
        ray_indices=ray_indices.to(device),
        n_rays=n_rays,
        sigmas=(torch.rand(s, generator=generator) * 8).to(device),
        rgbs=torch.rand(s, 3, generator=generator).to(device),
    )


@pytest.mark.parametrize("n_rays, max_count", [(0, 0), (1, 0), (1, 9), (17, 30), (100, 4)])
def test_kernel_matches_reference_forward_and_gradients(n_rays, max_count, device):
    inputs = _packed(n_rays, max_count, device, seed=n_rays + max_count)
    assert_matches_reference(
        volume_render_reference, volume_render_triton, inputs,
        atol=ATOL, rtol=RTOL, grad_atol=GRAD_ATOL, grad_rtol=GRAD_RTOL, grad_inputs={"sigmas", "rgbs"},
    )


def test_public_function_with_background_through_kernel(monkeypatch, device):
    inputs = _packed(17, 20, device, seed=9)
    background = torch.rand(17, 3, device=device)

    def render(backend):
        def call(t_starts, t_ends, ray_indices, n_rays, sigmas, rgbs, background):
            monkeypatch.setenv("RENDER3D_BACKEND", backend)
            out = volume_render(t_starts, t_ends, ray_indices, n_rays, sigmas, rgbs, background)
            return out["rgb"], out["opacity"], out["depth"], out["weights"]

        return call

    assert_matches_reference(
        render("torch"), render("triton"), dict(inputs, background=background),
        atol=ATOL, rtol=RTOL, grad_atol=GRAD_ATOL, grad_rtol=GRAD_RTOL, grad_inputs={"sigmas", "rgbs", "background"},
    )


def test_reference_gradcheck_float64():
    inputs = _packed(4, 5, torch.device("cpu"), seed=1)
    inputs = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in inputs.items()}
    assert_reference_gradcheck(volume_render_reference, inputs, grad_inputs={"sigmas", "rgbs"})
