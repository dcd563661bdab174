"""Per-training-image parameters learnt beside a scene with their own Adam: the mechanism that
per-image appearance (:mod:`render3d.methods._appearance`) and camera pose refinement
(:mod:`render3d.methods._pose_refinement`) share.

Off, a module holds nothing and every hook does nothing, so a method calls it the same way
either way (and checkpoints written without it still load). On, it holds one row per training
image, zero until trained; loading a checkpoint takes the checkpoint's number of rows.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = ["PerImageParameters"]


class PerImageParameters(nn.Module):
    """``[N, *row_shape]`` parameters named :attr:`name` (their checkpoint key) with their own
    Adam at rate ``lr``; N = 0 until :meth:`reset`."""

    name: ClassVar[str]
    row_shape: ClassVar[tuple[int, ...]]

    def __init__(self, enabled: bool, lr: float) -> None:
        super().__init__()
        self.enabled = bool(enabled)
        self.lr = float(lr)
        if self.enabled:
            self._hold(torch.zeros(0, *self.row_shape))

    @property
    def values(self) -> Tensor:
        """The ``[N, *row_shape]`` parameters."""
        return getattr(self, self.name)

    def _hold(self, values: Tensor) -> None:
        setattr(self, self.name, nn.Parameter(values))
        self.optimizer = torch.optim.Adam([self.values], lr=self.lr)

    def reset(self, n_images: int, device: torch.device) -> None:
        """Zero rows for ``n_images`` training images, on ``device``, and a fresh Adam."""
        if self.enabled:
            self._hold(torch.zeros(n_images, *self.row_shape, device=device))

    def zero_grad(self, set_to_none: bool = True) -> None:
        if self.enabled:
            self.optimizer.zero_grad(set_to_none=set_to_none)

    def training_state(self) -> dict:
        """Adam's state, for an exact resume (``{}`` when off)."""
        return {"optimizer": self.optimizer.state_dict()} if self.enabled else {}

    def load_training_state(self, state: dict) -> None:
        """Restore :meth:`training_state` after the parameters were loaded from a checkpoint."""
        if self.enabled:
            self.optimizer = torch.optim.Adam([self.values], lr=self.lr)
            self.optimizer.load_state_dict(state["optimizer"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + self.name)
        if self.enabled and stored is not None:  # take the checkpoint's number of images
            setattr(self, self.name, nn.Parameter(torch.empty_like(stored, device=self.values.device)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
