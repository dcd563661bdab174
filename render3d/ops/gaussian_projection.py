"""Projection of 3D Gaussians into pinhole cameras (3D Gaussian Splatting, EWA splatting).

For every (camera, Gaussian) pair:

1. ``t = W @ mean + tW`` with ``w2c = [[W, tW], [0, 1]]``; the pair is culled when
   ``t.z <= near`` or ``t.z >= far``.
2. ``Sigma = R S S^T R^T`` with ``R`` the rotation of the normalised ``wxyz`` quaternion and
   ``S = diag(exp(log_scales))``.
3. The affine (EWA) approximation of the projection at ``t``:
   ``J = [[fx/z, 0, -fx*u/z], [0, fy/z, -fy*v/z]]`` with ``u = x/z`` and ``v = y/z`` clamped to
   the image frustum widened by 15% of the image size on each side,
   ``u in [-cx/fx - 0.15*width/fx, (width-cx)/fx + 0.15*width/fx]`` (and likewise ``v``): for a
   centred principal point that is the original 3DGS limit ``1.3 * 0.5*width/fx``. The clamp
   keeps Gaussians far off to the side from smearing over the whole image.
4. ``Sigma2d = J W Sigma W^T J^T + eps2d * I`` (the low-pass dilation); the conic is its
   inverse. With ``antialiased`` the opacity compensation of Mip-Splatting,
   ``sqrt(det(Sigma2d - eps2d*I) / det(Sigma2d))``, is returned, otherwise 1.
5. ``radius = ceil(3 * sqrt(largest eigenvalue of Sigma2d))``; the pair is culled when
   ``det(Sigma2d) <= 0``, ``radius <= radius_clip`` or the ``3 sigma`` box
   ``means2d +- radius`` lies entirely outside the image.

Culled pairs have ``radii == 0`` and every floating-point output zero (so they get zero
gradients); consumers select visible pairs with ``radii > 0``.

The PyTorch reference computes ``J W`` first and then ``(J W R S)(J W R S)^T``, which equals
step 4 without forming the 3x3 covariance; the Triton kernel runs the same arithmetic.

Example::

    >>> means = torch.randn(100, 3) + torch.tensor([0.0, 0.0, 4.0])
    >>> quats, log_scales = torch.randn(100, 4), torch.full((100, 3), -3.0)
    >>> K = torch.tensor([[[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]])
    >>> out = project_gaussians(means, quats, log_scales, torch.eye(4)[None], K, 64, 48)
    >>> out["means2d"].shape, out["radii"].dtype
    (torch.Size([1, 100, 2]), torch.int32)
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.errors import ConfigError
from render3d.ops._backend import use_triton
from render3d.ops.rotations import quaternion_to_matrix

__all__ = ["project_gaussians", "project_gaussians_reference", "covariance_3d",
           "FRUSTUM_MARGIN"]

# Fraction of the image size by which the frustum clamp of the EWA Jacobian extends past each
# image border (0.15 = 0.3 of the half-extent: the original 3DGS limit of 1.3 * tan(fov/2)).
FRUSTUM_MARGIN = 0.15


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    w2c: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    antialiased: bool = False,
    radius_clip: float = 0.0,
) -> dict[str, Tensor]:
    """Project 3D Gaussians into ``C`` cameras: 2D means, conics, depths, radii.

    Args:
        means: ``[N,3]`` float world-space centres.
        quats: ``[N,4]`` float rotations as ``wxyz`` quaternions (normalised here; must be
            non-zero).
        log_scales: ``[N,3]`` float per-axis log standard deviations.
        w2c: ``[C,4,4]`` float world-to-camera transforms, OpenCV axes (``Cameras.w2c``).
        K: ``[C,3,3]`` float intrinsics in pixels.
        width, height: image size in pixels.
        near, far: depth range; pairs with camera z outside ``(near, far)`` are culled.
        eps2d: variance in pixels^2 added to the 2D covariance (low-pass filter).
        antialiased: return Mip-Splatting's opacity compensation instead of ones.
        radius_clip: pairs with ``radius <= radius_clip`` pixels are culled.

    Returns:
        A dict of tensors on the inputs' device (floating outputs in the dtype of ``means``):

        - ``means2d`` ``[C,N,2]``: pixel coordinates ``(x, y)``, pixel centres at +0.5
          (as :meth:`render3d.Cameras.project`).
        - ``conics`` ``[C,N,3]``: ``(a, b, c)`` of the inverse 2D covariance ``[[a,b],[b,c]]``.
        - ``depths`` ``[C,N]``: camera-space z.
        - ``radii`` ``[C,N]`` int32: ``3 sigma`` radius in pixels, 0 for culled pairs.
        - ``compensations`` ``[C,N]``: opacity factor (1 when not ``antialiased``).

        Culled pairs have every floating output zero. The floating outputs are
        differentiable with respect to ``means``, ``quats`` and ``log_scales``; ``w2c`` and
        ``K`` are treated as constants (no gradient flows to them). The Triton kernel
        computes in float32.

    Raises:
        ConfigError: mismatched shapes, devices or dtypes, or invalid scalars.
    """
    _validate(means, quats, log_scales, w2c, K, width, height, near, far, eps2d, radius_clip)
    options = dict(near=near, far=far, eps2d=eps2d, antialiased=antialiased, radius_clip=radius_clip)
    if use_triton(means, quats, log_scales, w2c, K):
        from render3d.kernels.gaussian_projection import project_gaussians_triton

        return project_gaussians_triton(means, quats, log_scales, w2c, K, int(width), int(height), **options)
    return project_gaussians_reference(means, quats, log_scales, w2c, K, int(width), int(height), **options)


def project_gaussians_reference(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    w2c: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    antialiased: bool = False,
    radius_clip: float = 0.0,
) -> dict[str, Tensor]:
    """The PyTorch specification of :func:`project_gaussians` (same arguments and outputs),
    vectorized over all ``C x N`` pairs, differentiable through autograd."""
    dtype = means.dtype
    W = w2c[:, :3, :3].to(dtype)
    fx, fy, cx, cy = (K[:, i, j].to(dtype)[:, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))

    cam = torch.matmul(means, W.transpose(1, 2)) + w2c[:, None, :3, 3].to(dtype)  # [C,N,3]
    x, y, z = cam.unbind(-1)
    in_depth = (z > near) & (z < far)
    inv_z = 1.0 / torch.where(in_depth, z, torch.ones_like(z))  # culled pairs: any finite value
    u, v = x * inv_z, y * inv_z
    uc = torch.clamp(u, -(cx + FRUSTUM_MARGIN * width) / fx, (width * (1 + FRUSTUM_MARGIN) - cx) / fx)
    vc = torch.clamp(v, -(cy + FRUSTUM_MARGIN * height) / fy, (height * (1 + FRUSTUM_MARGIN) - cy) / fy)

    # Rows of J W: [C,N,3] each.
    jw0 = (fx * inv_z)[..., None] * W[:, None, 0] - (fx * uc * inv_z)[..., None] * W[:, None, 2]
    jw1 = (fy * inv_z)[..., None] * W[:, None, 1] - (fy * vc * inv_z)[..., None] * W[:, None, 2]
    rs = quaternion_to_matrix(quats) * torch.exp(log_scales)[:, None, :]  # R S, [N,3,3]
    p0 = torch.matmul(jw0.unsqueeze(-2), rs).squeeze(-2)  # rows of J W R S
    p1 = torch.matmul(jw1.unsqueeze(-2), rs).squeeze(-2)
    var_x, cov_xy, var_y = (p0 * p0).sum(-1), (p0 * p1).sum(-1), (p1 * p1).sum(-1)

    a, c = var_x + eps2d, var_y + eps2d
    det = a * c - cov_xy * cov_xy
    invertible = in_depth & (det > 0)
    inv_det = 1.0 / torch.where(invertible, det, torch.ones_like(det))
    means2d = torch.stack([fx * u + cx, fy * v + cy], dim=-1)

    with torch.no_grad():
        half_trace = 0.5 * (a + c)
        largest = half_trace + torch.sqrt(torch.clamp(half_trace * half_trace - det, min=0.0))
        radius = torch.ceil(3.0 * torch.sqrt(torch.clamp(largest, min=0.0)))
        px, py = means2d.unbind(-1)
        on_image = (px + radius > 0) & (px - radius < width) & (py + radius > 0) & (py - radius < height)
        valid = invertible & (radius > radius_clip) & on_image
    zero = torch.zeros((), dtype=dtype, device=means.device)

    conics = torch.stack([c * inv_det, -cov_xy * inv_det, a * inv_det], dim=-1)
    if antialiased:
        ratio = (var_x * var_y - cov_xy * cov_xy) * inv_det
        positive = valid & (ratio > 0)
        compensations = torch.where(positive, torch.sqrt(torch.where(positive, ratio, torch.ones_like(ratio))), zero)
    else:
        compensations = valid.to(dtype)
    keep = valid[..., None]
    return {
        "means2d": torch.where(keep, means2d, zero),
        "conics": torch.where(keep, conics, zero),
        "depths": torch.where(valid, z, zero),
        "radii": torch.where(valid, radius, zero).to(torch.int32),
        "compensations": compensations,
    }


def covariance_3d(quats: Tensor, log_scales: Tensor) -> Tensor:
    """World-space covariances ``R S S^T R^T`` ``[N,3,3]`` of Gaussians with ``wxyz`` quaternions
    ``quats [N,4]`` (normalised here) and per-axis log standard deviations ``log_scales [N,3]``."""
    rotation = quaternion_to_matrix(quats)
    return rotation @ torch.diag_embed(torch.exp(2.0 * log_scales)) @ rotation.transpose(-1, -2)


def _validate(means, quats, log_scales, w2c, K, width, height, near, far, eps2d, radius_clip) -> None:
    named = {"means": means, "quats": quats, "log_scales": log_scales, "w2c": w2c, "K": K}
    shapes = {"means": (3,), "quats": (4,), "log_scales": (3,), "w2c": (4, 4), "K": (3, 3)}
    for name, tensor in named.items():
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
            raise ConfigError(f"project_gaussians: {name} must be a floating-point tensor")
        expected = shapes[name]
        if tensor.dim() != len(expected) + 1 or tuple(tensor.shape[1:]) != expected:
            letter = "N" if name in ("means", "quats", "log_scales") else "C"
            dims = ",".join(str(d) for d in expected)
            raise ConfigError(f"project_gaussians: {name} must have shape [{letter},{dims}], got {list(tensor.shape)}")
    if not (means.shape[0] == quats.shape[0] == log_scales.shape[0]):
        raise ConfigError(
            f"project_gaussians: means, quats and log_scales disagree on N "
            f"({means.shape[0]}, {quats.shape[0]}, {log_scales.shape[0]})"
        )
    if w2c.shape[0] != K.shape[0]:
        raise ConfigError(f"project_gaussians: w2c has {w2c.shape[0]} cameras but K has {K.shape[0]}")
    if len({t.device for t in named.values()}) != 1:
        raise ConfigError("project_gaussians: all tensors must be on one device")
    if not (quats.dtype == log_scales.dtype == means.dtype):
        raise ConfigError(
            f"project_gaussians: means, quats and log_scales must share one dtype, "
            f"got {means.dtype}, {quats.dtype}, {log_scales.dtype}"
        )
    if int(width) <= 0 or int(height) <= 0:
        raise ConfigError(f"project_gaussians: width and height must be positive, got {width}x{height}")
    if not (0 < near < far):
        raise ConfigError(f"project_gaussians: need 0 < near < far, got near={near}, far={far}")
    if eps2d < 0 or radius_clip < 0:
        raise ConfigError(f"project_gaussians: eps2d and radius_clip must be >= 0, got {eps2d}, {radius_clip}")
