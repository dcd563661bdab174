"""Which training data are captures (photos a camera took of a real or realistic place), for
the data defaults that suit them: per-image appearance, and, without structure-from-motion
points, a reach beyond the cube around the cameras (their only box then), because what they
look at (a room's walls, the street behind an object) lies outside it — or, for methods that
start from points, the points the known cameras triangulate."""
from __future__ import annotations

import dataclasses

import torch
from tqdm.auto import tqdm

from render3d import distributed
from render3d.errors import DataError

__all__ = ["CAPTURE_FORMATS", "MIN_TRIANGULATED_POINTS", "is_capture", "is_capture_without_points",
           "with_triangulated_points"]

# Dataset formats of captures; NeRF-synthetic ("blender") scenes are renders of an object in a
# known box, with one exposure.
CAPTURE_FORMATS = ("colmap", "nerfstudio")
# Fewer triangulated points than this start nothing better than a random cloud.
MIN_TRIANGULATED_POINTS = 100


def is_capture(data) -> bool:
    """Whether ``data`` (a Dataset) is in a capture format."""
    return getattr(data, "format", "") in CAPTURE_FORMATS


def is_capture_without_points(data) -> bool:
    """Whether ``data`` is a capture whose box came from its cameras alone (no SfM points)."""
    points = getattr(data, "points", None)
    return is_capture(data) and (points is None or points.shape[0] == 0)


def with_triangulated_points(data, *, progress: bool):
    """``data`` (a Dataset), with the points its known cameras triangulate
    (:func:`render3d.data.triangulation.triangulate`) when it is a capture without any (its box
    stays the cameras': the points' box, 1st-99th percentile, cuts a room's ceiling and windows
    off); as it is otherwise, or, with a one-line notice, when pycolmap is missing or finds fewer than
    :data:`MIN_TRIANGULATED_POINTS`. In a process group rank 0 triangulates and the others
    receive its points, so every rank starts from the same ones."""
    if not is_capture_without_points(data):
        return data
    from render3d.data.triangulation import triangulate

    parallel = distributed.current()
    cloud, notice = torch.zeros(0, 6), ""
    if parallel.is_main:
        try:
            points, colors = triangulate(data, progress=progress)
            cloud = torch.cat([points, colors], dim=1)
        except DataError as error:
            notice = f"{error}"
    cloud = parallel.from_main(cloud)
    if cloud.shape[0] < MIN_TRIANGULATED_POINTS:
        if progress:
            reason = notice or f"its cameras triangulate only {cloud.shape[0]} points"
            tqdm.write(f"{data.root}: no structure-from-motion points and {reason}; starting from a random cloud")
        return data
    if progress:
        tqdm.write(f"{data.root}: no structure-from-motion points; starting from {cloud.shape[0]} points "
                   "triangulated from the known cameras")
    device = data.images.device
    return dataclasses.replace(data, points=cloud[:, :3].to(device), point_colors=cloud[:, 3:].to(device))
