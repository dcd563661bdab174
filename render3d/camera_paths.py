"""Camera trajectories for novel-view videos: orbits and smooth interpolation.

Both return :class:`render3d.Cameras` in OpenCV convention (see ``render3d.cameras``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.errors import ConfigError
from render3d.ops.rotations import matrix_to_quaternion, quaternion_to_matrix

__all__ = ["look_at", "orbit", "interpolate"]


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """Camera-to-world poses ``[N,4,4]`` (OpenCV axes) looking from ``eye`` at ``target``.

    Args:
        eye: ``[N,3]`` camera centres.
        target: ``[N,3]`` or ``[3]`` points the cameras look at.
        up: ``[3]`` world up direction; the image's y axis (down) points away from it.
    """
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=eye.dtype, device=eye.device).expand_as(eye)
    up = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    right = torch.cross(forward, up, dim=-1)
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        raise ConfigError("look_at: viewing direction is parallel to 'up'; choose another up vector")
    right = right / right.norm(dim=-1, keepdim=True)
    down = torch.cross(forward, right, dim=-1)
    c2w = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = down
    c2w[:, :3, 2] = forward
    c2w[:, :3, 3] = eye
    return c2w


def orbit(
    center: Tensor,
    radius: float,
    n_frames: int,
    K: Tensor,
    width: int,
    height: int,
    elevation_deg: float = 20.0,
    up: Tensor | tuple = (0.0, 0.0, 1.0),
) -> Cameras:
    """``n_frames`` cameras on a circle around ``center``, all looking at it.

    Args:
        center: ``[3]`` orbit centre in world coordinates.
        radius: distance from camera centre to ``center``.
        n_frames: number of cameras (one full turn, the last frame not repeating the first).
        K: ``[3,3]`` intrinsics shared by all frames.
        width, height: image size.
        elevation_deg: angle of the cameras above the plane orthogonal to ``up``.
        up: ``[3]`` world up direction.
    """
    if n_frames < 1:
        raise ConfigError(f"orbit: n_frames must be >= 1, got {n_frames}")
    if radius <= 0:
        raise ConfigError(f"orbit: radius must be positive, got {radius}")
    center = torch.as_tensor(center, dtype=torch.float32)
    up = torch.as_tensor(up, dtype=torch.float32)
    up = up / up.norm()
    # An orthonormal basis (a, b) of the plane orthogonal to up.
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    a = torch.cross(up, helper, dim=0)
    a = a / a.norm()
    b = torch.cross(up, a, dim=0)
    theta = torch.arange(n_frames, dtype=torch.float32) * (2 * math.pi / n_frames)
    elev = math.radians(elevation_deg)
    offsets = radius * (
        math.cos(elev) * (torch.cos(theta)[:, None] * a + torch.sin(theta)[:, None] * b) + math.sin(elev) * up
    )
    c2w = look_at(center + offsets, center, up)
    return Cameras(K=torch.as_tensor(K, dtype=torch.float32).expand(n_frames, 3, 3), c2w=c2w, width=width, height=height)


def _slerp(q0: Tensor, q1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between ``[N,4]`` unit quaternions at ``t [N]`` in [0,1]."""
    dot = (q0 * q1).sum(-1)
    q1 = torch.where(dot[:, None] < 0, -q1, q1)  # take the short way round
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    linear = sin_theta < 1e-6
    w0 = torch.where(linear, 1 - t, torch.sin((1 - t) * theta) / sin_theta.clamp_min(1e-12))
    w1 = torch.where(linear, t, torch.sin(t * theta) / sin_theta.clamp_min(1e-12))
    q = w0[:, None] * q0 + w1[:, None] * q1
    return q / q.norm(dim=-1, keepdim=True)


def interpolate(keyframes: Cameras, n_frames: int) -> Cameras:
    """``n_frames`` cameras moving through ``keyframes`` in order (slerp rotation, lerp position).

    Intrinsics are interpolated linearly. The first and last keyframes are the first and
    last output frames.
    """
    if n_frames < 1:
        raise ConfigError(f"interpolate: n_frames must be >= 1, got {n_frames}")
    if len(keyframes) == 1 or n_frames == 1:
        return keyframes[[0] * n_frames]
    position = torch.linspace(0, len(keyframes) - 1, n_frames, device=keyframes.device)
    i0 = position.floor().long().clamp(max=len(keyframes) - 2)
    t = position - i0
    q = matrix_to_quaternion(keyframes.c2w[:, :3, :3])
    R = quaternion_to_matrix(_slerp(q[i0], q[i0 + 1], t))
    eye = (1 - t)[:, None] * keyframes.centers[i0] + t[:, None] * keyframes.centers[i0 + 1]
    K = (1 - t)[:, None, None] * keyframes.K[i0] + t[:, None, None] * keyframes.K[i0 + 1]
    c2w = torch.eye(4, device=keyframes.device).repeat(n_frames, 1, 1)
    c2w[:, :3, :3] = R
    c2w[:, :3, 3] = eye
    return Cameras(K=K, c2w=c2w, width=keyframes.width, height=keyframes.height)


def orbit_around(cameras: Cameras, n_frames: int, center: Tensor) -> Cameras:
    """An orbit that matches how ``cameras`` look at ``center``: same intrinsics and image
    size as the first camera, their mean distance and elevation, and their mean up vector.

    Args:
        cameras: the dataset's cameras (any number >= 1).
        n_frames: frames of the orbit.
        center: ``[3]`` point to orbit around (e.g. the scene's aabb centre).
    """
    cameras = cameras.to("cpu")
    center = torch.as_tensor(center, dtype=torch.float32).cpu()
    up = -cameras.c2w[:, :3, 1].mean(dim=0)  # OpenCV y points down in the image
    if up.norm() < 1e-6:
        up = torch.tensor([0.0, 0.0, 1.0])
    up = up / up.norm()
    offsets = cameras.centers - center
    radius = float(offsets.norm(dim=-1).mean())
    sin_elev = (offsets @ up / offsets.norm(dim=-1).clamp_min(1e-12)).clamp(-0.99, 0.99)
    elevation = math.degrees(math.asin(float(sin_elev.mean())))
    return orbit(center, radius, n_frames, cameras.K[0], cameras.width, cameras.height, elevation, up)
