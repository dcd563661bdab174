"""Validation of camera poses read from dataset files, shared by every loader.

A camera-to-world matrix whose rotation block is all zeros, singular, scaled, a reflection or
not finite gives rays that go nowhere or the wrong way; training on it silently fails. The
loaders refuse such a pose with a DataError naming the file and the frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from render3d.errors import DataError

__all__ = ["ROTATION_TOLERANCE", "check_poses"]

# Largest |R^T R - I| entry and |det R - 1| accepted: loose enough for poses printed with a
# few digits or slightly scaled by a pipeline (rays are normalised), tight enough to refuse
# anything that is not a rotation.
ROTATION_TOLERANCE = 1e-2


def check_poses(c2w: np.ndarray, path: Path | str, frames: Sequence[str]) -> None:
    """Refuse the first of ``c2w [N,4,4]`` (or ``[N,3,4]``) camera-to-world matrices whose
    entries are not finite or whose ``[3,3]`` block is not a rotation (orthonormal within
    :data:`ROTATION_TOLERANCE`, determinant +1).

    Args:
        c2w: the poses, in the file's own axis convention (a fixed axis flip such as
            OpenGL -> OpenCV is a rotation too, so either convention passes).
        path: the file the poses were read from (for the message).
        frames: one label per pose, e.g. ``"frame 3"`` or ``"image r_3.png"``.

    Raises:
        DataError: ``"{path}: {frame}: ..."`` saying what is wrong.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    for matrix, frame in zip(c2w, frames):
        problem = _pose_problem(matrix)
        if problem is not None:
            raise DataError(f"{path}: {frame}: {problem}")


def _pose_problem(matrix: np.ndarray) -> str | None:
    if not np.isfinite(matrix[:3, :4]).all():
        return "the camera pose has NaN or infinite entries"
    rotation = matrix[:3, :3]
    error = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    if error > ROTATION_TOLERANCE:
        return (f"the camera pose's rotation is not orthonormal (R^T R differs from I by up to {error:.3g}; "
                "an all-zero, singular or scaled rotation block)")
    determinant = float(np.linalg.det(rotation))
    if abs(determinant - 1.0) > ROTATION_TOLERANCE:
        return f"the camera pose's rotation has determinant {determinant:.3g}, not +1 (a reflection)"
    return None
