"""Render 3D Gaussians into cameras: projection, SH colours, tile binning and rasterization
composed into one differentiable call (the 3D Gaussian Splatting image formation).

Each stage is its own op with a PyTorch reference and a Triton kernel, so this function runs
wherever they do (CPU tensors: the references; CUDA tensors: the kernels):

1. :func:`~render3d.ops.gaussian_projection.project_gaussians` → ``means2d``, ``conics``,
   ``depths``, ``radii`` (0 = culled), ``compensations``;
2. :func:`~render3d.ops.sh_colors.sh_colors` along ``mean - camera centre`` (or fixed colours);
   with ``with_depth`` the camera-space depth is appended as one more channel;
3. :func:`~render3d.ops.tile_binning.isect_tiles` and
   :func:`~render3d.ops.tile_binning.isect_offset_encode`;
4. :func:`~render3d.ops.rasterization.rasterize_gaussians` with opacity
   ``opacities * compensations``.

Example::

    >>> from render3d.cameras import Cameras
    >>> cams = Cameras(K=torch.tensor([[[50.0, 0, 16], [0, 50.0, 16], [0, 0, 1]]]),
    ...                c2w=torch.eye(4)[None], width=32, height=32)
    >>> n = 10
    >>> means = torch.randn(n, 3) * 0.1 + torch.tensor([0.0, 0.0, 2.0])
    >>> quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
    >>> rgb, alpha, info = render_gaussians(means, quats, torch.full((n, 3), -3.0), torch.full((n,), 0.8),
    ...                                     torch.zeros(n, 1, 3), cams.w2c, cams.K, 32, 32, sh_degree=0)
    >>> rgb.shape, alpha.shape, info["radii"].shape
    (torch.Size([1, 32, 32, 3]), torch.Size([1, 32, 32, 1]), torch.Size([1, 10]))
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from render3d.errors import ConfigError
from render3d.ops.gaussian_projection import project_gaussians
from render3d.ops.rasterization import rasterize_gaussians
from render3d.ops.sh_colors import sh_colors
from render3d.ops.tile_binning import isect_offset_encode, isect_tiles, tile_grid

if TYPE_CHECKING:
    from render3d.cameras import Cameras

__all__ = ["render_gaussians", "camera_centers_from_w2c"]


def camera_centers_from_w2c(w2c: Tensor) -> Tensor:
    """``[C,4,4]`` world-to-camera transforms → ``[C,3]`` camera centres ``-R^T t``."""
    rotation = w2c[:, :3, :3]
    translation = w2c[:, :3, 3:]
    return (-rotation.transpose(1, 2) @ translation)[..., 0]


def render_gaussians(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    w2c: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    with_depth: bool = False,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    antialiased: bool = False,
    tile_size: int = 16,
    absgrad: bool = False,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Rasterize ``N`` Gaussians into ``C`` pinhole cameras (differentiable).

    Args:
        means: ``[N,3]`` world-space centres.
        quats: ``[N,4]`` wxyz rotations (unnormalised allowed, non-zero).
        log_scales: ``[N,3]`` log standard deviations.
        opacities: ``[N]`` opacities in [0,1] (already through the sigmoid).
        colors: with ``sh_degree``: ``[N,K,3]`` SH coefficients, ``K >= (sh_degree+1)**2``;
            without: ``[N,D]`` or ``[C,N,D]`` features composited as they are.
        w2c: ``[C,4,4]`` world-to-camera transforms (OpenCV axes). K: ``[C,3,3]`` intrinsics.
        width, height: image size in pixels.
        sh_degree: active SH degree 0-3, or None when ``colors`` are plain features.
        backgrounds: ``[C,D]`` (or ``[D]``) colour behind the Gaussians, D the feature count
            (without the depth channel); default black.
        with_depth: append the expected camera-space depth ``sum w z`` as a last channel
            (its background is 0).
        near, far, eps2d, antialiased: as :func:`~render3d.ops.project_gaussians`.
        tile_size: tile edge in pixels.
        absgrad: record ``info["means2d"].absgrad`` during backward (densification statistic).

    Returns:
        ``colors [C,H,W,D(+1)]``, ``alphas [C,H,W,1]`` and ``info`` with ``means2d [C,N,2]``
        (call ``retain_grad()`` on it before backward to read its gradient), ``radii [C,N]``
        int32, ``depths [C,N]``, ``conics [C,N,3]`` and ``n_intersections`` (a 0-d tensor).
    """
    _validate(means, opacities, colors, w2c, sh_degree, tile_size)
    n_cameras = w2c.shape[0]
    projected = project_gaussians(means, quats, log_scales, w2c, K, width, height, near=near, far=far,
                                  eps2d=eps2d, antialiased=antialiased)
    means2d, radii, depths = projected["means2d"], projected["radii"], projected["depths"]
    if sh_degree is not None:
        directions = means[None, :, :] - camera_centers_from_w2c(w2c)[:, None, :]
        features = sh_colors(colors, directions, sh_degree)
    else:
        features = colors.expand(n_cameras, *colors.shape) if colors.dim() == 2 else colors
    if backgrounds is not None:
        backgrounds = backgrounds.to(features.dtype).expand(n_cameras, features.shape[-1])
    if with_depth:
        features = torch.cat([features, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(n_cameras, 1)], dim=-1)

    tiles_w, tiles_h = tile_grid(width, height, tile_size)
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, width, height, tile_size)
    offsets = isect_offset_encode(isect_ids, n_cameras, tiles_w, tiles_h)
    pixel_opacities = opacities[None, :] * projected["compensations"]
    rendered, alphas = rasterize_gaussians(means2d, projected["conics"], features, pixel_opacities, width, height,
                                           tile_size, offsets, flatten_ids, backgrounds, absgrad)
    info = {
        "means2d": means2d,
        "radii": radii,
        "depths": depths,
        "conics": projected["conics"],
        "n_intersections": torch.tensor(flatten_ids.shape[0]),
    }
    return rendered, alphas, info


def _validate(means: Tensor, opacities: Tensor, colors: Tensor, w2c: Tensor, sh_degree, tile_size) -> None:
    n = means.shape[0] if means.dim() == 2 else -1
    if opacities.shape != (n,):
        raise ConfigError(f"opacities must have shape [N]=[{n}] like means, got {list(opacities.shape)}")
    if w2c.dim() != 3 or w2c.shape[1:] != (4, 4):
        raise ConfigError(f"w2c must have shape [C,4,4], got {list(w2c.shape)}")
    if sh_degree is None and (colors.dim() not in (2, 3) or colors.shape[-2] != n):
        raise ConfigError(f"colors must have shape [N,D] or [C,N,D] with N={n}, got {list(colors.shape)}")
    if not isinstance(tile_size, int) or tile_size < 1:
        raise ConfigError(f"tile_size must be a positive integer, got {tile_size!r}")


def ray_length_per_depth(camera: "Cameras") -> Tensor:
    """``[1,H,W]`` length of the ray through each pixel of one camera per unit of camera-space depth."""
    xy = camera.pixel_grid().reshape(-1, 2)
    K = camera.K[0]
    x = (xy[:, 0] - K[0, 2]) / K[0, 0]
    y = (xy[:, 1] - K[1, 2]) / K[1, 1]
    return torch.sqrt(x * x + y * y + 1.0).reshape(1, camera.height, camera.width)


def render_views(cameras: "Cameras", rasterize: Callable[["Cameras"], tuple[Tensor, Tensor, dict]]) -> dict[str, Tensor]:
    """Render ``cameras`` one at a time (bounded memory) as a method's ``render`` returns them:
    ``rasterize(camera)`` is :func:`render_gaussians` for one camera with ``with_depth=True``.

    Returns:
        ``rgb [C,H,W,3]`` clamped to [0,1], ``depth [C,H,W]`` (ray length, 0 where nothing was
        hit) and ``alpha [C,H,W]``.
    """
    rgb, depth, alpha = [], [], []
    for index in range(len(cameras)):
        camera = cameras[index]
        features, alphas, _ = rasterize(camera)
        rgb.append(features[..., :3].clamp(0, 1))
        depth.append(features[..., 3] * ray_length_per_depth(camera))
        alpha.append(alphas[..., 0])
    return {"rgb": torch.cat(rgb), "depth": torch.cat(depth), "alpha": torch.cat(alpha)}
