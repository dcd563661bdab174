"""Triton kernels for linear blend skinning (spec and reference: :mod:`render3d.ops.skinning`).

Weights reach the kernels as ``(indices [V, M], values [V, M])``; dense ``[V, J]`` weights
are the case ``M = J`` with the joint index equal to the slot (``DENSE``, no index loads).
A vertex's transforms (top three rows, 12 of a 16-wide tile) are gathered ``SLOTS = 8`` slots
at a time into a ``[32, 8, 16]`` tile and blended with the weights; the blended ``3x4``
matrix is then applied. Block shapes are fixed, so ``M`` is a runtime loop bound and the
only compiled variants are dense/sparse (see the ``@declare`` lists). Kernels are float32.

Four kernels:

- forward, one program per (vertex block, body);
- backward for vertices, the same grid: ``A[:, :3]^T g`` per body (a rest mesh shared by
  every body sums them in the launcher);
- backward for weights, one program per (vertex block, slot chunk) looping over the bodies,
  so ``sum_b <g [v; 1]^T, G_k>`` accumulates in registers, with no atomics;
- backward for transforms, one program per (joint, body) reducing ``w g [v; 1]^T`` over the
  (vertex, slot) entries that use the joint, listed by a joint-sorted order with per-joint
  offsets (a CSR transpose built by the launcher with one stable sort): deterministic, no
  atomics, and the bottom row of each gradient is written as zero.

Everything accumulates in float32; index math is int64.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from render3d.kernels._variants import declare, product

BLOCK_VERTICES = 32
SLOT_CHUNK = 8  # a [32, 8, 16] gathered tile: 4096 float32 values per program
BLOCK_ENTRIES = 128

_INTS = "n_vertices n_joints n_slots"


@triton.jit
def _homogeneous_tile(vertices_ptr, body, vertex_stride, v, vmask):
    """``[BLOCK_V, 16]`` tile whose entry ``4 r + c`` is ``[x, y, z, 1][c]`` for ``r < 3``
    (zero for the unused bottom row ``r = 3``)."""
    k = tl.arange(0, 16)
    c = k % 4
    used = (k < 12)[None, :]
    coords = tl.load(vertices_ptr + body * vertex_stride + v[:, None] * 3 + c[None, :],
                     mask=vmask[:, None] & (c < 3)[None, :] & used, other=0.0).to(tl.float32)
    return tl.where((c == 3)[None, :] & used, 1.0, coords)


@triton.jit
def _gradient_tile(grad_ptr, body, n_vertices, v, vmask):
    """``[BLOCK_V, 16]`` tile whose entry ``4 r + c`` is ``g[r]`` for ``r < 3``."""
    k = tl.arange(0, 16)
    return tl.load(grad_ptr + (body * n_vertices + v[:, None]) * 3 + (k // 4)[None, :],
                   mask=vmask[:, None] & (k < 12)[None, :], other=0.0).to(tl.float32)


@triton.jit
def _slots(v, vmask, n_slots, first_slot, SLOTS: tl.constexpr):
    """Flat slot ids ``v * M + m`` of slots ``first_slot .. first_slot + SLOTS`` of each
    vertex, ``[BLOCK_V, SLOTS]``, and their mask."""
    m = first_slot + tl.arange(0, SLOTS)
    return v[:, None] * n_slots + m[None, :], vmask[:, None] & (m < n_slots)[None, :]


@triton.jit
def _gather_rows(transforms_ptr, indices_ptr, body, n_joints, n_slots, v, vmask, first_slot,
                 SLOTS: tl.constexpr, DENSE: tl.constexpr):
    """``[BLOCK_V, SLOTS, 16]`` transforms of the slots (top three rows; padded slots and
    the bottom row read as zero)."""
    slots, slot_mask = _slots(v, vmask, n_slots, first_slot, SLOTS)
    if DENSE:
        joints = slots - v[:, None] * n_slots
    else:
        joints = tl.load(indices_ptr + slots, mask=slot_mask, other=0)
    k = tl.arange(0, 16)
    return tl.load(transforms_ptr + ((body * n_joints + joints) * 16)[:, :, None] + k[None, None, :],
                   mask=slot_mask[:, :, None] & (k < 12)[None, None, :], other=0.0)


@triton.jit
def _blend(transforms_ptr, indices_ptr, values_ptr, body, n_joints, n_slots, v, vmask,
           BLOCK_V: tl.constexpr, SLOTS: tl.constexpr, DENSE: tl.constexpr):
    """``[BLOCK_V, 16]`` blended matrices ``A = sum_m w_m G_m`` (entry ``4 r + c``)."""
    blended = tl.zeros([BLOCK_V, 16], dtype=tl.float32)
    for first_slot in range(0, n_slots, SLOTS):
        slots, slot_mask = _slots(v, vmask, n_slots, first_slot, SLOTS)
        weights = tl.load(values_ptr + slots, mask=slot_mask, other=0.0)
        rows = _gather_rows(transforms_ptr, indices_ptr, body, n_joints, n_slots, v, vmask, first_slot, SLOTS, DENSE)
        blended += tl.sum(weights[:, :, None] * rows, axis=1)
    return blended


@declare(
    types={"vertices_ptr transforms_ptr values_ptr out_ptr": "*fp32", "indices_ptr": "*i64",
           _INTS + " vertex_stride": "i32"},
    constexprs=product(BLOCK_V=[BLOCK_VERTICES], SLOTS=[SLOT_CHUNK], DENSE=[False, True]),
)
@triton.jit
def _lbs_fwd_kernel(vertices_ptr, transforms_ptr, indices_ptr, values_ptr, out_ptr, n_vertices, n_joints, n_slots,
                    vertex_stride, BLOCK_V: tl.constexpr, SLOTS: tl.constexpr, DENSE: tl.constexpr):
    """One program per (vertex block, body): ``out = A [v; 1]``."""
    v = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    body = tl.program_id(1).to(tl.int64)
    vmask = v < n_vertices
    blended = _blend(transforms_ptr, indices_ptr, values_ptr, body, n_joints, n_slots, v, vmask, BLOCK_V, SLOTS, DENSE)
    point = _homogeneous_tile(vertices_ptr, body, vertex_stride, v, vmask)
    out = tl.sum(tl.reshape(blended * point, [BLOCK_V, 4, 4]), axis=2)  # [BLOCK_V, 4]: row r of A [v; 1]
    r = tl.arange(0, 4)
    tl.store(out_ptr + (body * n_vertices + v[:, None]) * 3 + r[None, :], out, mask=vmask[:, None] & (r < 3)[None, :])


@declare(
    types={"transforms_ptr values_ptr grad_out_ptr grad_vertices_ptr": "*fp32", "indices_ptr": "*i64", _INTS: "i32"},
    constexprs=product(BLOCK_V=[BLOCK_VERTICES], SLOTS=[SLOT_CHUNK], DENSE=[False, True]),
)
@triton.jit
def _lbs_bwd_vertex_kernel(transforms_ptr, indices_ptr, values_ptr, grad_out_ptr, grad_vertices_ptr, n_vertices,
                           n_joints, n_slots, BLOCK_V: tl.constexpr, SLOTS: tl.constexpr, DENSE: tl.constexpr):
    """One program per (vertex block, body): ``grad v = A[:, :3]^T g`` for that body."""
    v = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    body = tl.program_id(1).to(tl.int64)
    vmask = v < n_vertices
    blended = _blend(transforms_ptr, indices_ptr, values_ptr, body, n_joints, n_slots, v, vmask, BLOCK_V, SLOTS, DENSE)
    grad = _gradient_tile(grad_out_ptr, body, n_vertices, v, vmask)
    grad_vertex = tl.sum(tl.reshape(blended * grad, [BLOCK_V, 4, 4]), axis=1)  # column c: sum_r A[r, c] g[r]
    r = tl.arange(0, 4)
    tl.store(grad_vertices_ptr + (body * n_vertices + v[:, None]) * 3 + r[None, :], grad_vertex,
             mask=vmask[:, None] & (r < 3)[None, :])


@declare(
    types={"vertices_ptr transforms_ptr grad_out_ptr grad_values_ptr": "*fp32", "indices_ptr": "*i64",
           "n_bodies " + _INTS + " vertex_stride": "i32"},
    constexprs=product(BLOCK_V=[BLOCK_VERTICES], SLOTS=[SLOT_CHUNK], DENSE=[False, True]),
)
@triton.jit
def _lbs_bwd_weight_kernel(vertices_ptr, transforms_ptr, indices_ptr, grad_out_ptr, grad_values_ptr, n_bodies,
                           n_vertices, n_joints, n_slots, vertex_stride,
                           BLOCK_V: tl.constexpr, SLOTS: tl.constexpr, DENSE: tl.constexpr):
    """One program per (vertex block, slot chunk), looping over the bodies:
    ``grad w_m = sum_b <g [v; 1]^T, G_m>`` accumulated in registers (no atomics)."""
    v = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    first_slot = tl.program_id(1) * SLOTS
    vmask = v < n_vertices
    grad_weights = tl.zeros([BLOCK_V, SLOTS], dtype=tl.float32)
    body = tl.program_id(0).to(tl.int64) * 0  # an int64 loop counter (range() yields int32)
    for _ in range(n_bodies):
        rows = _gather_rows(transforms_ptr, indices_ptr, body, n_joints, n_slots, v, vmask, first_slot, SLOTS, DENSE)
        outer = _gradient_tile(grad_out_ptr, body, n_vertices, v, vmask) * _homogeneous_tile(
            vertices_ptr, body, vertex_stride, v, vmask)
        grad_weights += tl.sum(rows * outer[:, None, :], axis=2)
        body += 1
    m = first_slot + tl.arange(0, SLOTS)
    tl.store(grad_values_ptr + v[:, None] * n_slots + m[None, :], grad_weights,
             mask=vmask[:, None] & (m < n_slots)[None, :])


@declare(
    types={"vertices_ptr values_ptr grad_out_ptr grad_transforms_ptr": "*fp32", "order_ptr offsets_ptr": "*i64",
           _INTS + " vertex_stride": "i32"},
    constexprs=[{"BLOCK": BLOCK_ENTRIES}],
)
@triton.jit
def _lbs_bwd_transform_kernel(vertices_ptr, values_ptr, grad_out_ptr, order_ptr, offsets_ptr, grad_transforms_ptr,
                              n_vertices, n_joints, n_slots, vertex_stride, BLOCK: tl.constexpr):
    """One program per (joint, body): ``grad G_k[:3, :] = sum w g [v; 1]^T`` over the
    joint's (vertex, slot) entries; the bottom row is written as zero."""
    joint = tl.program_id(0).to(tl.int64)
    body = tl.program_id(1).to(tl.int64)
    start = tl.load(offsets_ptr + joint)
    end = tl.load(offsets_ptr + joint + 1)
    acc = tl.zeros([BLOCK, 16], dtype=tl.float32)
    for first in range(start, end, BLOCK):
        e = first + tl.arange(0, BLOCK)
        emask = e < end
        entry = tl.load(order_ptr + e, mask=emask, other=0)
        v = entry // n_slots
        weight = tl.load(values_ptr + entry, mask=emask, other=0.0)
        outer = _gradient_tile(grad_out_ptr, body, n_vertices, v, emask) * _homogeneous_tile(
            vertices_ptr, body, vertex_stride, v, emask)
        acc += weight[:, None] * outer
    k = tl.arange(0, 16)
    tl.store(grad_transforms_ptr + (body * n_joints + joint) * 16 + k, tl.sum(acc, axis=0))


def _joint_order(indices: torch.Tensor | None, n_vertices: int, n_joints: int, device: torch.device):
    """CSR transpose of the weight slots: ``order`` (flat slot ids ``v * M + m`` sorted by
    joint, stable) and ``offsets [J + 1]``."""
    if indices is None:
        slot_joints = torch.arange(n_joints, device=device).repeat(n_vertices)
    else:
        slot_joints = indices.reshape(-1)
    order = torch.sort(slot_joints, stable=True).indices
    counts = torch.bincount(slot_joints, minlength=n_joints)
    offsets = torch.zeros(n_joints + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    return order, offsets


def _index_argument(values: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
    """The indices, or an int64 placeholder the ``DENSE`` kernels never read."""
    return indices if indices is not None else torch.empty(1, dtype=torch.int64, device=values.device)


def lbs_forward(vertices: torch.Tensor, transforms: torch.Tensor, values: torch.Tensor,
                indices: torch.Tensor | None) -> torch.Tensor:
    """``[B, V, 3]`` from ``vertices [Bv, V, 3]`` (``Bv`` 1 or B), ``transforms [B, J, 4, 4]``,
    ``values [V, M]`` and ``indices [V, M]`` int64 (``None``: dense, ``M = J``), all float32."""
    batch, n_joints = transforms.shape[:2]
    n_vertices, n_slots = values.shape
    out = torch.empty((batch, n_vertices, 3), dtype=transforms.dtype, device=transforms.device)
    if batch and n_vertices:
        _lbs_fwd_kernel[(triton.cdiv(n_vertices, BLOCK_VERTICES), batch)](
            vertices, transforms, _index_argument(values, indices), values, out, n_vertices, n_joints, n_slots,
            0 if vertices.shape[0] == 1 else n_vertices * 3,
            BLOCK_V=BLOCK_VERTICES, SLOTS=SLOT_CHUNK, DENSE=indices is None,
        )
    return out


def lbs_backward(vertices, transforms, values, indices, grad_out, vertex_grad: bool, transform_grad: bool,
                 weight_grad: bool):
    """``(grad_vertices [Bv, V, 3], grad_transforms [B, J, 4, 4], grad_values [V, M])``, each
    ``None`` unless asked for. A shared rest mesh (``Bv = 1``) sums its per-body gradients."""
    batch, n_joints = transforms.shape[:2]
    n_vertices, n_slots = values.shape
    shared = vertices.shape[0] == 1
    vertex_stride = 0 if shared else n_vertices * 3
    grad_out = grad_out.contiguous()
    index_arg = _index_argument(values, indices)
    grad_vertices = grad_transforms = grad_values = None
    empty = not (batch and n_vertices)
    vertex_blocks = triton.cdiv(n_vertices, BLOCK_VERTICES)
    if vertex_grad:
        per_body = torch.zeros((batch, n_vertices, 3), dtype=vertices.dtype, device=vertices.device)
        if not empty:
            _lbs_bwd_vertex_kernel[(vertex_blocks, batch)](
                transforms, index_arg, values, grad_out, per_body, n_vertices, n_joints, n_slots,
                BLOCK_V=BLOCK_VERTICES, SLOTS=SLOT_CHUNK, DENSE=indices is None,
            )
        grad_vertices = per_body.sum(0, keepdim=True) if shared else per_body
    if weight_grad:
        grad_values = torch.zeros_like(values)
        if not empty and n_slots:
            _lbs_bwd_weight_kernel[(vertex_blocks, triton.cdiv(n_slots, SLOT_CHUNK))](
                vertices, transforms, index_arg, grad_out, grad_values, batch, n_vertices, n_joints, n_slots,
                vertex_stride, BLOCK_V=BLOCK_VERTICES, SLOTS=SLOT_CHUNK, DENSE=indices is None,
            )
    if transform_grad:
        grad_transforms = torch.zeros_like(transforms)
        if not empty and n_joints:
            order, offsets = _joint_order(indices, n_vertices, n_joints, values.device)
            _lbs_bwd_transform_kernel[(n_joints, batch)](
                vertices, values, grad_out, order, offsets, grad_transforms, n_vertices, n_joints, n_slots,
                vertex_stride, BLOCK=BLOCK_ENTRIES,
            )
    return grad_vertices, grad_transforms, grad_values


class LinearBlendSkinningFunction(torch.autograd.Function):
    """:func:`linear_blend_skinning_triton` as an autograd Function (once differentiable)."""

    @staticmethod
    def forward(ctx, vertices, transforms, values, indices):
        ctx.save_for_backward(vertices, transforms, values, indices)
        return lbs_forward(vertices, transforms, values, indices)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        vertices, transforms, values, indices = ctx.saved_tensors
        grads = lbs_backward(vertices, transforms, values, indices, grad_out, *ctx.needs_input_grad[:3])
        return (*grads, None)


def linear_blend_skinning_triton(vertices: torch.Tensor, transforms: torch.Tensor, dense: torch.Tensor | None,
                                 indices: torch.Tensor | None, values: torch.Tensor | None) -> torch.Tensor:
    """Differentiable linear blend skinning on the Triton kernels.

    Args:
        vertices: ``[Bv, V, 3]`` float32 rest vertices, ``Bv`` 1 (shared) or B.
        transforms: ``[B, J, 4, 4]`` float32.
        dense: ``[V, J]`` weights, or ``None`` when sparse.
        indices, values: ``[V, M]`` int64 joint indices (in range) and weights when sparse.

    Returns:
        ``[B, V, 3]``, differentiable in vertices, transforms and the weights.
    """
    vertices, transforms = vertices.contiguous(), transforms.contiguous()
    if dense is not None:
        return LinearBlendSkinningFunction.apply(vertices, transforms, dense.contiguous(), None)
    return LinearBlendSkinningFunction.apply(vertices, transforms, values.contiguous(), indices.contiguous())
