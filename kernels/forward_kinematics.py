"""Triton kernels for forward kinematics (spec and reference: :mod:`render3d.ops.forward_kinematics`).

Design: one launch per level of the tree, each launch fully parallel over (body, joint of
the level) pairs, ``BLOCK`` pairs per program, each pair one 4x4 matmul as four rank-1
updates of a ``[BLOCK, 16]`` tile. Why per level rather than one program walking all levels
for a group of bodies:

- a level reads what the previous one wrote; across launches that ordering is free, while
  inside one program it would need a barrier after every level and would keep a whole body's
  ``[J, 4, 4]`` tree per program (poor occupancy at small batches);
- the launch count is the tree's depth (about 10 for SMPL, 20 for anny), negligible next to
  the ``B * J * 16`` loads and stores that bound the op;
- the backward is the same walk from the leaves up, each parent's gradient accumulated from
  its children with float32 atomics; within a launch those atomics only touch the level
  above, which no program of that launch reads.

Roots (depth 0) are copied by the launcher (``world = local`` there). Kernels are float32;
index math is int64.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from render3d.kernels._variants import declare
from render3d.ops.forward_kinematics import level_index_tensors

BLOCK_PAIRS = 64


@triton.jit
def _pair_offsets(pid, joints_ptr, parents_ptr, n_level, n_pairs, n_joints, BLOCK: tl.constexpr):
    """Per pair of the block, as ``[BLOCK, 1]`` columns: the int64 offsets of its joint's and
    its parent's 4x4 blocks (row-major, in units of elements) and the mask; then the ``[16]``
    entry index of a 4x4 tile with its row and column."""
    pairs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = pairs < n_pairs
    body = pairs // n_level
    slot = pairs % n_level
    joint = tl.load(joints_ptr + slot, mask=mask, other=0)
    parent = tl.load(parents_ptr + slot, mask=mask, other=0)
    entry = tl.arange(0, 16)
    own = (body * n_joints + joint) * 16
    up = (body * n_joints + parent) * 16
    return own[:, None], up[:, None], mask[:, None], entry, entry // 4, entry % 4


@declare(
    types={"local_ptr world_ptr": "*fp32", "joints_ptr parents_ptr": "*i64", "n_level n_pairs n_joints": "i32"},
    constexprs=[{"BLOCK": BLOCK_PAIRS}],
)
@triton.jit
def _fk_level_fwd_kernel(local_ptr, world_ptr, joints_ptr, parents_ptr, n_level, n_pairs, n_joints,
                         BLOCK: tl.constexpr):
    """``world[b, joint] = world[b, parent] @ local[b, joint]`` for one level."""
    own, up, mask2, entry, row, col = _pair_offsets(tl.program_id(0), joints_ptr, parents_ptr, n_level, n_pairs,
                                                    n_joints, BLOCK)
    acc = tl.zeros([BLOCK, 16], dtype=tl.float32)
    for k in tl.static_range(4):
        left = tl.load(world_ptr + up + (row * 4 + k)[None, :], mask=mask2, other=0.0)
        right = tl.load(local_ptr + own + (k * 4 + col)[None, :], mask=mask2, other=0.0)
        acc += left * right
    tl.store(world_ptr + own + entry[None, :], acc, mask=mask2)


@declare(
    types={"local_ptr world_ptr total_ptr grad_local_ptr": "*fp32", "joints_ptr parents_ptr": "*i64",
           "n_level n_pairs n_joints": "i32"},
    constexprs=[{"BLOCK": BLOCK_PAIRS}],
)
@triton.jit
def _fk_level_bwd_kernel(local_ptr, world_ptr, total_ptr, grad_local_ptr, joints_ptr, parents_ptr, n_level,
                         n_pairs, n_joints, BLOCK: tl.constexpr):
    """For one level: ``grad_local[joint] = world[parent]^T @ G[joint]`` and
    ``G[parent] += G[joint] @ local[joint]^T`` (atomics: siblings share a parent)."""
    own, up, mask2, entry, row, col = _pair_offsets(tl.program_id(0), joints_ptr, parents_ptr, n_level, n_pairs,
                                                    n_joints, BLOCK)
    grad_local = tl.zeros([BLOCK, 16], dtype=tl.float32)
    grad_parent = tl.zeros([BLOCK, 16], dtype=tl.float32)
    for k in tl.static_range(4):
        # (W_p^T G)[r, c] = sum_k W_p[k, r] G[k, c];  (G L^T)[r, c] = sum_k G[r, k] L[c, k].
        parent_world = tl.load(world_ptr + up + (k * 4 + row)[None, :], mask=mask2, other=0.0)
        grad_kc = tl.load(total_ptr + own + (k * 4 + col)[None, :], mask=mask2, other=0.0)
        grad_local += parent_world * grad_kc
        grad_rk = tl.load(total_ptr + own + (row * 4 + k)[None, :], mask=mask2, other=0.0)
        local_ck = tl.load(local_ptr + own + (col * 4 + k)[None, :], mask=mask2, other=0.0)
        grad_parent += grad_rk * local_ck
    tl.store(grad_local_ptr + own + entry[None, :], grad_local, mask=mask2)
    # Pure accumulation into the level above, read only by a later launch: relaxed atomics.
    tl.atomic_add(total_ptr + up + entry[None, :], grad_parent, mask=mask2, sem="relaxed")


def _launch_level(kernel, tensors, joints: torch.Tensor, parent: torch.Tensor, batch: int, n_joints: int) -> None:
    n_pairs = batch * joints.numel()
    if n_pairs:
        kernel[(triton.cdiv(n_pairs, BLOCK_PAIRS),)](
            *tensors, joints, parent, joints.numel(), n_pairs, n_joints, BLOCK=BLOCK_PAIRS)


def fk_forward(local: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """``world [B, J, 4, 4]`` from ``local [B, J, 4, 4]`` float32 and CPU ``parents [J]``."""
    local = local.contiguous()
    batch, n_joints = local.shape[:2]
    levels = level_index_tensors(parents, local.device)
    world = torch.empty_like(local)
    roots, _ = levels[0]
    world[:, roots] = local[:, roots]
    for joints, parent in levels[1:]:
        _launch_level(_fk_level_fwd_kernel, (local, world), joints, parent, batch, n_joints)
    return world


def fk_backward(local: torch.Tensor, world: torch.Tensor, parents: torch.Tensor, grad_world: torch.Tensor) -> torch.Tensor:
    """``grad_local [B, J, 4, 4]`` for ``grad_world``; the running totals ``G`` live in a copy
    of ``grad_world`` (the incoming gradient is not written)."""
    batch, n_joints = local.shape[:2]
    levels = level_index_tensors(parents, local.device)
    total = grad_world.contiguous().clone()
    grad_local = torch.empty_like(local)
    for joints, parent in reversed(levels[1:]):
        _launch_level(_fk_level_bwd_kernel, (local, world, total, grad_local), joints, parent, batch, n_joints)
    roots, _ = levels[0]
    grad_local[:, roots] = total[:, roots]
    return grad_local


class ForwardKinematicsFunction(torch.autograd.Function):
    """:func:`forward_kinematics_triton` as an autograd Function (once differentiable)."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        world = fk_forward(local, parents)
        ctx.save_for_backward(local, world)
        ctx.parents = parents
        return world

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_world: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        local, world = ctx.saved_tensors
        return fk_backward(local.contiguous(), world, ctx.parents, grad_world), None


def forward_kinematics_triton(local: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """Differentiable forward kinematics on the Triton kernels.

    Args:
        local: ``[B, J, 4, 4]`` float32 local transforms.
        parents: ``[J]`` int64 CPU tensor, validated (see
            :func:`render3d.ops.forward_kinematics.check_parents`).

    Returns:
        ``[B, J, 4, 4]`` world transforms, differentiable in ``local``.
    """
    return ForwardKinematicsFunction.apply(local, parents)
