"""SH colour kernel against its PyTorch reference: forward and both gradients, every degree,
odd sizes, more coefficients than the degree uses, clamped colours and a zero direction."""
import pytest
import torch

from render3d.kernels import sh_colors as kernel_module
from render3d.kernels.sh_colors import sh_colors_triton
from render3d.ops.sh_colors import sh_colors, sh_colors_reference
from tests.kernels.harness import assert_matches_reference


def _inputs(C: int, N: int, device) -> dict:
    generator = torch.Generator().manual_seed(10 * C + N)
    coeffs = torch.randn(N, 16, 3, generator=generator) * 0.6  # some colours clamp at 0
    dirs = torch.randn(C, N, 3, generator=generator) * 3.0  # unnormalised
    if N > 5:
        dirs[0, 5] = 0.0  # a Gaussian at the camera centre: divided by DIRECTION_EPS
    return {"coeffs": coeffs.to(device), "dirs": dirs.to(device)}


@pytest.mark.parametrize("C, N, degree", [(1, 0, 3), (2, 1, 1), (1, 17, 0), (2, 17, 2), (1, 100, 3), (2, 100, 1),
                                          (2, 100, 3)])  # fmt: skip
def test_kernel_matches_reference(device, C, N, degree):
    inputs = _inputs(C, N, device)
    if N >= 17 and degree > 0:
        assert (sh_colors_reference(**inputs, degree=degree) == 0).any()  # the clamp is exercised
    assert_matches_reference(
        lambda **kw: sh_colors_reference(**kw, degree=degree),
        lambda **kw: sh_colors_triton(**kw, degree=degree),
        inputs,
        # float32: sums of at most 16 products of terms below ~3 in a different order.
        atol=1e-5,
        rtol=1e-5,
        # Direction gradients divide by |dir| (1e12 for the zero direction): relative 1e-5
        # covers float32 rounding of a 16-term sum at any scale.
        grad_atol=1e-5,
        grad_rtol=1e-5,
    )


def test_public_function_dispatches_to_the_kernel(device, monkeypatch):
    calls = []

    def spy(*args):
        calls.append(args[2])
        return sh_colors_triton(*args)

    monkeypatch.setattr(kernel_module, "sh_colors_triton", spy)
    monkeypatch.setenv("RENDER3D_BACKEND", "triton")
    inputs = _inputs(2, 17, device)
    assert sh_colors(inputs["coeffs"], inputs["dirs"], 2).shape == (2, 17, 3)
    assert calls == [2]
