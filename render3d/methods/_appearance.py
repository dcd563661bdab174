"""Per-image appearance: captures whose exposure and white balance change from photo to photo
(a phone's auto-exposure, auto white balance) are fitted with one affine colour transform per
training image, ``rgb' = A_i @ rgb + b_i`` (``A_i [3,3]``, ``b_i [3]``), learnt with the scene.

The rendered scene is the images' average appearance: each transform is applied relative to
the mean of all of them (the mean is held at the identity), so the scene cannot drift into a
colour that every transform undoes, and new views (test views too) render with no transform.
Evaluation matches a held-out image's appearance with the same affine model, fitted on the
left half of the image and scored on the right (:mod:`render3d.metrics.appearance`).

This is the per-image affine colour correction of the 3DGS-in-the-wild and Zip-NeRF line of
work, in place of NeRF-W's latent embedding fed to the colour network: it works the same for
Gaussians and radiance fields and cannot change geometry or view-dependent colour.
"""
from __future__ import annotations

import torch
from torch import Tensor

from render3d.errors import ConfigError
from render3d.methods._captures import is_capture
from render3d.methods._per_image import PerImageParameters

__all__ = ["APPEARANCE_MODES", "ImageAppearance", "appearance_defaults", "check_appearance_mode"]

APPEARANCE_MODES = ("off", "affine")


def appearance_defaults(data) -> dict:
    """``{"appearance": "affine"}`` for a capture (cameras that set their own exposure), else ``{}``."""
    return {"appearance": "affine"} if is_capture(data) else {}


def check_appearance_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`APPEARANCE_MODES`; ConfigError naming the option otherwise."""
    if mode not in APPEARANCE_MODES:
        raise ConfigError(f"appearance must be one of {', '.join(APPEARANCE_MODES)}, got {mode!r}")
    return mode


class ImageAppearance(PerImageParameters):
    """One affine colour transform per training image, stored as deviations ``deltas [N,3,4]``
    from ``[I | 0]`` and trained by its own Adam (:class:`PerImageParameters`). With
    ``mode="off"`` it holds nothing and every call leaves colours as they are.
    """

    name = "deltas"
    row_shape = (3, 4)

    def __init__(self, mode: str = "off", lr: float = 5e-3) -> None:
        super().__init__(check_appearance_mode(mode) != "off", lr)

    def transforms(self) -> Tensor:
        """``[N,3,4]`` transforms ``[A_i | b_i]`` whose mean over the images is ``[I | 0]``."""
        return torch.eye(3, 4, device=self.deltas.device, dtype=self.deltas.dtype) + self.deltas

    def apply(self, rgb: Tensor, images: Tensor | int) -> Tensor:
        """``rgb [..., 3]`` as seen by training image ``images`` (an int, or ``[...]`` indices
        matching ``rgb``'s leading dimensions): ``A_i @ rgb + b_i``."""
        if not self.enabled:
            return rgb
        chosen = self.transforms()[images]
        if isinstance(images, int):
            return rgb @ chosen[:, :3].T + chosen[:, 3]
        return (chosen[..., :3] @ rgb[..., None])[..., 0] + chosen[..., 3]

    def step(self) -> None:
        """One Adam step of the transforms (after their gradients were summed over the ranks),
        then re-centred so that their mean stays the identity."""
        if self.enabled:
            self.optimizer.step()
            with torch.no_grad():
                self.deltas -= self.deltas.mean(dim=0, keepdim=True)
