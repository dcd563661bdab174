"""Pinhole cameras in OpenCV convention, ray generation and projection.

Conventions (see ``docs/design.md``):

- ``c2w [C,4,4]`` maps camera coordinates to world coordinates; camera axes are OpenCV's:
  x right, y down, z forward (the camera looks along +z).
- ``K [C,3,3]`` is the intrinsic matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels.
- Pixel ``(u, v)`` (column, row) has its centre at ``(u + 0.5, v + 0.5)``.
- Ray directions are unit length.
- All cameras of one :class:`Cameras` share ``width`` and ``height``.

Example::

    >>> import torch, render3d
    >>> K = torch.tensor([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    >>> cams = render3d.Cameras(K=K[None], c2w=torch.eye(4)[None], width=64, height=48)
    >>> origins, dirs = cams.generate_rays()
    >>> origins.shape, dirs.shape
    (torch.Size([1, 48, 64, 3]), torch.Size([1, 48, 64, 3]))
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from render3d.errors import ConfigError

__all__ = ["Cameras", "opengl_to_opencv", "intrinsics_from_fov"]

# Flipping camera y and z converts between OpenGL/Blender (x right, y up, looking down -z)
# and OpenCV (x right, y down, looking down +z). It is its own inverse.
_GL_CV_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Convert camera-to-world poses from OpenGL/Blender/nerfstudio axes to OpenCV axes.

    Args:
        c2w: ``[..., 4, 4]`` or ``[..., 3, 4]`` poses with OpenGL camera axes.

    Returns:
        Poses of the same shape with OpenCV camera axes (columns 1 and 2 negated).
    """
    out = c2w.clone()
    out[..., :3, 1:3] *= -1
    return out


def intrinsics_from_fov(fov_x: float, width: int, height: int, fov_y: float | None = None) -> Tensor:
    """Intrinsics ``[3,3]`` for a centred principal point from horizontal field of view (radians).

    With ``fov_y`` omitted the pixels are square (``fy == fx``).
    """
    fx = 0.5 * width / math.tan(0.5 * fov_x)
    fy = fx if fov_y is None else 0.5 * height / math.tan(0.5 * fov_y)
    return torch.tensor([[fx, 0.0, 0.5 * width], [0.0, fy, 0.5 * height], [0.0, 0.0, 1.0]])


def _as_batched(name: str, value: Tensor, shape: tuple[int, int]) -> Tensor:
    value = torch.as_tensor(value)
    if value.dim() == 2:
        value = value[None]
    if value.dim() != 3 or tuple(value.shape[1:]) != shape:
        raise ConfigError(f"Cameras: {name} must have shape [C,{shape[0]},{shape[1]}], got {list(value.shape)}")
    if not value.is_floating_point():
        value = value.float()
    return value


@dataclass
class Cameras:
    """A batch of ``C`` pinhole cameras sharing one image size.

    Attributes:
        K: ``[C,3,3]`` float intrinsics in pixels.
        c2w: ``[C,4,4]`` float camera-to-world poses, OpenCV axes. ``[C,3,4]`` is accepted
            and completed with ``[0,0,0,1]``.
        width: image width in pixels.
        height: image height in pixels.
    """

    K: Tensor
    c2w: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = _as_batched("K", self.K, (3, 3))
        c2w = torch.as_tensor(self.c2w)
        if c2w.dim() == 2:
            c2w = c2w[None]
        if c2w.dim() == 3 and tuple(c2w.shape[1:]) == (3, 4):
            bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype, device=c2w.device)
            c2w = torch.cat([c2w, bottom.expand(c2w.shape[0], 1, 4)], dim=1)
        self.c2w = _as_batched("c2w", c2w, (4, 4)).to(self.K.dtype)
        if self.K.shape[0] != self.c2w.shape[0]:
            raise ConfigError(f"Cameras: K has {self.K.shape[0]} cameras but c2w has {self.c2w.shape[0]}")
        if self.K.device != self.c2w.device:
            raise ConfigError(f"Cameras: K is on {self.K.device} but c2w is on {self.c2w.device}")
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ConfigError(f"Cameras: width and height must be positive, got {self.width}x{self.height}")
        if not (torch.isfinite(self.K).all() and torch.isfinite(self.c2w).all()):
            raise ConfigError("Cameras: K and c2w must be finite")

    # ------------------------------------------------------------------ containers
    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, index) -> "Cameras":
        """Select cameras with an int, slice, list, bool mask or index tensor."""
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return Cameras(K=self.K[index], c2w=self.c2w[index], width=self.width, height=self.height)

    @staticmethod
    def cat(cameras: list["Cameras"]) -> "Cameras":
        """Concatenate camera batches that share one image size."""
        if not cameras:
            raise ConfigError("Cameras.cat: need at least one Cameras")
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) != 1:
            raise ConfigError(f"Cameras.cat: image sizes differ: {sorted(sizes)}")
        return Cameras(
            K=torch.cat([c.K for c in cameras]),
            c2w=torch.cat([c.c2w for c in cameras]),
            width=cameras[0].width,
            height=cameras[0].height,
        )

    @property
    def device(self) -> torch.device:
        return self.K.device

    def to(self, device: torch.device | str) -> "Cameras":
        """The same cameras with tensors on ``device``."""
        return Cameras(K=self.K.to(device), c2w=self.c2w.to(device), width=self.width, height=self.height)

    # ------------------------------------------------------------------ derived quantities
    @property
    def w2c(self) -> Tensor:
        """``[C,4,4]`` world-to-camera transforms (rigid inverse of ``c2w``)."""
        R = self.c2w[:, :3, :3]
        t = self.c2w[:, :3, 3:]
        out = torch.zeros_like(self.c2w)
        out[:, :3, :3] = R.transpose(1, 2)
        out[:, :3, 3:] = -R.transpose(1, 2) @ t
        out[:, 3, 3] = 1.0
        return out

    @property
    def centers(self) -> Tensor:
        """``[C,3]`` camera centres in world coordinates."""
        return self.c2w[:, :3, 3]

    @property
    def fov_x(self) -> Tensor:
        """``[C]`` horizontal field of view in radians."""
        return 2.0 * torch.atan(0.5 * self.width / self.K[:, 0, 0])

    @property
    def fov_y(self) -> Tensor:
        """``[C]`` vertical field of view in radians."""
        return 2.0 * torch.atan(0.5 * self.height / self.K[:, 1, 1])

    def scaled(self, factor: float) -> "Cameras":
        """Cameras for images resized by ``factor`` (e.g. 0.5 halves width and height).

        The new size is ``round(width * factor)``; intrinsics scale by the actual size ratio
        so that pixel centres keep their meaning.
        """
        if factor <= 0:
            raise ConfigError(f"Cameras.scaled: factor must be positive, got {factor}")
        width = max(1, round(self.width * factor))
        height = max(1, round(self.height * factor))
        K = self.K.clone()
        K[:, 0, :] *= width / self.width
        K[:, 1, :] *= height / self.height
        return Cameras(K=K, c2w=self.c2w.clone(), width=width, height=height)

    # ------------------------------------------------------------------ rays and projection
    def pixel_rays(self, camera_indices: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """Rays through given pixel positions.

        Args:
            camera_indices: ``[R]`` int64 camera index per ray.
            pixels: ``[R,2]`` float pixel coordinates ``(x, y)`` in the image plane; integer
                pixel ``(u, v)`` has its centre at ``(u + 0.5, v + 0.5)``.

        Returns:
            origins ``[R,3]`` and unit directions ``[R,3]`` in world coordinates.
        """
        K = self.K[camera_indices]
        c2w = self.c2w[camera_indices]
        x = (pixels[:, 0] - K[:, 0, 2]) / K[:, 0, 0]
        y = (pixels[:, 1] - K[:, 1, 2]) / K[:, 1, 1]
        dirs_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
        dirs = torch.einsum("rij,rj->ri", c2w[:, :3, :3], dirs_cam)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        return c2w[:, :3, 3].expand_as(dirs).contiguous(), dirs

    def pixel_grid(self) -> Tensor:
        """``[H,W,2]`` pixel-centre coordinates ``(x, y)`` = ``(u + 0.5, v + 0.5)``."""
        v, u = torch.meshgrid(
            torch.arange(self.height, device=self.device, dtype=self.K.dtype),
            torch.arange(self.width, device=self.device, dtype=self.K.dtype),
            indexing="ij",
        )
        return torch.stack([u, v], dim=-1) + 0.5

    def generate_rays(self) -> tuple[Tensor, Tensor]:
        """Rays through every pixel centre of every camera.

        Returns:
            origins ``[C,H,W,3]`` and unit directions ``[C,H,W,3]``.
        """
        C, H, W = len(self), self.height, self.width
        pixels = self.pixel_grid().reshape(1, H * W, 2).expand(C, -1, -1).reshape(-1, 2)
        cam = torch.arange(C, device=self.device).repeat_interleave(H * W)
        origins, dirs = self.pixel_rays(cam, pixels)
        return origins.reshape(C, H, W, 3), dirs.reshape(C, H, W, 3)

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Project world points into every camera.

        Args:
            points: ``[N,3]`` world coordinates.

        Returns:
            pixels ``[C,N,2]`` (continuous ``(x, y)``, pixel centres at +0.5) and depths
            ``[C,N]`` (camera-space z; points behind a camera have depth <= 0 and
            meaningless pixels).
        """
        w2c = self.w2c
        cam = torch.einsum("cij,nj->cni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
        z = cam[..., 2]
        safe_z = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
        x = self.K[:, None, 0, 0] * cam[..., 0] / safe_z + self.K[:, None, 0, 2]
        y = self.K[:, None, 1, 1] * cam[..., 1] / safe_z + self.K[:, None, 1, 2]
        return torch.stack([x, y], dim=-1), z
