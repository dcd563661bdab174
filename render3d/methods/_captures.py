"""Which training data are captures (photos a camera took of a real or realistic place), for
the data defaults that suit them: per-image appearance, and, without structure-from-motion
points, a reach beyond the cube around the cameras (their only box then), because what they
look at (a room's walls, the street behind an object) lies outside it."""
from __future__ import annotations

__all__ = ["CAPTURE_FORMATS", "is_capture", "is_capture_without_points"]

# Dataset formats of captures; NeRF-synthetic ("blender") scenes are renders of an object in a
# known box, with one exposure.
CAPTURE_FORMATS = ("colmap", "nerfstudio")


def is_capture(data) -> bool:
    """Whether ``data`` (a Dataset) is in a capture format."""
    return getattr(data, "format", "") in CAPTURE_FORMATS


def is_capture_without_points(data) -> bool:
    """Whether ``data`` is a capture whose box came from its cameras alone (no SfM points)."""
    points = getattr(data, "points", None)
    return is_capture(data) and (points is None or points.shape[0] == 0)
