"""Linear blend skinning: ``v'_i = sum_k w_ik (G_k @ [v_i; 1])[:3]``.

Weights are dense ``[V, J]`` or sparse as a pair ``(indices [V, M], values [V, M])`` (vertex
``i`` takes joint ``indices[i, m]`` with weight ``values[i, m]``; repeated indices add up).
Only the top three rows of each ``G_k`` are read, so the bottom row gets a zero gradient.

The blended matrix ``A_i = sum_k w_ik G_k[:3, :]`` is formed first, then applied:
``v'_i = A_i[:, :3] v_i + A_i[:, 3]``. Gradients, with ``g_i`` the output gradient:

- vertices: ``A_i[:, :3]^T g_i``;
- transforms: ``grad G_k[:3, :] = sum_i w_ik g_i [v_i; 1]^T``;
- weights: ``grad w_ik = <g_i [v_i; 1]^T, G_k[:3, :]>`` (per ``(i, m)`` entry when sparse).

The reference forms ``A`` for every body with one matrix product ``W @ G`` over the dense
weight matrix (sparse weights are first scattered into ``[V, J]``, an exact scatter-add), the
fastest formulation on CPU and the one anny uses. The Triton kernels
(:mod:`render3d.kernels.skinning`) gather each vertex's ``M`` transforms instead (``M = J``
when dense) and compute the same sums.
"""
from __future__ import annotations

import torch

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton

Weights = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _validated(vertices: torch.Tensor, transforms: torch.Tensor, weights: Weights, where: str):
    """Check shapes; return ``(vertices [Bv, V, 3], transforms [B, J, 4, 4], dense or None,
    indices (int64) or None, values or None, batch shape)`` with ``Bv`` 1 (shared) or ``B``."""
    if not isinstance(vertices, torch.Tensor) or vertices.dim() < 2 or vertices.shape[-1] != 3:
        raise ConfigError(f"{where}: vertices must have shape [..., V, 3], got {tuple(getattr(vertices, 'shape', ()))}")
    if not isinstance(transforms, torch.Tensor) or transforms.dim() < 3 or transforms.shape[-2:] != (4, 4):
        raise ConfigError(f"{where}: transforms must have shape [..., J, 4, 4], got {tuple(getattr(transforms, 'shape', ()))}")
    n_vertices, n_joints = vertices.shape[-2], transforms.shape[-3]
    try:
        batch = torch.broadcast_shapes(vertices.shape[:-2], transforms.shape[:-3])
    except RuntimeError:
        raise ConfigError(
            f"{where}: batch shapes of vertices {tuple(vertices.shape[:-2])} and transforms "
            f"{tuple(transforms.shape[:-3])} do not broadcast"
        ) from None
    if vertices.dtype != transforms.dtype or not vertices.is_floating_point():
        raise ConfigError(f"{where}: vertices ({vertices.dtype}) and transforms ({transforms.dtype}) must share one float dtype")
    dense = indices = values = None
    if isinstance(weights, torch.Tensor):
        if weights.shape != (n_vertices, n_joints):
            raise ConfigError(f"{where}: dense weights must have shape [V, J] = [{n_vertices}, {n_joints}], got {tuple(weights.shape)}")
        dense = weights
        weight_dtype = weights.dtype
    elif isinstance(weights, (tuple, list)) and len(weights) == 2:
        indices, values = weights
        if not isinstance(indices, torch.Tensor) or not isinstance(values, torch.Tensor) \
                or indices.dim() != 2 or indices.shape != values.shape or indices.shape[0] != n_vertices:
            raise ConfigError(
                f"{where}: sparse weights must be (indices [V, M], values [V, M]) with V = {n_vertices}, got shapes "
                f"{tuple(getattr(indices, 'shape', ()))} and {tuple(getattr(values, 'shape', ()))}"
            )
        if indices.is_floating_point() or indices.dtype == torch.bool:
            raise ConfigError(f"{where}: sparse weight indices must be integers, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_joints):
            raise ConfigError(f"{where}: sparse weight indices must lie in [0, {n_joints}), got [{int(indices.min())}, {int(indices.max())}]")
        indices = indices.to(torch.int64)
        weight_dtype = values.dtype
    else:
        raise ConfigError(f"{where}: weights must be a dense [V, J] tensor or a pair (indices [V, M], values [V, M])")
    if weight_dtype != vertices.dtype:
        raise ConfigError(f"{where}: weights must be {vertices.dtype} like the vertices, got {weight_dtype}")
    devices = {t.device for t in (vertices, transforms, dense, indices, values) if t is not None}
    if len(devices) > 1:
        raise ConfigError(f"{where}: all tensors must be on one device, got {sorted(map(str, devices))}")
    if vertices.shape[:-2].numel() == 1:  # one rest mesh shared by every body
        flat_vertices = vertices.reshape(1, n_vertices, 3)
    else:
        flat_vertices = vertices.expand(*batch, n_vertices, 3).reshape(batch.numel(), n_vertices, 3)
    flat_transforms = transforms.expand(*batch, n_joints, 4, 4).reshape(batch.numel(), n_joints, 4, 4)
    return flat_vertices, flat_transforms, dense, indices, values, batch


def dense_weights(indices: torch.Tensor, values: torch.Tensor, n_joints: int) -> torch.Tensor:
    """``[V, J]`` dense weights from sparse ``(indices [V, M], values [V, M])`` (repeated
    indices add up); differentiable in ``values``."""
    dense = torch.zeros(indices.shape[0], n_joints, dtype=values.dtype, device=values.device)
    return dense.scatter_add(1, indices.to(torch.int64), values)


def _blend_and_apply(vertices: torch.Tensor, transforms: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``vertices [Bv, V, 3]``, ``transforms [B, J, 4, 4]``, dense ``weights [V, J]`` ->
    ``[B, V, 3]``.

    One GEMM ``[V, J] @ [J, 12*B]`` blends every body's matrices at once (a broadcast batched
    matmul of the shared weights is much slower on CPU); the ``3x4`` matrices are then applied
    as three fused multiply-adds over ``[V, 3, B]`` (a batched ``3x3 @ 3x1`` matmul or a
    reduction over a size-3 axis is 10-100x slower on CPU)."""
    batch, n_joints = transforms.shape[:2]
    # Bodies innermost ([V, 3, 4, B]), so the multiply-adds below run along contiguous memory.
    rows = transforms[:, :, :3, :].permute(1, 2, 3, 0).reshape(n_joints, 12 * batch)
    blended = (weights @ rows).view(weights.shape[0], 3, 4, batch)
    x, y, z = vertices.permute(1, 2, 0).unsqueeze(1).unbind(2)  # [V, 1, Bv] each
    column_x, column_y, column_z, offset = blended.unbind(2)  # unbind: one gradient buffer, not four
    out = torch.addcmul(torch.addcmul(torch.addcmul(offset, column_x, x), column_y, y), column_z, z)
    return out.permute(2, 0, 1).contiguous()


def linear_blend_skinning_reference(vertices: torch.Tensor, transforms: torch.Tensor, weights: Weights) -> torch.Tensor:
    """Linear blend skinning in PyTorch (CPU product path; any device); see the module doc.

    Args:
        vertices: ``[..., V, 3]`` rest vertices.
        transforms: ``[..., J, 4, 4]`` skinning transforms ``G_k`` (batch shape broadcast
            with the vertices').
        weights: dense ``[V, J]`` or sparse ``(indices [V, M] int, values [V, M])``.

    Returns:
        ``[*batch, V, 3]`` skinned vertices; differentiable in vertices, transforms and the
        weight values.
    """
    flat_vertices, flat_transforms, dense, indices, values, batch = _validated(
        vertices, transforms, weights, "linear_blend_skinning_reference")
    if dense is None:
        dense = dense_weights(indices, values, flat_transforms.shape[1])
    out = _blend_and_apply(flat_vertices, flat_transforms, dense)
    return out.view(*batch, vertices.shape[-2], 3)


def linear_blend_skinning(vertices: torch.Tensor, transforms: torch.Tensor, weights: Weights) -> torch.Tensor:
    """Linear blend skinning, ``v'_i = sum_k w_ik (G_k [v_i; 1])[:3]`` (module doc).

    Runs the Triton kernels or :func:`linear_blend_skinning_reference` by the rule of
    :func:`render3d.ops._backend.use_triton`; the kernels are float32, other float dtypes
    always run the reference.

    Args:
        vertices: ``[..., V, 3]`` float32 rest vertices (shared by every body when their
            batch shape is empty or 1).
        transforms: ``[..., J, 4, 4]`` float32 skinning transforms ``G_k``; the batch shapes
            of vertices and transforms broadcast.
        weights: dense ``[V, J]`` or sparse ``(indices [V, M] integer, values [V, M])``.

    Returns:
        ``[*batch, V, 3]`` skinned vertices; differentiable in vertices, transforms and
        weights (the values of sparse weights).

    Raises:
        ConfigError: shapes, dtypes, devices or joint indices out of range.

    Example:
        >>> rest = torch.rand(100, 3)
        >>> transforms = torch.eye(4).repeat(8, 2, 1, 1)
        >>> weights = torch.full((100, 2), 0.5)
        >>> linear_blend_skinning(rest, transforms, weights).shape
        torch.Size([8, 100, 3])
    """
    flat_vertices, flat_transforms, dense, indices, values, batch = _validated(
        vertices, transforms, weights, "linear_blend_skinning")
    weight_tensors = (dense,) if dense is not None else (indices, values)
    if vertices.dtype == torch.float32 and use_triton(vertices, transforms, *weight_tensors):
        from render3d.kernels.skinning import linear_blend_skinning_triton

        out = linear_blend_skinning_triton(flat_vertices, flat_transforms, dense, indices, values)
    else:
        if dense is None:
            dense = dense_weights(indices, values, flat_transforms.shape[1])
        out = _blend_and_apply(flat_vertices, flat_transforms, dense)
    return out.view(*batch, vertices.shape[-2], 3)
