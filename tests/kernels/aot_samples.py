"""Test-only kernels for ``render3d check-kernels``: one that compiles, one that only the
interpreter accepts, and a ``@triton.jit`` kernel that was never declared."""
from __future__ import annotations

import triton
import triton.language as tl

from render3d.kernels._variants import declare, product


@declare(types={"x_ptr out_ptr": "*fp32", "n": "i32"}, constexprs=product(BLOCK=[16], SQUARE=[False, True]))
@triton.jit
def scale_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr, SQUARE: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x * x if SQUARE else 2.0 * x, mask=mask)


@declare(types={"x_ptr": "*fp32", "n": "i32"}, constexprs=[{"BLOCK": 16}])
@triton.jit
def runtime_static_range_kernel(x_ptr, n, BLOCK: tl.constexpr):
    total = tl.zeros([BLOCK], tl.float32)
    for _ in tl.static_range(n):  # the interpreter unrolls a runtime bound; the compiler needs a constexpr
        total += 1.0
    tl.store(x_ptr + tl.arange(0, BLOCK), total)


@triton.jit
def undeclared_kernel(x_ptr, BLOCK: tl.constexpr):
    tl.store(x_ptr + tl.arange(0, BLOCK), 0.0)
