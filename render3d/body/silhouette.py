"""A silhouette term for fitting a body to calibrated views with masks: a denser 2D signal
than the 17 keypoints, which fix neither limb twists nor the body's outline.

Two chamfer-like halves, in pixels, robust (Geman-McClure) against masks that also cover hair
or loose clothes:

- *inside*: every body vertex projects into its view's mask (a silhouette contains the
  projection of every surface point): the mask's exterior distance transform, read bilinearly
  at the projected vertices;
- *covered*: every point of the mask's outline has a projected vertex near it (the body reaches
  the outline): the distance from outline samples to the nearest projected vertex.

Pixels follow :meth:`render3d.Cameras.project` (continuous, pixel centres at +0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import binary_erosion, distance_transform_edt

from render3d.body.fitting import gmof
from render3d.errors import DataError

OUTLINE_SAMPLES = 256  # outline points per view
SIGMA_PX = 8.0  # Geman-McClure scale: a mask pixel further than this from the body counts as an outlier


@dataclass
class SilhouetteTargets:
    """Per view: ``outside_distance [V, 1, H, W]`` (pixels from each pixel to the nearest mask
    pixel, zero inside) and ``outline [V, P, 2]`` outline pixel centres."""

    outside_distance: torch.Tensor
    outline: torch.Tensor

    @classmethod
    def from_masks(cls, masks: torch.Tensor, samples: int = OUTLINE_SAMPLES) -> "SilhouetteTargets":
        """Targets of ``masks [V, H, W]`` (True or > 0.5 = person); every view needs a non-empty mask."""
        inside = (masks > 0.5).cpu().numpy()
        distances, outlines = [], []
        for view, mask in enumerate(inside):
            if not mask.any():
                raise DataError(f"masks: view {view} has an empty mask (no person in it)")
            distances.append(distance_transform_edt(~mask).astype(np.float32))
            rows, cols = np.nonzero(mask & ~binary_erosion(mask))
            pick = np.linspace(0, len(rows) - 1, min(samples, len(rows))).round().astype(np.int64)
            # views with short outlines repeat points, so every view has ``samples`` of them
            pick = pick[np.arange(samples) % len(pick)]
            outlines.append(np.stack([cols[pick] + 0.5, rows[pick] + 0.5], axis=1).astype(np.float32))
        return cls(torch.from_numpy(np.stack(distances))[:, None], torch.from_numpy(np.stack(outlines)))


def silhouette_energy(pixels: torch.Tensor, targets: SilhouetteTargets, sigma: float = SIGMA_PX) -> torch.Tensor:
    """Sum over the ``V`` views of the mean robust *inside* distance of the projected vertices
    ``pixels [V, M, 2]`` plus the mean robust *covered* distance of the outline (module doc)."""
    height, width = targets.outside_distance.shape[-2:]
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=pixels.dtype, device=pixels.device)
    grid = (pixels * scale - 1.0)[:, :, None]  # [V, M, 1, 2] in grid_sample's align_corners=False frame
    outside = torch.nn.functional.grid_sample(targets.outside_distance.to(pixels), grid, mode="bilinear",
                                              padding_mode="border", align_corners=False)[:, 0, :, 0]
    inside_term = gmof(outside, sigma).mean(1)
    nearest = torch.cdist(targets.outline.to(pixels), pixels).amin(2)  # [V, P]
    covered_term = gmof(nearest, sigma).mean(1)
    return (inside_term + covered_term).sum()
