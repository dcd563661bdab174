"""Shared checks for every Triton kernel against its PyTorch reference.

Usage in a kernel test::

    from tests.kernels.harness import assert_matches_reference, assert_reference_gradcheck

    def test_hash_encode_matches_reference():
        inputs = {"x": torch.rand(17, 3), "table": torch.randn(64, 2)}
        assert_matches_reference(hash_encode_reference, hash_encode_triton, inputs,
                                 atol=1e-6, rtol=1e-5)   # float32 rounding of the sums

``assert_matches_reference`` runs both functions on identical copies of the inputs,
compares every output, back-propagates the same random cotangents through both and
compares the gradient of every floating-point input. Integer outputs must match exactly.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

Tensors = Mapping[str, object]


def _outputs(result) -> tuple:
    return result if isinstance(result, (tuple, list)) else (result,)


def _clone_inputs(inputs: Tensors, requires_grad: set[str]) -> dict:
    cloned = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().clone()
            if name in requires_grad:
                value.requires_grad_(True)
        cloned[name] = value
    return cloned


def _differentiable_names(inputs: Tensors, grad_inputs: set[str] | None) -> set[str]:
    floating = {n for n, v in inputs.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    if grad_inputs is None:
        return floating
    unknown = set(grad_inputs) - floating
    assert not unknown, f"grad_inputs {sorted(unknown)} are not floating-point tensor inputs"
    return set(grad_inputs)


def _assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != reference {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != reference {expected.dtype}"
    if not expected.is_floating_point():
        mismatches = (actual != expected).sum().item()
        assert mismatches == 0, f"{name}: {mismatches} of {expected.numel()} integer entries differ from the reference"
        return
    assert torch.isfinite(actual).all() == torch.isfinite(expected).all(), f"{name}: non-finite entries differ"
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"{name}: {m}")


def assert_matches_reference(
    reference: Callable,
    kernel: Callable,
    inputs: Tensors,
    *,
    atol: float,
    rtol: float,
    grad_atol: float | None = None,
    grad_rtol: float | None = None,
    grad_inputs: set[str] | None = None,
    seed: int = 0,
) -> None:
    """Assert ``kernel(**inputs)`` equals ``reference(**inputs)`` forward and backward.

    Args:
        reference, kernel: functions of the same keyword arguments returning a tensor or a
            tuple of tensors (``None`` entries allowed where both return ``None``).
        inputs: keyword arguments; tensors are cloned for each side.
        atol, rtol: forward tolerances for floating outputs (comment where they come from).
        grad_atol, grad_rtol: gradient tolerances (default: the forward ones).
        grad_inputs: names of inputs to differentiate (default: every floating tensor).
        seed: seeds the random cotangents.
    """
    grad_names = _differentiable_names(inputs, grad_inputs)
    ref_inputs = _clone_inputs(inputs, grad_names)
    ker_inputs = _clone_inputs(inputs, grad_names)
    ref_out = _outputs(reference(**ref_inputs))
    ker_out = _outputs(kernel(**ker_inputs))
    assert len(ref_out) == len(ker_out), f"kernel returns {len(ker_out)} outputs, reference {len(ref_out)}"
    for index, (expected, actual) in enumerate(zip(ref_out, ker_out)):
        assert (expected is None) == (actual is None), f"output {index}: None on one side only"
        if expected is not None:
            _assert_close(f"output {index}", actual.detach(), expected.detach(), atol, rtol)
    if not grad_names:
        return
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ref_terms, ker_terms = [], []
    for expected, actual in zip(ref_out, ker_out):
        if expected is None or not expected.is_floating_point() or not expected.requires_grad:
            continue
        cotangent = torch.randn(expected.shape, generator=generator, dtype=expected.dtype).to(expected.device)
        ref_terms.append((expected * cotangent).sum())
        ker_terms.append((actual * cotangent).sum())
    assert ref_terms, "no differentiable output: pass grad_inputs=set() for a non-differentiable op"
    names = sorted(grad_names)
    ref_grads = torch.autograd.grad(sum(ref_terms), [ref_inputs[n] for n in names], allow_unused=True)
    ker_grads = torch.autograd.grad(sum(ker_terms), [ker_inputs[n] for n in names], allow_unused=True)
    for name, expected, actual in zip(names, ref_grads, ker_grads):
        assert (expected is None) == (actual is None), f"grad of {name}: computed on one side only"
        if expected is not None:
            _assert_close(f"grad of {name}", actual, expected, grad_atol or atol, grad_rtol or rtol)


def assert_reference_gradcheck(reference: Callable, inputs: Tensors, *, grad_inputs: set[str] | None = None) -> None:
    """``torch.autograd.gradcheck`` of the reference in float64 (use tiny inputs)."""
    grad_names = _differentiable_names(inputs, grad_inputs)
    names = sorted(grad_names)
    fixed = {n: v for n, v in inputs.items() if n not in grad_names}
    leaves = [inputs[n].detach().double().requires_grad_(True) for n in names]

    def call(*tensors):
        outputs = _outputs(reference(**fixed, **dict(zip(names, tensors))))
        return tuple(o for o in outputs if o is not None and o.is_floating_point())

    assert torch.autograd.gradcheck(call, leaves, eps=1e-6, atol=1e-5, rtol=1e-4)
