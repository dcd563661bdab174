"""Lens undistortion to a pinhole camera with the same intrinsics.

Supported lens model: OpenCV's radial-tangential ("Brown-Conrady") model, which covers COLMAP's
SIMPLE_RADIAL, RADIAL and OPENCV models and nerfstudio's OPENCV model. In normalised camera
coordinates ``(x, y)`` with ``r^2 = x^2 + y^2``::

    radial   = 1 + k1 r^2 + k2 r^4 + k3 r^6
    x_d = x radial + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y radial + p1 (r^2 + 2 y^2) + 2 p2 x y

Undistortion keeps ``K`` (focal lengths and principal point): every output pixel centre is
unprojected with ``K``, distorted, projected back with ``K``, and the source image is sampled
there bilinearly. Output pixels whose source lies outside the image repeat the nearest border
pixel (only happens with pincushion distortion, ``k1 > 0``, near the corners).

A dataset's images are undistorted through one :class:`Undistorter`, which builds one sampling
grid (``[H,W,2]`` float32, 16 MB at 1080p) per distinct camera, not one per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["Distortion", "Undistorter", "distort_normalized", "undistortion_grid", "remap_image"]


@dataclass(frozen=True)
class Distortion:
    """Radial-tangential lens distortion coefficients (all zero means a pinhole)."""

    k1: float = 0.0
    k2: float = 0.0
    k3: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    @property
    def is_identity(self) -> bool:
        return not any((self.k1, self.k2, self.k3, self.p1, self.p2))


def distort_normalized(x: Tensor, y: Tensor, distortion: Distortion) -> tuple[Tensor, Tensor]:
    """Apply the lens model to normalised coordinates.

    Args:
        x, y: float tensors of any one shape: undistorted normalised camera coordinates.
        distortion: the coefficients.

    Returns:
        Distorted ``(x_d, y_d)`` of the same shape and dtype.
    """
    d = distortion
    r2 = x * x + y * y
    radial = 1.0 + r2 * (d.k1 + r2 * (d.k2 + r2 * d.k3))
    x_d = x * radial + 2.0 * d.p1 * x * y + d.p2 * (r2 + 2.0 * x * x)
    y_d = y * radial + d.p1 * (r2 + 2.0 * y * y) + 2.0 * d.p2 * x * y
    return x_d, y_d


def undistortion_grid(K: np.ndarray | Tensor, distortion: Distortion, width: int, height: int) -> Tensor:
    """Sampling grid that maps each pinhole pixel to its position in the distorted image.

    Args:
        K: ``[3,3]`` intrinsics shared by the distorted and the undistorted image.
        distortion: the lens coefficients.
        width, height: image size in pixels.

    Returns:
        ``[H,W,2]`` float32 grid in ``torch.nn.functional.grid_sample`` coordinates
        (``align_corners=False``: -1 and 1 are the outer edges of the image).
    """
    K = torch.as_tensor(np.asarray(K, dtype=np.float64))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5,
        torch.arange(width, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    x_d, y_d = distort_normalized((u - cx) / fx, (v - cy) / fy, distortion)
    source_u = fx * x_d + cx
    source_v = fy * y_d + cy
    grid = torch.stack([2.0 * source_u / width - 1.0, 2.0 * source_v / height - 1.0], dim=-1)
    return grid.to(torch.float32)


def remap_image(image: np.ndarray, grid: Tensor) -> np.ndarray:
    """Bilinearly resample ``image [H,W,C]`` float32 at ``grid [H',W',2]``; returns ``[H',W',C]`` float32."""
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    sampled = torch.nn.functional.grid_sample(
        source, grid[None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[0].permute(1, 2, 0).contiguous().numpy()


class Undistorter:
    """The ``load_images`` transform that undistorts image ``index`` with its own camera.

    Args:
        cameras: per image, its ``K [3,3]`` and :class:`Distortion`.
        width, height: the images' size at full resolution.

    One grid is built per distinct ``(K, distortion)`` with a non-zero distortion, when the
    Undistorter is made (not in the decoding threads); pinhole images pass through unchanged.
    """

    def __init__(self, cameras: Sequence[tuple[np.ndarray, Distortion]], width: int, height: int) -> None:
        self.keys = [(np.asarray(K, dtype=np.float64).tobytes(), distortion) for K, distortion in cameras]
        self.grids: dict[tuple, Tensor] = {}
        for (K, distortion), key in zip(cameras, self.keys):
            if not distortion.is_identity and key not in self.grids:
                self.grids[key] = undistortion_grid(K, distortion, width, height)

    def __call__(self, index: int, pixels: np.ndarray) -> np.ndarray:
        grid = self.grids.get(self.keys[index])
        return pixels if grid is None else remap_image(pixels, grid)
