"""``body.json``: the body parameters of a dataset of a person, the data of the ``avatar`` method.

The file sits in the dataset folder beside the images (any image format render3d reads)::

    {"model": "anny",                          # or "procedural", or an SMPL-family file's path
     "betas": [b0, b1, ...],                   # the body's shape (optional: zeros)
     "frames": [{"pose_axis_angle": [[ax, ay, az], ...], "transl": [x, y, z]}, ...],
     "images": {"train/p0_v00.png": 0, ...}}   # each image's frame (an index into frames)

A frame is one instant of the person: one pose, seen by every image of that frame (a
multi-view capture takes several images per frame). Poses use the pose-file layout of
:mod:`render3d.body.poses` (whole ``pose_axis_angle`` or joints by name). Image names are as
the dataset lists them (relative to the folder, e.g. ``train/r_0.png``); images of every split
are listed in the one file, so the test split's frames (held-out poses) are known too.

Without body parameters, ``"frames"`` is the number of frames and each image has 2D keypoints
in ``keypoints/`` under its own name with ``.json`` for its suffix (``keypoints/train/r_0.json``;
OpenPose, COCO or plain, :func:`render3d.body.io.read_keypoints`): the avatar then fits the
body to them first (:mod:`render3d.body.multiview_fitting`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from render3d.body.io import read_json_object
from render3d.body.poses import pose_from_dict
from render3d.errors import DataError

FILE_NAME = "body.json"


@dataclass(frozen=True)
class BodyFrames:
    """A parsed ``body.json`` (module doc): the model's name, ``betas [S]``, ``poses [T, J, 3]``,
    ``transl [T, 3]`` and each image's frame; ``betas``, ``poses`` and ``transl`` are None when
    the file gives only the number of frames (the keypoints decide them)."""

    model: str
    betas: torch.Tensor | None
    poses: torch.Tensor | None
    transl: torch.Tensor | None
    images: dict[str, int]
    path: Path
    count: int

    def __len__(self) -> int:
        return self.count

    @property
    def has_poses(self) -> bool:
        return self.poses is not None

    def keypoints_path(self, image_name: str) -> Path:
        """Where the 2D keypoints of ``image_name`` are (module doc)."""
        return self.path.parent / "keypoints" / Path(image_name).with_suffix(".json")

    def frames_of(self, image_names: list[str]) -> torch.Tensor:
        """``[N]`` int64 frame of each of ``image_names``; DataError naming the first one missing."""
        missing = [name for name in image_names if name not in self.images]
        if missing:
            raise DataError(f"{self.path}: image {missing[0]} has no frame in 'images' ({len(missing)} images have none)")
        return torch.tensor([self.images[name] for name in image_names], dtype=torch.int64)


def has_body_frames(root: Path) -> bool:
    return (Path(root) / FILE_NAME).is_file()


def read_body_frames(root: str | Path, load_model) -> BodyFrames:
    """The ``body.json`` of dataset folder ``root``; ``load_model(name)`` gives the body model
    it names (its joint count and shape size check the arrays). DataError for a missing or
    malformed file, naming it and the field."""
    path = Path(root) / FILE_NAME
    if not path.is_file():
        raise DataError(f"{root}: no {FILE_NAME} (the body's shape, its pose per frame and each image's frame) — "
                        "the avatar method needs one; see render3d.data.body_frames")
    data = read_json_object(path, "body")
    name = data.get("model", "anny")
    if not isinstance(name, str) or not name:
        raise DataError(f"{path}: 'model' must be a body model name or file")
    model = load_model(name)
    try:
        betas = torch.tensor(data.get("betas", []), dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'betas' must be a list of numbers") from None
    if betas.shape[0] > model.n_betas or not torch.isfinite(betas).all():
        raise DataError(f"{path}: 'betas' must be at most {model.n_betas} finite numbers for the {model.name} model")
    betas = torch.cat([betas, betas.new_zeros(model.n_betas - betas.shape[0])])
    frames = data.get("frames")
    if isinstance(frames, int) and not isinstance(frames, bool) and frames > 0:
        poses, count = None, frames
    elif isinstance(frames, list) and frames:
        poses = [pose_from_dict(frame, model, f"{path} frame {index}") for index, frame in enumerate(frames)]
        count = len(poses)
    else:
        raise DataError(f"{path}: 'frames' must be a non-empty list of poses, or the number of frames (poses from keypoints/)")
    images = data.get("images")
    if not isinstance(images, dict) or not images:
        raise DataError(f"{path}: 'images' must map image names to frame indices")
    for image, frame in images.items():
        if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < count:
            raise DataError(f"{path}: image {image} has frame {frame!r}, not an index in [0, {count})")
    if poses is None:
        return BodyFrames(model=name, betas=None, poses=None, transl=None, images=dict(images), path=path, count=count)
    return BodyFrames(model=name, betas=betas, poses=torch.stack([p.pose for p in poses]),
                      transl=torch.stack([p.transl for p in poses]), images=dict(images), path=path, count=count)
