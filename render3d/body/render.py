"""Rendering posed bodies through the engine: Gaussians bound to the mesh's triangles,
rasterized by the 3DGS op (:func:`render3d.ops.gaussian_rendering.render_gaussians`).

Each triangle carries one Gaussian per barycentric sample (default: its centroid):

- mean ``sum_i b_i v_i``; colour ``sum_i b_i c_i`` from the vertex colours;
- rotation: the triangle's frame (first edge, in-plane perpendicular, normal);
- scales: in-plane ``sqrt(area / (pi S))`` (a disc of the triangle's share of area, so
  neighbours overlap and the surface closes), along the normal 5 % of that (flat);
- opacity 0.99.

:class:`BodyScene` shades the colours with a fixed light, ``ambient + (1 - ambient) |n . l|``
(the absolute value keeps either winding lit).

Everything is a differentiable function of the vertices, so the same binding serves fitting
by rendering. :class:`BodyScene` renders a body, or a pose sequence, like
:meth:`render3d.Scene.render`: ``rgb``, ``depth`` (ray length) and ``alpha`` (the mask).
"""
from __future__ import annotations

import math

import torch

from render3d.body.gaussian_binding import triangle_frames
from render3d.body.model import BodyModel
from render3d.cameras import Cameras
from render3d.errors import ConfigError
from render3d.ops.gaussian_rendering import render_gaussians, render_views
from render3d.ops.rotations import matrix_to_quaternion

SKIN = (0.80, 0.65, 0.55)
LIGHT = (0.3, 0.5, 0.8)  # a fixed light direction (body axes: y up, the body faces +z)
AMBIENT = 0.35
FLATNESS = 0.05
OPACITY = 0.99


def triangle_gaussians(vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor,
                       barycentric: torch.Tensor | None = None, flatness: float = FLATNESS) -> dict[str, torch.Tensor]:
    """Gaussians bound to triangles (module doc).

    Args:
        vertices: ``[V, 3]`` posed vertices; faces ``[F, 3]``; colors ``[V, 3]`` in [0, 1].
        barycentric: ``[S, 3]`` sample coordinates per triangle (rows sum to one); default
            the centroid.
        flatness: the scale along the normal over the in-plane one.

    Returns:
        ``means [F*S, 3]``, ``quats [F*S, 4]`` (wxyz), ``log_scales [F*S, 3]``,
        ``opacities [F*S]``, ``colors [F*S, 3]`` and ``normals [F*S, 3]``, triangle-major.
    """
    if barycentric is None:
        barycentric = torch.full((1, 3), 1.0 / 3.0)
    barycentric = barycentric.to(vertices)
    corners = vertices[faces]  # [F, 3, 3]
    rotation, area = triangle_frames(vertices, faces)
    normal = rotation[..., 2]
    samples = barycentric.shape[0]
    radius = torch.sqrt(area / (math.pi * samples))
    log_radius = torch.log(radius)[:, None]
    log_scales = torch.cat([log_radius, log_radius, log_radius + math.log(flatness)], -1)
    means = torch.einsum("sk,fkc->fsc", barycentric, corners).reshape(-1, 3)
    sample_colors = torch.einsum("sk,fkc->fsc", barycentric, colors.to(vertices)[faces]).reshape(-1, 3)
    repeat = lambda t: t.repeat_interleave(samples, 0)  # noqa: E731 - one line, three uses
    return {
        "means": means,
        "quats": repeat(matrix_to_quaternion(rotation)),
        "log_scales": repeat(log_scales),
        "opacities": torch.full((means.shape[0],), OPACITY, dtype=vertices.dtype, device=vertices.device),
        "colors": sample_colors,
        "normals": repeat(normal),
    }


class BodyScene:
    """A posed body (or a sequence of poses) that renders like :class:`render3d.Scene`.

    Args:
        model: the body model.
        betas: ``[1, S']`` shape (default zero).
        pose: ``[T, J, 3]`` axis-angle (or ``[T, J, 3, 3]`` / ``[T, J, 6]``): one body per
            frame ``T`` (default the rest pose, ``T = 1``).
        transl: ``[T, 3]`` or ``[1, 3]`` translations (default zero).
        colors: ``[V, 3]`` vertex colours in [0, 1] (default a skin tone).
        background: RGB behind the body (default white).
        barycentric: ``[S, 3]`` Gaussian positions per triangle (default the centroid).
    """

    def __init__(self, model: BodyModel, betas=None, pose=None, transl=None, colors=None,
                 background=(1.0, 1.0, 1.0), barycentric=None) -> None:
        self.model = model
        frames = 1 if pose is None else pose.shape[0]
        self.betas = torch.zeros(1, model.n_betas) if betas is None else betas
        self.pose = torch.zeros(frames, model.n_joints, 3) if pose is None else pose
        self.transl = torch.zeros(1, 3) if transl is None else transl
        if self.transl.shape not in ((1, 3), (frames, 3)):
            raise ConfigError(f"BodyScene: transl must be [1, 3] or [{frames}, 3], got {tuple(self.transl.shape)}")
        self.colors = torch.tensor(SKIN).expand(model.n_vertices, 3) if colors is None else colors
        if tuple(self.colors.shape) != (model.n_vertices, 3):
            raise ConfigError(f"BodyScene: colors must be [V, 3] = [{model.n_vertices}, 3], got {tuple(self.colors.shape)}")
        self.background = torch.as_tensor(background, dtype=torch.float32)
        self.barycentric = barycentric

    @property
    def n_frames(self) -> int:
        return self.pose.shape[0]

    def vertices(self) -> torch.Tensor:
        """``[T, V, 3]`` posed vertices of every frame."""
        frames = self.n_frames
        return self.model(self.betas.expand(frames, -1), self.pose, self.transl.expand(frames, 3)).vertices

    def render(self, cameras: Cameras) -> dict[str, torch.Tensor]:
        """Render every frame from every camera.

        Returns:
            ``rgb [T, C, H, W, 3]`` in [0, 1], ``depth [T, C, H, W]`` (ray length, 0 where
            empty) and ``alpha [T, C, H, W]`` (the body's mask); ``T`` is dropped when the
            scene has one frame, as in :meth:`render3d.Scene.render`.
        """
        if not isinstance(cameras, Cameras):
            raise ConfigError(f"cameras must be render3d.Cameras, got {type(cameras).__name__}")
        outputs: dict[str, list] = {"rgb": [], "depth": [], "alpha": []}
        with torch.no_grad():
            for vertices in self.vertices():
                gaussians = triangle_gaussians(vertices, self.model.faces, self.colors, self.barycentric)
                light = torch.nn.functional.normalize(torch.tensor(LIGHT), dim=0)
                lambert = (gaussians["normals"] @ light).abs()[:, None]
                shaded = gaussians["colors"] * (AMBIENT + (1 - AMBIENT) * lambert)
                frame = render_views(cameras, lambda camera: render_gaussians(
                    gaussians["means"], gaussians["quats"], gaussians["log_scales"], gaussians["opacities"], shaded,
                    camera.w2c, camera.K, camera.width, camera.height, backgrounds=self.background, with_depth=True))
                for key, value in frame.items():
                    outputs[key].append(value)
        stacked = {key: torch.stack(values) for key, values in outputs.items()}
        return {key: value[0] for key, value in stacked.items()} if self.n_frames == 1 else stacked


def front_camera(vertices: torch.Tensor, width: int = 512, height: int = 512, fov_deg: float = 30.0) -> Cameras:
    """One camera in front of the body (on +z, y up) that frames ``vertices [V, 3]`` with a
    10 % margin."""
    from render3d.camera_paths import look_at

    low, high = vertices.min(0).values, vertices.max(0).values
    centre = 0.5 * (low + high)
    half_extent = 0.55 * float(torch.max((high - low)[:2]))
    focal = 0.5 * min(width, height) / math.tan(math.radians(fov_deg) / 2)
    distance = half_extent / math.tan(math.radians(fov_deg) / 2) + float(high[2] - centre[2])
    eye = centre + torch.tensor([0.0, 0.0, distance])
    c2w = look_at(eye[None], centre, torch.tensor([0.0, 1.0, 0.0]))
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return Cameras(K=K[None], c2w=c2w, width=width, height=height)
