"""SH colour reference: against a direct per-Gaussian formula, the 3DGS conventions
(offset, clamp, unnormalised directions, unused coefficients), gradcheck and argument errors."""
import math

import numpy as np
import pytest
import torch

from render3d.errors import ConfigError
from render3d.ops.sh_colors import sh_colors, sh_colors_reference
from tests.kernels.harness import assert_reference_gradcheck

C0, C1 = 0.28209479177387814, 0.4886025119029199


def _direct_degree1(coeffs: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Degree-1 colour written out by hand from the 3DGS constants."""
    x, y, z = direction / np.linalg.norm(direction)
    raw = 0.5 + C0 * coeffs[0] - C1 * y * coeffs[1] + C1 * z * coeffs[2] - C1 * x * coeffs[3]
    return np.maximum(raw, 0.0)


def _direct_degree2_term(coeffs: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The degree-2 part of the colour: the five real quadratic harmonics of 3DGS."""
    x, y, z = direction / np.linalg.norm(direction)
    scale = 0.5 * math.sqrt(15 / math.pi)  # 1.0925...: the xy, yz, xz terms
    terms = [scale * x * y, -scale * y * z, 0.25 * math.sqrt(5 / math.pi) * (2 * z * z - x * x - y * y),
             -scale * x * z, 0.5 * scale * (x * x - y * y)]  # fmt: skip
    return sum(t * c for t, c in zip(terms, coeffs[4:9]))


def test_degree1_matches_the_direct_formula():
    rng = np.random.default_rng(0)
    coeffs = rng.normal(size=(5, 16, 3))
    dirs = rng.normal(size=(2, 5, 3)) * 4.0
    out = sh_colors_reference(torch.as_tensor(coeffs), torch.as_tensor(dirs), 1).numpy()
    assert (out == 0).any()  # some colours are clamped
    for c in range(2):
        for n in range(5):
            # float64 on both sides.
            np.testing.assert_allclose(out[c, n], _direct_degree1(coeffs[n], dirs[c, n]), rtol=1e-12, atol=1e-12)


def test_degree2_adds_the_quadratic_terms():
    rng = np.random.default_rng(1)
    coeffs = rng.normal(size=(4, 9, 3)) * 0.1  # small: no clamping
    dirs = rng.normal(size=(1, 4, 3))
    out = sh_colors_reference(torch.as_tensor(coeffs), torch.as_tensor(dirs), 2).numpy()
    for n in range(4):
        expected = _direct_degree1(coeffs[n], dirs[0, n]) + _direct_degree2_term(coeffs[n], dirs[0, n])
        np.testing.assert_allclose(out[0, n], expected, rtol=1e-12, atol=1e-12)


def test_degree0_is_the_offset_dc_colour_and_ignores_directions():
    coeffs = torch.tensor([[[1.0, -1.0, -3.0]]], dtype=torch.float64)
    out = sh_colors_reference(coeffs, torch.randn(3, 1, 3, dtype=torch.float64), 0)
    expected = torch.tensor([0.5 + C0, 0.5 - C0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(out, expected.expand(3, 1, 3))


def test_direction_length_and_unused_coefficients_do_not_matter():
    coeffs = torch.randn(6, 16, 3, dtype=torch.float64, requires_grad=True)
    dirs = torch.randn(2, 6, 3, dtype=torch.float64)
    out = sh_colors_reference(coeffs, dirs, 2)
    torch.testing.assert_close(sh_colors_reference(coeffs, dirs * 7.5, 2), out)
    changed = coeffs.detach().clone()
    changed[:, 9:] = 100.0
    torch.testing.assert_close(sh_colors_reference(changed, dirs, 2), out)
    (grad,) = torch.autograd.grad(out.sum(), coeffs)
    assert not grad[:, 9:].any() and grad[:, :9].abs().sum() > 0


def test_clamped_colours_get_zero_gradient():
    coeffs = torch.zeros(1, 4, 3, dtype=torch.float64)
    coeffs[0, 0] = torch.tensor([-5.0, 1.0, 1.0])
    coeffs.requires_grad_(True)
    dirs = torch.tensor([[[0.0, 0.0, 2.0]]], dtype=torch.float64, requires_grad=True)
    out = sh_colors_reference(coeffs, dirs, 1)
    (g_coeffs,) = torch.autograd.grad(out[..., 0].sum(), coeffs)
    assert out[0, 0, 0] == 0 and not g_coeffs.any()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_reference_gradcheck(degree):
    generator = torch.Generator().manual_seed(degree)
    # Coefficients scaled so that no colour sits near the clamp kink at 0.
    coeffs = torch.randn(3, 16, 3, generator=generator, dtype=torch.float64) * 0.05
    dirs = torch.randn(2, 3, 3, generator=generator, dtype=torch.float64) * 2.0
    assert_reference_gradcheck(lambda **kw: sh_colors_reference(**kw, degree=degree), dict(coeffs=coeffs, dirs=dirs))


def test_public_function_runs_the_reference_on_cpu(monkeypatch):
    monkeypatch.setenv("RENDER3D_BACKEND", "torch")
    coeffs, dirs = torch.randn(7, 16, 3), torch.randn(2, 7, 3)
    assert torch.equal(sh_colors(coeffs, dirs, 3), sh_colors_reference(coeffs, dirs, 3))
    assert sh_colors(coeffs[:0], dirs[:, :0], 3).shape == (2, 0, 3)


@pytest.mark.parametrize(
    "coeffs, dirs, degree, message",
    [
        (torch.zeros(4, 16, 3), torch.zeros(2, 4, 3), 4, "degree must be 0, 1, 2 or 3"),
        (torch.zeros(4, 16), torch.zeros(2, 4, 3), 1, "coeffs must have shape"),
        (torch.zeros(4, 16, 3), torch.zeros(4, 3), 1, "dirs must have shape"),
        (torch.zeros(4, 16, 3), torch.zeros(2, 5, 3), 1, "coeffs has 4 Gaussians but dirs has 5"),
        (torch.zeros(4, 4, 3), torch.zeros(2, 4, 3), 2, "degree 2 needs 9 coefficients"),
        (torch.zeros(4, 16, 3), torch.zeros(2, 4, 3, dtype=torch.float64), 1, "coeffs is torch.float32"),
        (torch.zeros(4, 16, 3, dtype=torch.int32), torch.zeros(2, 4, 3), 1, "coeffs must be a floating-point"),
    ],
)
def test_bad_arguments(coeffs, dirs, degree, message):
    with pytest.raises(ConfigError, match=message):
        sh_colors(coeffs, dirs, degree)
