"""The harness itself: it must pass a correct kernel and catch a wrong forward or backward.

The kernel here is a test-only Triton op, y = a * x**2, with a hand-written backward.
"""
import pytest
import torch
import triton
import triton.language as tl

from tests.kernels.harness import assert_matches_reference, assert_reference_gradcheck


@triton.jit
def _square_fwd(x_ptr, y_ptr, a, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    tl.store(y_ptr + offsets, a * x * x, mask=mask)


@triton.jit
def _square_bwd(x_ptr, dy_ptr, dx_ptr, a, n, FACTOR: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    dy = tl.load(dy_ptr + offsets, mask=mask)
    tl.store(dx_ptr + offsets, FACTOR * a * x * dy, mask=mask)


def _launch(kernel, n, *args, **meta):
    kernel[(triton.cdiv(max(n, 1), 64),)](*args, BLOCK=64, **meta)


def _make_function(backward_factor: float):
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, a):
            x = x.contiguous()
            y = torch.empty_like(x)
            _launch(_square_fwd, x.numel(), x, y, a, x.numel())
            ctx.save_for_backward(x)
            ctx.a = a
            return y

        @staticmethod
        def backward(ctx, dy):
            (x,) = ctx.saved_tensors
            dx = torch.empty_like(x)
            _launch(_square_bwd, x.numel(), x, dy.contiguous(), dx, ctx.a, x.numel(), FACTOR=backward_factor)
            return dx, None

    return Square


_correct = _make_function(2.0)
_wrong_backward = _make_function(1.0)


def square_reference(x, a=3.0):
    return a * x * x


def square_kernel(x, a=3.0):
    return _correct.apply(x, a)


def square_kernel_wrong_backward(x, a=3.0):
    return _wrong_backward.apply(x, a)


def square_kernel_wrong_forward(x, a=3.0):
    return _correct.apply(x, a) * (1 + 1e-3)


@pytest.mark.parametrize("n", [0, 1, 17, 130])
def test_harness_accepts_a_correct_kernel(n, device):
    x = torch.randn(n, device=device)
    # Forward: both compute a*x*x in float32 in the same order, so exactly equal. Backward:
    # autograd sums two products where the kernel multiplies 2*a*x*dy: one float32 ulp apart.
    assert_matches_reference(square_reference, square_kernel, {"x": x}, atol=0.0, rtol=0.0, grad_atol=1e-6, grad_rtol=1e-6)


def test_harness_catches_a_wrong_gradient(device):
    x = torch.randn(17, device=device)
    with pytest.raises(AssertionError, match="grad of x"):
        assert_matches_reference(square_reference, square_kernel_wrong_backward, {"x": x}, atol=1e-6, rtol=1e-6)


def test_harness_catches_a_wrong_forward(device):
    x = torch.randn(17, device=device) + 3
    with pytest.raises(AssertionError, match="output 0"):
        assert_matches_reference(square_reference, square_kernel_wrong_forward, {"x": x}, atol=1e-6, rtol=1e-6)


def test_harness_catches_integer_mismatch(device):
    def ref(x):
        return (x > 0).long()

    def bad(x):
        return (x >= 0.5).long()

    x = torch.linspace(-1, 1, 17, device=device)
    with pytest.raises(AssertionError, match="integer entries differ"):
        assert_matches_reference(ref, bad, {"x": x}, atol=0, rtol=0, grad_inputs=set())


def test_reference_gradcheck_passes_and_fails():
    assert_reference_gradcheck(square_reference, {"x": torch.randn(5)})

    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, dy):
            (x,) = ctx.saved_tensors
            return x * dy

    with pytest.raises(Exception):
        assert_reference_gradcheck(lambda x: WrongGrad.apply(x), {"x": torch.randn(5)})
