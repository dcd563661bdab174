"""Reading 2D keypoints and intrinsics for body fitting, and writing its outputs.

Keypoint files (JSON), one person (the first one when there are several):

- OpenPose: ``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}]}`` with 25 keypoints
  (BODY_25);
- COCO: ``{"keypoints": [x, y, v, ...]}`` (17 keypoints), an annotation list
  ``[{"keypoints": [...]}, ...]`` or ``{"annotations": [...]}``; ``v`` (visibility 0/1/2 or a
  score) is clamped to [0, 1] as the confidence;
- plain: ``{"keypoints": [[x, y, c], ...]}`` with 17 or 25 rows.

The count picks the convention: 17 is COCO-17, 25 is BODY_25.

Camera files (JSON): ``{"fx", "fy", "cx", "cy", "width", "height"}`` or
``{"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "width", "height"}``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from render3d.body.fitting import Keypoints2D, PinholeCamera
from render3d.body.keypoints import BODY25, COCO17
from render3d.errors import DataError

_BY_COUNT = {len(COCO17): "coco17", len(BODY25): "body25"}


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable JSON {what} file ({error})") from None


def read_json_object(path: str | Path, what: str) -> dict:
    """A JSON file that must hold an object; DataError naming the file otherwise."""
    path = Path(path)
    data = _read_json(path, what)
    if not isinstance(data, dict):
        raise DataError(f"{path}: {what} file must hold a JSON object")
    return data


def _flat_keypoints(data, path: Path) -> list:
    if isinstance(data, dict) and "people" in data:
        people = data["people"]
        if not isinstance(people, list) or not people or not isinstance(people[0], dict) \
                or "pose_keypoints_2d" not in people[0]:
            raise DataError(f"{path}: OpenPose file without a person's pose_keypoints_2d")
        return people[0]["pose_keypoints_2d"]
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if isinstance(data, list):
        if not data or not isinstance(data[0], dict) or "keypoints" not in data[0]:
            raise DataError(f"{path}: annotation list without keypoints")
        data = data[0]
    if isinstance(data, dict) and "keypoints" in data:
        return data["keypoints"]
    raise DataError(f"{path}: no keypoints found (expected OpenPose 'people', COCO 'keypoints' or 'annotations')")


def read_keypoints(path: str | Path) -> Keypoints2D:
    """Read one person's keypoints (module doc).

    Raises:
        DataError: missing or unreadable file, a count other than 17 or 25, NaN or
            non-numeric values, negative confidences.
    """
    path = Path(path)
    raw = _flat_keypoints(_read_json(path, "keypoint"), path)
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: keypoints must be numbers") from None
    if values.ndim == 2 and values.shape[1] == 3:
        values = values.reshape(-1)
    if values.ndim != 1 or values.size % 3:
        raise DataError(f"{path}: keypoints must be x, y, confidence triples, got {values.size} numbers")
    count = values.size // 3
    if count not in _BY_COUNT:
        raise DataError(f"{path}: expected 17 (COCO-17) or 25 (OpenPose BODY_25) keypoints, got {count}")
    triples = values.reshape(count, 3)
    if not np.isfinite(triples).all():
        raise DataError(f"{path}: keypoints contain NaN or infinite values")
    if (triples[:, 2] < 0).any():
        raise DataError(f"{path}: keypoint confidences must be non-negative")
    return Keypoints2D(
        points=torch.tensor(triples[:, :2], dtype=torch.float32),
        confidence=torch.tensor(np.clip(triples[:, 2], 0.0, 1.0), dtype=torch.float32),
        convention=_BY_COUNT[count],
    )


def read_camera(path: str | Path) -> PinholeCamera:
    """Read intrinsics (module doc). Raises DataError naming the file and the field."""
    path = Path(path)
    data = read_json_object(path, "camera")
    try:
        if "K" in data:
            K = np.asarray(data["K"], dtype=np.float64)
            if K.shape != (3, 3):
                raise DataError(f"{path}: K must be a 3x3 matrix")
        else:
            missing = [key for key in ("fx", "fy", "cx", "cy") if key not in data]
            if missing:
                raise DataError(f"{path}: camera needs fx, fy, cx, cy (or K); missing {', '.join(missing)}")
            K = np.array([[data["fx"], 0, data["cx"]], [0, data["fy"], data["cy"]], [0, 0, 1]], dtype=np.float64)
        width, height = data.get("width"), data.get("height")
    except (TypeError, ValueError):
        raise DataError(f"{path}: camera values must be numbers") from None
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DataError(f"{path}: focal lengths must be positive finite numbers")
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"{path}: {name} must be a positive integer, got {value!r}")
    return PinholeCamera(torch.tensor(K, dtype=torch.float32), width, height)


def camera_json(camera: PinholeCamera) -> dict:
    """The camera as the JSON :func:`read_camera` reads."""
    return {"K": camera.K.tolist(), "width": camera.width, "height": camera.height}


def draw_overlay(vertices: np.ndarray, faces: np.ndarray, camera: PinholeCamera, target: np.ndarray,
                 confidence: np.ndarray, fitted: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8 image: the mesh projected and shaded (painter's order, 60 %
    opacity), the target keypoints (green) and the fitted ones (red) over ``background`` (an
    ``[H, W, 3]`` uint8 image) or a grey canvas.

    Args:
        vertices: ``[V, 3]`` camera-space vertices; faces ``[F, 3]``.
        target, fitted: ``[K, 2]`` pixels; confidence ``[K]`` (zero: not drawn).
    """
    from PIL import Image, ImageDraw

    width, height = camera.width, camera.height
    canvas = Image.fromarray(background) if background is not None else Image.new("RGB", (width, height), (90, 90, 90))
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    K = camera.K.numpy().astype(np.float64)
    depth = np.maximum(vertices[:, 2], 1e-3)
    uv = vertices[:, :2] / depth[:, None] * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    shade = np.abs(normals[:, 2])
    visible = (vertices[faces, 2] > 1e-3).all(1)
    for face in np.argsort(-triangles[:, :, 2].mean(1)):
        if visible[face]:
            level = int(80 + 160 * shade[face])
            draw.polygon([tuple(p) for p in uv[faces[face]].tolist()], fill=(level, level, int(level * 0.9), 150))
    canvas = Image.alpha_composite(canvas.convert("RGBA"), layer)
    marks = ImageDraw.Draw(canvas)
    radius = max(2, round(min(width, height) / 160))
    for points, colour in ((target, (40, 220, 40, 255)), (fitted, (230, 40, 40, 255))):
        for (u, v), c in zip(points.tolist(), confidence.tolist()):
            if c > 0 and math.isfinite(u) and math.isfinite(v):
                marks.ellipse([u - radius, v - radius, u + radius, v + radius], outline=colour, width=2)
    return np.asarray(canvas.convert("RGB"))
