"""Forward kinematics over a kinematic tree: ``world_k = world_parent(k) @ local_k``.

The tree is given by ``parents [J]`` (long, ``-1`` for a root, ``parents[k] < k``). Joints
are grouped by depth (:func:`tree_levels`); each level is one batched matmul over all its
joints and all bodies (``world[..., level] = world[..., parents[level]] @ local[..., level]``),
so the work in Python is one step per level of the tree (about 10 for SMPL, 20 for anny's
rig with fingers), never one per joint.

Backward, level by level from the leaves up, with ``G_k`` the total gradient reaching
``world_k`` (its own plus what its children sent up):

- ``grad local_k = world_parent(k)^T @ G_k`` (``G_k`` itself for a root);
- ``G_parent(k) += G_k @ local_k^T``, summed over the children of each parent.

The reference and the Triton kernels (:mod:`render3d.kernels.forward_kinematics`) run that
same per-level algorithm; the reference is a custom autograd Function so that the forward
writes each level in place and the backward needs no per-level graph.
"""
from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton


@functools.lru_cache(maxsize=64)
def _levels_from_tuple(parents: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    depth: list[int] = []
    for joint, parent in enumerate(parents):
        depth.append(0 if parent < 0 else depth[parent] + 1)
    levels = []
    for level in range(max(depth, default=-1) + 1):
        joints = tuple(j for j, d in enumerate(depth) if d == level)
        levels.append((joints, tuple(parents[j] for j in joints)))
    return tuple(levels)


def check_parents(parents: torch.Tensor | list[int], n_joints: int | None = None, where: str = "parents") -> torch.Tensor:
    """Validate a parent array and return it as a CPU ``[J]`` int64 tensor.

    Raises:
        ConfigError: not 1-D integers, ``parents[k] >= k``, a value below -1, or a length
            other than ``n_joints``.
    """
    tensor = torch.as_tensor(parents)
    if tensor.dim() != 1 or tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ConfigError(f"{where}: parents must be a 1-D integer tensor, got {tensor.dtype} of shape {tuple(tensor.shape)}")
    tensor = tensor.detach().to("cpu", torch.int64)
    if n_joints is not None and tensor.numel() != n_joints:
        raise ConfigError(f"{where}: parents has {tensor.numel()} entries but there are {n_joints} joints")
    index = torch.arange(tensor.numel())
    bad = (tensor >= index) | (tensor < -1)
    if bool(bad.any()):
        joint = int(bad.nonzero()[0])
        raise ConfigError(
            f"{where}: parents[{joint}] = {int(tensor[joint])}; each joint's parent must come before it (or be -1 for a root)"
        )
    return tensor


def tree_levels(parents: torch.Tensor | list[int]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """The tree's joints grouped by depth: ``((joints, their parents), ...)`` from the roots
    (depth 0, parents ``-1``) down. Cached per parent array."""
    return _levels_from_tuple(tuple(check_parents(parents).tolist()))


def level_index_tensors(parents: torch.Tensor, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`tree_levels` as int64 index tensors ``(joints [n], parents [n])`` on ``device``
    (cached per tree and device: fitting calls this hundreds of times)."""
    return _level_index_tensors(tuple(check_parents(parents).tolist()), torch.device(device))


@functools.lru_cache(maxsize=64)
def _level_index_tensors(parents: tuple[int, ...], device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (torch.tensor(joints, dtype=torch.int64, device=device), torch.tensor(parent, dtype=torch.int64, device=device))
        for joints, parent in _levels_from_tuple(parents)
    ]


class _ForwardKinematicsReference(torch.autograd.Function):
    """Per-level batched matmuls forward; the leaves-up recursion of the module doc backward."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        levels = level_index_tensors(parents, local.device)
        world = torch.empty_like(local)
        roots, _ = levels[0]
        world[:, roots] = local[:, roots]
        for joints, parent in levels[1:]:
            world[:, joints] = world[:, parent] @ local[:, joints]
        ctx.save_for_backward(local, world)
        ctx.levels = levels
        return world

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_world: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        local, world = ctx.saved_tensors
        total = grad_world.clone()
        grad_local = torch.empty_like(local)
        for joints, parent in reversed(ctx.levels[1:]):
            grad = total[:, joints]
            grad_local[:, joints] = world[:, parent].transpose(-1, -2) @ grad
            total.index_add_(1, parent, grad @ local[:, joints].transpose(-1, -2))
        roots, _ = ctx.levels[0]
        grad_local[:, roots] = total[:, roots]
        return grad_local, None


def _validated(local: torch.Tensor, parents, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes; return ``local`` as ``[B, J, 4, 4]`` and the CPU parents."""
    if not isinstance(local, torch.Tensor) or local.dim() < 3 or local.shape[-2:] != (4, 4):
        raise ConfigError(f"{where}: local must have shape [..., J, 4, 4], got {tuple(getattr(local, 'shape', ()))}")
    if not local.is_floating_point():
        raise ConfigError(f"{where}: local must be a floating-point tensor, got {local.dtype}")
    n_joints = local.shape[-3]
    parents = check_parents(parents, n_joints, where)
    return local.reshape(local.shape[:-3].numel(), n_joints, 4, 4), parents


def forward_kinematics_reference(local: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """Forward kinematics in PyTorch (CPU product path; any device); see the module doc.

    Args:
        local: ``[..., J, 4, 4]`` joint transforms relative to their parents (a root's is
            in world coordinates), any float dtype.
        parents: ``[J]`` integer, ``-1`` for a root, ``parents[k] < k``.

    Returns:
        ``[..., J, 4, 4]`` world transforms, local's dtype; differentiable in ``local``.
    """
    flat, parents = _validated(local, parents, "forward_kinematics_reference")
    if flat.shape[1] == 0 or flat.shape[0] == 0:
        return local.clone()
    return _ForwardKinematicsReference.apply(flat.contiguous(), parents).view(local.shape)


def forward_kinematics(local: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """World transforms of a kinematic tree, ``world_k = world_parent(k) @ local_k``.

    Runs the Triton kernels or :func:`forward_kinematics_reference` by the rule of
    :func:`render3d.ops._backend.use_triton`; the kernels are float32, other float dtypes
    always run the reference.

    Args:
        local: ``[..., J, 4, 4]`` float32 (float64 on the reference) joint transforms
            relative to their parents; a root's transform is in world coordinates.
        parents: ``[J]`` integer tensor or list, ``-1`` for a root and ``parents[k] < k``.

    Returns:
        ``[..., J, 4, 4]`` world transforms, differentiable in ``local``.

    Raises:
        ConfigError: a shape, dtype or parent array that breaks the rules above.

    Example:
        >>> local = torch.eye(4).repeat(2, 3, 1, 1); local[:, 1:, 0, 3] = 1.0
        >>> forward_kinematics(local, torch.tensor([-1, 0, 1]))[0, :, 0, 3]
        tensor([0., 1., 2.])
    """
    flat, parents = _validated(local, parents, "forward_kinematics")
    if flat.shape[1] == 0 or flat.shape[0] == 0:
        return local.clone()
    if local.dtype == torch.float32 and use_triton(local):
        from render3d.kernels.forward_kinematics import forward_kinematics_triton

        return forward_kinematics_triton(flat, parents).view(local.shape)
    return _ForwardKinematicsReference.apply(flat.contiguous(), parents).view(local.shape)
