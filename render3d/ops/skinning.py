"""Linear blend skinning: ``v'_i = sum_k w_ik (G_k @ [v_i; 1])[:3]``.

Weights are dense ``[V, J]`` or sparse as a pair ``(indices [V, M], values [V, M])`` (vertex
``i`` takes joint ``indices[i, m]`` with weight ``values[i, m]``; repeated indices add up).
Only the top three rows of each ``G_k`` are read, so the bottom row gets a zero gradient.

The blended matrix ``A_i = sum_k w_ik G_k[:3, :]`` is formed first, then applied:
``v'_i = A_i[:, :3] v_i + A_i[:, 3]``. Gradients, with ``g_i`` the output gradient:

- vertices: ``A_i[:, :3]^T g_i``;
- transforms: ``grad G_k[:3, :] = sum_i w_ik g_i [v_i; 1]^T``;
- weights: ``grad w_ik = <g_i [v_i; 1]^T, G_k[:3, :]>`` (per ``(i, m)`` entry when sparse).

The reference (:class:`_SkinningReference`, any device) works through the vertices in chunks
of :data:`CHUNK_ENTRIES` blended entries on CPU (one chunk on a GPU). For each chunk it blends
every body's ``A`` at once, ``W_chunk @ G`` with ``G`` the ``[J, 12 B]`` matrix of the
transforms' top rows: a weighted sum of each vertex's ``M`` slot rows (``embedding_bag``) when
sparse, a GEMM over a dense ``[n, J]`` slice when dense; then it applies ``A`` along the bodies
(innermost in memory). The backward recomputes ``A`` chunk by chunk and forms the gradients
above the same way, ``W_chunk^T @ (g [v; 1]^T)`` for the transforms (sparse: the chunk's slots
grouped by joint by one stable sort, the CSR transpose the kernels use). Chunking keeps each
``[n, 3, 4, B]`` block of blended matrices in cache, and the sparse sum reads ``M`` rows per
vertex instead of ``J`` (9 of 104 on anny). The Triton kernels
(:mod:`render3d.kernels.skinning`) gather each vertex's ``M`` transforms (``M = J`` when
dense) per vertex block and compute the same sums.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton

Weights = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

CHUNK_ENTRIES = 196_608  # blended-matrix entries per chunk ([n, 3, 4, B], 768 KB float32): in cache


def _chunk_starts(batch: int, n_vertices: int, n_slots: int, device: torch.device) -> range:
    """First vertex of each chunk, the chunk size as ``step``: on CPU 256 vertices at B = 64
    (every vertex at once for a few bodies), elsewhere every vertex (no cache to fit, and fewer
    launches). No chunk without a body or a weight slot: there is nothing to blend."""
    if not (batch and n_slots):
        return range(0)
    size = CHUNK_ENTRIES // (12 * batch) if device.type == "cpu" else n_vertices
    return range(0, n_vertices, max(size, 1))


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


class _SkinningReference(torch.autograd.Function):
    """Chunked linear blend skinning in PyTorch (module doc), once differentiable.

    Inputs: ``vertices [Bv, V, 3]`` (``Bv`` 1 or B), ``transforms [B, J, 4, 4]``, ``weights``
    dense ``[V, J]`` or sparse values ``[V, M]`` with ``indices [V, M]`` int64 (``None`` when
    dense). Output ``[B, V, 3]``."""

    @staticmethod
    def forward(ctx, vertices, transforms, weights, indices):
        ctx.save_for_backward(vertices, transforms, weights, indices)
        batch, n_joints = transforms.shape[:2]
        n_vertices = vertices.shape[1]
        rows = _transform_rows(transforms)
        points = vertices.permute(1, 2, 0)  # [V, 3, Bv]: bodies innermost, for contiguous multiply-adds
        starts = _chunk_starts(batch, n_vertices, weights.shape[1], vertices.device)
        out = vertices.new_empty(batch, n_vertices, 3) if starts else vertices.new_zeros(batch, n_vertices, 3)
        for start in starts:
            end = min(start + starts.step, n_vertices)
            blended = _blend(weights, indices, start, end, rows).view(end - start, 3, 4, batch)
            skinned = (blended[:, :, :3] * points[start:end, None].contiguous()).sum(2) + blended[:, :, 3]
            out[:, start:end] = skinned.permute(2, 0, 1)  # transposed chunk by chunk, while in cache
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        vertices, transforms, weights, indices = ctx.saved_tensors
        vertex_grad, transform_grad, weight_grad = ctx.needs_input_grad[:3]
        batch, n_joints = transforms.shape[:2]
        n_vertices = vertices.shape[1]
        shared = vertices.shape[0] == 1 and batch != 1
        rows = _transform_rows(transforms)
        points = vertices.permute(1, 2, 0)
        grad = grad_out.permute(1, 2, 0)  # [V, 3, B]
        grad_vertices = torch.zeros_like(vertices) if vertex_grad else None
        grad_rows = rows.new_zeros(rows.shape) if transform_grad else None
        grad_weights = torch.zeros_like(weights) if weight_grad else None
        starts = _chunk_starts(batch, n_vertices, weights.shape[1], vertices.device)
        for start in starts:
            end = min(start + starts.step, n_vertices)
            g = grad[start:end].contiguous()
            if vertex_grad:  # A[:, :3]^T g
                blended = _blend(weights, indices, start, end, rows).view(end - start, 3, 4, batch)
                per_body = (blended[:, :, :3] * g[:, :, None]).sum(1)
                grad_vertices[:, start:end] = (per_body.sum(2, keepdim=True) if shared else per_body).permute(2, 0, 1)
            if transform_grad or weight_grad:  # g [v; 1]^T, the gradient of the blended matrices
                outer = g.new_empty(end - start, 3, 4, batch)
                torch.mul(g[:, :, None], points[start:end, None], out=outer[:, :, :3])
                outer[:, :, 3] = g
                outer = outer.view(end - start, 12 * batch)
                if transform_grad:
                    grad_rows += _blend_transposed(weights, indices, start, end, outer, n_joints)
                if weight_grad:
                    per_joint = outer @ rows.t()  # [n, J]: <g [v; 1]^T, G_k>
                    grad_weights[start:end] = per_joint if indices is None else per_joint.gather(1, indices[start:end])
        grad_transforms = None
        if transform_grad:
            grad_transforms = torch.zeros_like(transforms)
            grad_transforms[:, :, :3] = grad_rows.view(n_joints, 3, 4, batch).permute(3, 0, 1, 2)
        return grad_vertices, grad_transforms, grad_weights, None


def _transform_rows(transforms: torch.Tensor) -> torch.Tensor:
    """``[J, 12 B]``: the top three rows of ``transforms [B, J, 4, 4]``, entry ``(r, c, b)``
    of joint ``k`` at column ``(4 r + c) B + b`` (bodies innermost)."""
    batch, n_joints = transforms.shape[:2]
    return transforms[:, :, :3, :].permute(1, 2, 3, 0).reshape(n_joints, 12 * batch)


def _blend(weights: torch.Tensor, indices: torch.Tensor | None, start: int, end: int, rows: torch.Tensor) -> torch.Tensor:
    """``W_chunk @ rows``, ``[end - start, 12 B]``: the blended matrices of vertices
    ``start:end`` (a weighted sum of their ``M`` slots' rows when sparse, repeated joints
    adding up)."""
    if indices is None:
        return weights[start:end] @ rows
    return F.embedding_bag(indices[start:end], rows, per_sample_weights=weights[start:end], mode="sum")


def _blend_transposed(weights: torch.Tensor, indices: torch.Tensor | None, start: int, end: int,
                      chunk_rows: torch.Tensor, n_joints: int) -> torch.Tensor:
    """``W_chunk^T @ chunk_rows``, ``[J, 12 B]``: per joint, the weighted sum of the rows of
    the chunk's vertices that use it. Sparse weights are first grouped by joint (a CSR
    transpose by one stable sort, as in the kernels)."""
    if indices is None:
        return weights[start:end].t() @ chunk_rows
    slot_joints = indices[start:end].reshape(-1)
    order = torch.sort(slot_joints, stable=True).indices
    counts = torch.bincount(slot_joints, minlength=n_joints)
    return F.embedding_bag(order // indices.shape[1], chunk_rows, counts.cumsum(0) - counts,
                           per_sample_weights=weights[start:end].reshape(-1)[order], mode="sum")


def linear_blend_skinning_reference(vertices: torch.Tensor, transforms: torch.Tensor, weights: Weights) -> torch.Tensor:
    """Linear blend skinning in PyTorch (chunked products; any device); see the module doc.

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
    out = _SkinningReference.apply(flat_vertices, flat_transforms, dense if dense is not None else values, indices)
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
        out = _SkinningReference.apply(flat_vertices, flat_transforms, dense if dense is not None else values, indices)
    return out.view(*batch, vertices.shape[-2], 3)
