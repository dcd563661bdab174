"""The procedural benchmark shapes: a watertight body with thin fingers, a five-shape collection."""
from __future__ import annotations

import numpy as np
import pytest

from render3d.data.shapes import load_shapes
from render3d.data.synthetic_shapes import (COLLECTION_PARAMETERS, UNSEEN_PARAMETERS, make_body_mesh,
                                            make_unseen_shape, write_shape_collection)
from render3d.geometry import inside


def _finger_point(side: float, offset: float, spread: float, along: float) -> np.ndarray:
    """A point ``along`` metres down the axis of a finger of the hand on ``side`` (see _hand)."""
    down = np.array([0.45 * side, 0.0, -0.89])
    forward = np.array([0.0, 1.0, 0.0])
    base = np.array([0.56 * side, 0.0, 0.97]) + 0.085 * down + offset * forward - 0.008 * down
    return base + along * (np.cos(spread) * down + np.sin(spread) * forward)


@pytest.mark.slow
def test_body_mesh_is_watertight_human_sized_with_separate_fingers():
    body = make_body_mesh()
    assert body.is_watertight and len(body.split(only_watertight=False)) == 1
    assert 13_900 <= len(body.vertices) <= 14_100
    height = body.bounds[1, 2] - body.bounds[0, 2]
    assert 1.7 < height < 1.78 and body.volume > 0
    fingers = [_finger_point(side, offset, spread, 0.05)
               for side in (1.0, -1.0) for offset, spread in ((-0.012, -0.1), (0.012, 0.1), (0.036, 0.3))]
    between = [(_finger_point(side, -0.012, -0.1, 0.06) + _finger_point(side, 0.012, 0.1, 0.06)) / 2
               for side in (1.0, -1.0)]
    assert inside(body, np.array(fingers)).all()
    assert not inside(body, np.array(between)).any()


def test_shape_collection_loads_as_five_watertight_shapes(tmp_path):
    paths = write_shape_collection(tmp_path, resolution=32)
    assert [path.name for path in paths] == [f"shape_{i}.ply" for i in range(5)]
    shapes = load_shapes(tmp_path)
    assert shapes.kind == "collection" and len(shapes) == 5 and all(shapes.watertight)
    volumes = [mesh.volume for mesh in shapes.meshes]
    assert len(set(np.round(volumes, 4))) == 5  # five different shapes
    unseen = make_unseen_shape(resolution=32)
    assert unseen.is_watertight and min(volumes) < unseen.volume < max(volumes)
    assert UNSEEN_PARAMETERS not in COLLECTION_PARAMETERS
    # a family member inside the ranges the five span, parameter by parameter
    low, high = np.min(COLLECTION_PARAMETERS, axis=0), np.max(COLLECTION_PARAMETERS, axis=0)
    assert ((low < UNSEEN_PARAMETERS) & (UNSEEN_PARAMETERS < high)).all()
