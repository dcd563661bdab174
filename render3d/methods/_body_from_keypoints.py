"""The body of each frame fitted to the 2D keypoints of its images, for an avatar whose
``body.json`` gives no body parameters (:mod:`render3d.data.body_frames`): template-based
capture's first step (seed §11.3.2), before the joint refinement with the Gaussians.

Each frame's images' keypoints, cameras and masks (when the dataset has them: its silhouette
term) go to :func:`render3d.body.multiview_fitting.fit_body_views`.
Keypoint files hold pixels of the images as stored; a dataset loaded at a smaller scale has
its keypoints scaled to it (the ratio of the loaded width to the file's).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from render3d.body.fitting import Keypoints2D
from render3d.body.io import read_keypoints
from render3d.body.multiview_fitting import fit_body_views
from render3d.data.body_frames import BodyFrames
from render3d.data.dataset import Dataset, to_unit_float
from render3d.errors import DataError
from render3d.progress import progress_bar


@dataclass
class FittedFrames:
    """``poses [T, J, 3]`` and ``transl [T, 3]`` (zero for frames without images here),
    ``fitted [T]`` bool, the shape ``betas [S]`` and the mean reprojection error (pixels)."""

    poses: torch.Tensor
    transl: torch.Tensor
    fitted: torch.Tensor
    betas: torch.Tensor
    reprojection_error_px: float


def _pixel_scale(dataset: Dataset) -> float:
    """Loaded image width over the width of the first image's file."""
    from PIL import Image

    with Image.open(dataset.root / dataset.image_names[0]) as image:
        return dataset.width / image.width


def _keypoints(body: BodyFrames, dataset: Dataset, indices: list[int], scale: float) -> list[Keypoints2D]:
    """The keypoints of ``dataset``'s images ``indices``, in the loaded images' pixels."""
    views = []
    for index in indices:
        name = dataset.image_names[index]
        path = body.keypoints_path(name)
        if not path.is_file():
            raise DataError(f"{path}: no keypoints for image {name} (body.json gives no poses, so every image needs "
                            "its 2D keypoints)")
        keypoints = read_keypoints(path)
        keypoints.points = keypoints.points * scale
        views.append(keypoints)
    return views


def fit_frames(body: BodyFrames, model, dataset: Dataset, frames: torch.Tensor, *, betas: torch.Tensor | None = None,
               skip: torch.Tensor | None = None, progress: bool = False) -> FittedFrames:
    """The body of every frame that has images in ``dataset`` (``frames [N]``: each image's frame)
    and is not in ``skip [T]`` (bool), fitted to their keypoints; ``betas [S]`` fixes the shape,
    else each frame fits its own and the result is their mean."""
    scale = _pixel_scale(dataset)
    count = len(body)
    poses, transl = torch.zeros(count, model.n_joints, 3), torch.zeros(count, 3)
    fitted = torch.zeros(count, dtype=torch.bool)
    shapes, errors = [], []
    present = sorted(frame for frame in set(frames.tolist()) if skip is None or not bool(skip[frame]))
    fixed = None if betas is None else betas.detach().cpu()[None]
    image_frames, cameras = frames.tolist(), dataset.cameras.to("cpu")
    with progress_bar(len(present), "fit body to keypoints", enabled=progress, unit="frame") as bar:
        for frame in present:
            indices = [index for index, value in enumerate(image_frames) if value == frame]
            masks = None if dataset.masks is None else to_unit_float(dataset.masks[indices])[..., 0].cpu()
            result = fit_body_views(model, _keypoints(body, dataset, indices, scale), cameras[torch.tensor(indices)],
                                    betas=fixed, masks=masks)
            poses[frame], transl[frame], fitted[frame] = result.pose[0], result.transl[0], True
            shapes.append(result.betas[0])
            errors.append(result.reprojection_error_px)
            bar.update(1)
    shape = torch.stack(shapes).mean(0) if shapes else torch.zeros(model.n_betas)
    return FittedFrames(poses=poses, transl=transl, fitted=fitted, betas=shape,
                        reprojection_error_px=sum(errors) / max(len(errors), 1))
