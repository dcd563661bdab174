"""Gaussian projection kernel against its PyTorch reference: forward and every gradient,
on odd sizes, with culled pairs, with and without antialiasing."""
import pytest
import torch

from render3d.kernels import gaussian_projection as kernel_module
from render3d.kernels.gaussian_projection import project_gaussians_triton
from render3d.ops.gaussian_projection import project_gaussians, project_gaussians_reference
from tests.kernels.harness import assert_matches_reference

WIDTH, HEIGHT = 64, 40
GRADS = {"means", "quats", "log_scales"}


def _inputs(C: int, N: int, device) -> dict:
    """Random Gaussians around z = 3 in front of C cameras: some behind the camera, some off
    the image, some far to the side (frustum clamp), some tiny (radius_clip)."""
    generator = torch.Generator().manual_seed(100 * C + N)
    means = torch.randn(N, 3, generator=generator) * torch.tensor([3.0, 3.0, 2.0]) + torch.tensor([0.0, 0.0, 3.0])
    log_scales = torch.randn(N, 3, generator=generator) * 0.7 - 2.0
    if N > 3:
        means[0, 2] = -1.0  # behind every camera
        log_scales[1] = -8.0  # radius 2: culled by radius_clip=2
    quats = torch.randn(N, 4, generator=generator)
    K = torch.tensor([[60.0, 0, 30], [0, 50.0, 20], [0, 0, 1]]).repeat(C, 1, 1)
    w2c = torch.eye(4).repeat(C, 1, 1)
    if C > 1:
        K[1] = torch.tensor([[40.0, 0, 25], [0, 45.0, 22], [0, 0, 1]])
        angle = torch.tensor(0.3)
        w2c[1, :3, :3] = torch.tensor([[angle.cos(), 0, angle.sin()], [0, 1, 0], [-angle.sin(), 0, angle.cos()]])
        w2c[1, :3, 3] = torch.tensor([0.3, -0.2, 0.5])
    named = dict(means=means, quats=quats, log_scales=log_scales, w2c=w2c, K=K)
    return {name: value.to(device) for name, value in named.items()}


def _as_tuple(function, **options):
    def run(**inputs):
        return tuple(function(**inputs, width=WIDTH, height=HEIGHT, radius_clip=2.0, **options).values())

    return run


@pytest.mark.parametrize("C, N, antialiased", [(1, 0, False), (2, 1, True), (1, 17, True), (2, 17, False),
                                               (1, 100, False), (2, 100, True)])  # fmt: skip
def test_kernel_matches_reference(device, C, N, antialiased):
    inputs = _inputs(C, N, device)
    if N >= 17:
        radii = project_gaussians_reference(**inputs, width=WIDTH, height=HEIGHT, radius_clip=2.0)["radii"]
        assert (radii == 0).any() and (radii > 0).any()  # both culled and visible pairs are exercised
    assert_matches_reference(
        _as_tuple(project_gaussians_reference, antialiased=antialiased),
        _as_tuple(project_gaussians_triton, antialiased=antialiased),
        inputs,
        # float32 both sides; measured on 2000 Gaussians: conics within 1.2e-5 of values up to 3.
        atol=1e-4,
        rtol=1e-4,
        # Gradients sum ~50 products of terms up to ~10 in a different order (measured up to
        # 8.5e-5 absolute on 2000 Gaussians); 5x margin.
        grad_atol=5e-4,
        grad_rtol=1e-3,
        grad_inputs=GRADS,
    )


def test_kernel_computes_float64_inputs_in_float32(device):
    inputs = {k: v.double() for k, v in _inputs(1, 17, device).items()}
    kernel = project_gaussians_triton(**inputs, width=WIDTH, height=HEIGHT)
    reference = project_gaussians_reference(**inputs, width=WIDTH, height=HEIGHT)
    assert kernel["conics"].dtype == torch.float64
    torch.testing.assert_close(kernel["radii"], reference["radii"])
    # float32 arithmetic against float64: relative rounding ~1e-6 amplified by the conic inverse.
    torch.testing.assert_close(kernel["conics"], reference["conics"], atol=1e-4, rtol=1e-4)


def test_public_function_dispatches_to_the_kernel(device, monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return project_gaussians_triton(*args, **kwargs)

    monkeypatch.setattr(kernel_module, "project_gaussians_triton", spy)
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")
    inputs = _inputs(2, 17, device)
    out = project_gaussians(**inputs, width=WIDTH, height=HEIGHT, eps2d=0.2, antialiased=True)
    assert calls == [dict(near=0.01, far=1e10, eps2d=0.2, antialiased=True, radius_clip=0.0)]
    assert out["radii"].shape == (2, 17)
