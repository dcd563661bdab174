"""The in-memory dataset every loader returns.

Images are stored as integers (uint8, or uint16 for 16-bit sources): a 300-image 1080p scene
takes 1.9 GB instead of 7.5 GB in float32. Methods read float batches through
:meth:`Dataset.image`, :meth:`Dataset.float_images` and :meth:`Dataset.pixels`, which convert on
the device the dataset is on (:meth:`Dataset.to`) and composite RGBA images over a background
there: the colour is stored premultiplied by alpha, so ``rgb = colour + (1 - alpha) * background``
for any background (one rounding of the premultiplied colour: within 0.5/255 of the float
composite of the source values).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Dataset", "optional_tensor", "quantize", "to_unit_float"]

_STORAGE_TYPES = (torch.uint8, torch.uint16)


def optional_tensor(array: "np.ndarray | None") -> Tensor | None:
    """The loaders' ``[N,H,W,C]`` image/alpha/mask array as a tensor sharing its memory; None stays None."""
    return None if array is None else torch.from_numpy(array)


def to_unit_float(values: Tensor) -> Tensor:
    """uint8 or uint16 values → float32 in [0,1] (divided by 255 or 65535), on their device."""
    if values.dtype == torch.uint16:  # read through int16 bits: few kernels take uint16 on every device
        return (values.view(torch.int16).to(torch.int32) & 0xFFFF).to(torch.float32) / 65535.0
    return values.to(torch.float32) / 255.0


def _select(values: Tensor, index) -> Tensor:
    """``values[index]``; uint16 is indexed as its int16 bits (see :func:`to_unit_float`)."""
    if values.dtype == torch.uint16:
        return values.view(torch.int16)[index].view(torch.uint16)
    return values[index]


def quantize(values: Tensor, dtype: torch.dtype = torch.uint8) -> Tensor:
    """Float values in [0,1] → ``dtype`` (uint8 or uint16) rounded to nearest: the inverse of :func:`to_unit_float`."""
    top = float(torch.iinfo(dtype).max)
    return (values.to(torch.float32).clamp(0.0, 1.0) * top).round().to(dtype)


@dataclass
class Dataset:
    """Posed images of one split of a scene.

    Attributes:
        images: ``[N,H,W,3]`` uint8 (uint16 when a source image is 16-bit), sRGB colour
            premultiplied by alpha (composited over black) when ``alphas`` is set; None for a
            dataset loaded with ``images=False`` (cameras only). Read it as float through
            :meth:`image`, :meth:`float_images` or :meth:`pixels`.
        cameras: ``N`` cameras (OpenCV axes) of size ``W x H``.
        image_names: ``N`` file names (relative to ``root``) in the order of ``images``.
        aabb: ``[2,3]`` float32 (min corner, max corner) bounding the scene content.
        near: smallest useful ray distance from a camera.
        far: largest useful ray distance from a camera.
        alphas: ``[N,H,W,1]`` of the dtype of ``images`` when the source images have alpha, else None.
        masks: ``[N,H,W,1]`` uint8 or uint16 object masks (the maximum = object) from a ``masks/``
            folder (:mod:`render3d.data.masks`); ``alphas`` when none is given; None without
            either. :meth:`pixel_masks` reads them as float.
        background: RGB in [0,1] the float accessors composite RGBA images over by default.
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
        for name in ("images", "alphas", "masks"):
            value = getattr(self, name)
            if value is not None and value.dtype not in _STORAGE_TYPES:
                raise TypeError(f"Dataset.{name} must be uint8 or uint16, got {value.dtype}; "
                                "convert float images in [0,1] with render3d.data.dataset.quantize")

    def __len__(self) -> int:
        return len(self.cameras)

    # ------------------------------------------------------------------ float views
    def _stored(self) -> Tensor:
        if self.images is None:
            raise ConfigError(f"{self.root}: this dataset was loaded with images=False (cameras only)")
        return self.images

    def _background(self, background, device: torch.device) -> Tensor:
        return torch.as_tensor(self.background if background is None else background, dtype=torch.float32,
                               device=device)

    def float_images(self, index=None, background=None) -> Tensor:
        """Images as float32 in [0,1], composited over ``background``, on the dataset's device.

        Args:
            index: anything that indexes the first axis (an int, a slice, a tensor of image
                indices); None for all images.
            background: RGB (or anything broadcasting to the result) in [0,1]; default
                :attr:`background`.

        Returns:
            ``[B,H,W,3]`` float32 (``[H,W,3]`` for an int ``index``).
        """
        everything = slice(None) if index is None else index
        colour = to_unit_float(_select(self._stored(), everything))
        if self.alphas is None:
            return colour
        alpha = to_unit_float(_select(self.alphas, everything))
        return colour + (1.0 - alpha) * self._background(background, colour.device)

    def image(self, index: int, background=None) -> Tensor:
        """Image ``index`` as ``[H,W,3]`` float32 in [0,1] over ``background`` (see :meth:`float_images`)."""
        return self.float_images(int(index), background)

    def pixels(self, index: Tensor, background=None) -> Tensor:
        """Pixels by flat index into ``N*H*W`` as ``[R,3]`` float32 over ``background`` (``[3]`` or ``[R,3]``)."""
        colour = to_unit_float(_select(self._stored().reshape(-1, 3), index))
        alpha = self.pixel_alphas(index)
        if alpha is None:
            return colour
        return colour + (1.0 - alpha) * self._background(background, colour.device)

    def pixel_alphas(self, index: Tensor) -> Tensor | None:
        """Alpha of pixels by flat index as ``[R,1]`` float32 in [0,1], or None without alpha."""
        return None if self.alphas is None else to_unit_float(_select(self.alphas.reshape(-1, 1), index))

    def pixel_masks(self, index: Tensor) -> Tensor | None:
        """Object mask of pixels by flat index as ``[R,1]`` float32 in [0,1], or None without masks."""
        return None if self.masks is None else to_unit_float(_select(self.masks.reshape(-1, 1), index))

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
            images=move(self.images),
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
