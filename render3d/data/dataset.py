"""The in-memory dataset every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from render3d.cameras import Cameras


@dataclass
class Dataset:
    """Posed images of one split of a scene.

    Attributes:
        images: ``[N,H,W,3]`` float32 in [0,1], sRGB; RGBA sources are composited over
            ``background``.
        cameras: ``N`` cameras (OpenCV axes) of size ``W x H``.
        image_names: ``N`` file names (relative to ``root``) in the order of ``images``.
        aabb: ``[2,3]`` float32 (min corner, max corner) bounding the scene content.
        near: smallest useful ray distance from a camera.
        far: largest useful ray distance from a camera.
        alphas: ``[N,H,W,1]`` float32 in [0,1] when the source images have alpha, else None.
        masks: ``[N,H,W,1]`` float32 in [0,1] object masks (1 = object) from a ``masks/`` folder
            (:mod:`render3d.data.masks`); ``alphas`` when none is given; None without either.
        background: RGB in [0,1] the alpha images were composited over.
        points: ``[P,3]`` float32 sparse structure-from-motion points, or None.
        point_colors: ``[P,3]`` float32 in [0,1] colours of ``points``, or None.
        mesh_path: ground-truth mesh file shipped with the scene, or None.
        format: the detected format (``"blender"``, ``"nerfstudio"`` or ``"colmap"``).
        split: the split that was loaded (``"train"``, ``"val"``, ``"test"`` or ``"all"``).
        root: the dataset folder.
    """

    images: Tensor
    cameras: Cameras
    image_names: list[str]
    aabb: Tensor
    near: float
    far: float
    alphas: Tensor | None = None
    masks: Tensor | None = None
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    points: Tensor | None = None
    point_colors: Tensor | None = None
    mesh_path: Path | None = None
    format: str = ""
    split: str = "train"
    root: Path = field(default_factory=Path)

    def __post_init__(self) -> None:
        if self.masks is None:
            self.masks = self.alphas

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.cameras.height

    @property
    def width(self) -> int:
        return self.cameras.width

    @property
    def center(self) -> Tensor:
        """``[3]`` centre of the scene's bounding box."""
        return self.aabb.mean(dim=0)

    @property
    def radius(self) -> float:
        """Half the diagonal of the scene's bounding box."""
        return float((self.aabb[1] - self.aabb[0]).norm() / 2)

    def to(self, device: torch.device | str) -> "Dataset":
        """The same dataset with its tensors on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Dataset(
            images=self.images.to(device),
            cameras=self.cameras.to(device),
            image_names=list(self.image_names),
            aabb=self.aabb.to(device),
            near=self.near,
            far=self.far,
            alphas=move(self.alphas),
            masks=None if self.masks is self.alphas else move(self.masks),
            background=self.background,
            points=move(self.points),
            point_colors=move(self.point_colors),
            mesh_path=self.mesh_path,
            format=self.format,
            split=self.split,
            root=self.root,
        )
