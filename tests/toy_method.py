"""A deliberately tiny Method that exercises the Scene API in tests (never offered to users).

The scene is a sphere of learnable colour and radius at the centre of the aabb, ray-traced
analytically. Its field is ``radius - |x - centre|`` (inside > 0), so it can be meshed.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.methods.base import Method


def trace_sphere(cameras: Cameras, center: Tensor, radius: Tensor, color: Tensor, background: Tensor) -> dict:
    """Render a sphere for every camera: rgb [C,H,W,3], depth [C,H,W], alpha [C,H,W]."""
    origins, dirs = cameras.generate_rays()
    oc = origins - center
    b = (oc * dirs).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - radius**2)
    hit = disc > 0
    t = -b - torch.sqrt(disc.clamp_min(0))
    # Soft edge so that the radius receives gradients.
    alpha = torch.sigmoid(disc * 20.0) * (t > 0)
    rgb = alpha[..., None] * color + (1 - alpha[..., None]) * background
    depth = torch.where(hit & (t > 0), t, torch.zeros_like(t))
    return {"rgb": rgb, "depth": depth, "alpha": alpha}


class ToySphere(Method):
    name = "toy"
    description = "test-only analytic sphere"
    default_config = {"steps": 20, "lr": 0.1, "init_radius": 0.3}
    demo_config = {"steps": 5}

    def __init__(self, config, scene_info):
        super().__init__(config, scene_info)
        self.color_logit = torch.nn.Parameter(torch.zeros(3))
        self.radius = torch.nn.Parameter(torch.tensor(float(config["init_radius"])))
        self.register_buffer("center", scene_info.aabb_tensor().mean(0))
        self.register_buffer("background", torch.tensor(scene_info.background, dtype=torch.float32))

    def setup(self, dataset):
        self.dataset = dataset
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.config["lr"])

    def _render(self, cameras):
        return trace_sphere(cameras, self.center, self.radius, torch.sigmoid(self.color_logit), self.background)

    def train_step(self, step):
        index = step % len(self.dataset)
        out = self._render(self.dataset.cameras[index])
        mse = ((out["rgb"] - self.dataset.float_images(slice(index, index + 1))) ** 2).mean()
        self.optimizer.zero_grad()
        mse.backward()
        self.optimizer.step()
        loss = mse.item()
        return {"loss": loss, "psnr": -10.0 * torch.log10(torch.tensor(max(loss, 1e-10))).item()}

    def render(self, cameras):
        return self._render(cameras)

    def density_field(self):
        center, radius = self.center, self.radius.detach()
        return (lambda points: radius - (points - center).norm(dim=-1)), 0.0
