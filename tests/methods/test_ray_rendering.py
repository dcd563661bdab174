"""render_cameras (the surface methods' renderer): pixel centres, or an n x n grid of sub-pixel
rays averaged, so a hard silhouette becomes the fraction of the pixel it covers."""
import math

import pytest
import torch

from render3d.cameras import Cameras, intrinsics_from_fov
from render3d.methods._ray_rendering import render_cameras


def _edge(origins, dirs):
    """A hard edge along the image's vertical centre line: alpha 1 right of it."""
    return {"alpha": (dirs[:, 0] > 0).float(), "rgb": dirs.abs()}


def _camera():
    return Cameras(K=intrinsics_from_fov(math.radians(40), 3, 2), c2w=torch.eye(4), width=3, height=2)


def test_one_sample_is_the_pixel_centre_and_more_blend_a_silhouette():
    centre = render_cameras(_camera(), _edge, chunk=2)
    assert centre["alpha"].shape == (1, 2, 3) and centre["rgb"].shape == (1, 2, 3, 3)
    assert centre["alpha"][0, :, 1].tolist() == [0.0, 0.0]  # the centre ray lies on the edge: not > 0
    blended = render_cameras(_camera(), _edge, chunk=5, samples_per_pixel=4)
    assert blended["alpha"][0].tolist() == [[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]
    nine = render_cameras(_camera(), _edge, chunk=7, samples_per_pixel=9)
    assert torch.allclose(nine["alpha"][0, :, 1], torch.tensor([1 / 3, 1 / 3]))


def test_samples_per_pixel_must_be_a_square():
    with pytest.raises(ValueError, match="square number"):
        render_cameras(_camera(), _edge, chunk=4, samples_per_pixel=2)
