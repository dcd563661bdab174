"""Camera pose refinement: one small rigid correction per training image, learnt with the scene,
for captures whose poses (structure-from-motion, a phone's tracking) are slightly off.

Image ``i``'s camera becomes ``w2c' = D_i @ w2c`` with ``D_i = [R(w_i) | s * t_i]`` in the
camera's own frame: ``w_i`` an axis-angle (radians) and ``t_i`` a translation in units of the
scene scale ``s`` (so one learning rate suits scenes of any size). Both start at zero, train
with their own Adam, and their rate decays exponentially from ``lr`` to ``lr_final`` over the
fit (nerfstudio's and gsplat's camera optimisers do the same).

The Gaussian rasteriser has no gradient with respect to the camera, so the correction moves
the Gaussians instead: rendering the world through ``w2c'`` equals rendering the world moved by
``M_i = w2c^-1 @ D_i @ w2c`` through ``w2c``. Means become ``M_i`` applied to them and
orientations turn by ``M_i``'s rotation; both are differentiable, so the photometric loss
reaches ``w_i`` and ``t_i``. (View directions for the SH colours are turned by the same small
rotation; the corrections are a few degrees at most.)

Off (the default) it holds nothing, and every call leaves the Gaussians as they are.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.methods._per_image import PerImageParameters
from render3d.ops.rotations import axis_angle_to_matrix, axis_angle_to_quaternion, quaternion_multiply

__all__ = ["PoseRefinement"]


class PoseRefinement(PerImageParameters):
    """Per-image camera corrections ``corrections [N,6]`` (translation in scene-scale units,
    axis-angle), trained by their own Adam (:class:`PerImageParameters`) with an exponentially
    decaying rate."""

    name = "corrections"
    row_shape = (6,)

    def __init__(self, enabled: bool = False, lr: float = 1e-4, lr_final: float = 1e-6) -> None:
        super().__init__(enabled, lr)
        self.lr_final = float(lr_final)
        if self.enabled:
            self.register_buffer("scale", torch.tensor(1.0))

    def reset(self, n_images: int, scale: float, device: torch.device) -> None:
        """No correction for ``n_images`` images in a scene of size ``scale``; a fresh Adam."""
        super().reset(n_images, device)
        if self.enabled:
            self.scale = torch.tensor(float(scale), device=device)

    def camera_corrections(self) -> Tensor:
        """``[N,4,4]`` corrections ``D_i`` (camera frame; identity when untrained)."""
        return self._corrections(self.corrections)

    def _corrections(self, rows: Tensor) -> Tensor:
        """``[M,4,4]`` corrections of ``rows [M,6]`` of :attr:`corrections`."""
        rotation = axis_angle_to_matrix(rows[:, 3:])
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], device=rotation.device).expand(len(rotation), 1, 4)
        top = torch.cat([rotation, self.scale * rows[:, :3, None]], dim=-1)
        return torch.cat([top, bottom], dim=1)

    def refined_w2c(self, w2c: Tensor) -> Tensor:
        """The training cameras' corrected ``w2c [N,4,4]`` (``w2c`` itself when off)."""
        return self.camera_corrections().detach() @ w2c if self.enabled else w2c

    def move_gaussians(self, means: Tensor, quats: Tensor, image: int, w2c: Tensor) -> tuple[Tensor, Tensor]:
        """``means [G,3]`` and ``quats [G,4]`` (wxyz) moved by ``M = w2c^-1 D_image w2c`` for
        training image ``image`` seen through ``w2c [4,4]``: rendering them through ``w2c`` shows
        the scene through the corrected camera. Unchanged when off."""
        if not self.enabled:
            return means, quats
        moved = torch.linalg.inv(w2c) @ self._corrections(self.corrections[image : image + 1])[0] @ w2c
        means = means @ moved[:3, :3].T + moved[:3, 3]
        # M's rotation is W^T R(w) W = R(W^T w) for the camera's rotation W.
        turn = axis_angle_to_quaternion(self.corrections[image, 3:] @ w2c[:3, :3])
        return means, quaternion_multiply(turn, quats)

    def step(self, step: int, total_steps: int) -> None:
        """One Adam step (after the gradients were summed over the ranks) at step ``step``'s rate."""
        if self.enabled:
            fraction = min(step / max(total_steps, 1), 1.0)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * (self.lr_final / self.lr) ** fraction
            self.optimizer.step()
