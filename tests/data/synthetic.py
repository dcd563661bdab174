"""Small synthetic datasets written into a temporary folder for the loader tests.

Every writer returns what the loader should find (OpenCV camera-to-world poses, intrinsics,
images), so tests compare loaded values against known ones.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from render3d.camera_paths import orbit
from render3d.cameras import intrinsics_from_fov, opengl_to_opencv
from render3d.data.colmap_io import ColmapCamera, ColmapImage, ColmapPoints, rotation_to_qvec, write_model
from render3d.data.undistort import Distortion

FOV_X = 0.8


def orbit_c2w(count: int, radius: float = 4.0, elevation_deg: float = 30.0, size: int = 16) -> np.ndarray:
    """``[N,4,4]`` float64 OpenCV camera-to-world poses on a circle, all looking at the origin."""
    K = intrinsics_from_fov(FOV_X, size, size)
    cams = orbit(torch.zeros(3), radius, count, K, size, size, elevation_deg=elevation_deg)
    return cams.c2w.double().numpy()


def random_images(count: int, width: int, height: int, channels: int, seed: int = 0) -> np.ndarray:
    """``[N,H,W,C]`` uint8 random images."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, channels), dtype=np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write uint8 ``[H,W,3|4]`` with Pillow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    distances = [abs(estimate - left), abs(estimate - up), abs(estimate - up_left)]
    return (left, up, up_left)[distances.index(min(distances))]


def write_png16(path: Path, pixels: np.ndarray) -> None:
    """Write uint16 ``[H,W,C]`` (C in 1..4) as a 16-bit PNG, cycling row filters 0..4.

    Written independently of the decoder under test (plain per-byte loops), so that every PNG
    filter type is exercised.
    """
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = 2 * channels
    rows = [list(pixels[r].astype(">u2").tobytes()) for r in range(height)]
    encoded = bytearray()
    for r, row in enumerate(rows):
        kind = r % 5
        above = rows[r - 1] if r else [0] * len(row)
        encoded.append(kind)
        for i, value in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            up_left = above[i - bpp] if i >= bpp else 0
            prediction = [0, left, above[i], (left + above[i]) // 2, _paeth(left, above[i], up_left)][kind]
            encoded.append((value - prediction) & 0xFF)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(encoded))) + chunk(b"IEND", b"")
    )


def write_blender_scene(
    root: Path, counts=(("train", 5), ("val", 2), ("test", 3)), size: int = 16, channels: int = 4
) -> dict:
    """A NeRF-synthetic folder with random RGBA renders; returns per split ``c2w``/``images``/``names``."""
    expected = {}
    seed = 0
    for split, count in counts:
        c2w = orbit_c2w(count, elevation_deg=20.0 + 10 * seed)
        images = random_images(count, size, size, channels, seed=seed)
        frames = []
        for i in range(count):
            write_png(root / split / f"r_{i}.png", images[i])
            gl = opengl_to_opencv(torch.from_numpy(c2w[i])).numpy()
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": gl.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": FOV_X, "frames": frames}))
        expected[split] = {"c2w": c2w, "images": images, "names": [f"{split}/r_{i}.png" for i in range(count)]}
        seed += 1
    return expected


def colmap_model_for(c2w: np.ndarray, names: list[str], camera: ColmapCamera, points: np.ndarray | None = None):
    """COLMAP ``(cameras, images, points)`` for OpenCV poses ``c2w [N,4,4]`` sharing ``camera``."""
    images = {}
    for i, (pose, name) in enumerate(zip(c2w, names)):
        rotation = pose[:3, :3].T
        images[i + 1] = ColmapImage(i + 1, rotation_to_qvec(rotation), -rotation @ pose[:3, 3], camera.id, name)
    if points is None:
        points_model = ColmapPoints.empty()
    else:
        count = len(points)
        rgb = (np.arange(count * 3).reshape(count, 3) % 256).astype(np.uint8)
        tracks = [np.array([[1, k], [2, k]], dtype=np.int64) for k in range(count)]
        points_model = ColmapPoints.from_tracks(np.arange(1, count + 1), points.astype(np.float64), rgb, np.full(count, 0.5), tracks)
    return {camera.id: camera}, images, points_model


def write_colmap_scene(
    root: Path,
    count: int = 10,
    size: tuple[int, int] = (20, 16),
    camera: ColmapCamera | None = None,
    binary: bool = True,
    images: np.ndarray | None = None,
    n_points: int = 200,
) -> dict:
    """A COLMAP scene (``sparse/0`` + ``images/``); returns ``c2w``, ``K``, ``names``, ``images``, ``points``."""
    width, height = size
    if camera is None:
        camera = ColmapCamera(1, "PINHOLE", width, height, np.array([18.0, 19.0, 10.5, 7.5]))
    c2w = orbit_c2w(count)
    names = [f"img_{i:02d}.png" for i in range(count)][::-1]  # written in reverse: the loader sorts
    c2w = c2w[::-1].copy()
    points = np.random.default_rng(1).uniform(-1.0, 1.0, (n_points, 3))
    if images is None:
        images = random_images(count, width, height, 3, seed=3)
    for name, pixels in zip(names, images):
        write_png(root / "images" / name, pixels)
    write_model(root / "sparse" / "0", *colmap_model_for(c2w, names, camera, points), binary=binary)
    return {"c2w": c2w, "names": names, "images": images, "points": points, "camera": camera}


# ------------------------------------------------------------------ analytic distortion scene


def analytic_pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth RGB ``[...,3]`` function of undistorted normalised coordinates."""
    return np.stack(
        [0.5 + 0.4 * np.sin(5 * x) * np.cos(4 * y), 0.5 + 0.4 * np.cos(6 * y), 0.5 + 0.3 * np.sin(3 * x + 2 * y)],
        axis=-1,
    )


def opencv_distort(x: np.ndarray, y: np.ndarray, d: Distortion) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's radial-tangential lens model, written here independently of the loader."""
    r2 = x**2 + y**2
    radial = 1 + d.k1 * r2 + d.k2 * r2**2 + d.k3 * r2**3
    return (
        x * radial + 2 * d.p1 * x * y + d.p2 * (r2 + 2 * x**2),
        y * radial + d.p1 * (r2 + 2 * y**2) + 2 * d.p2 * x * y,
    )


def undistort_points(x_d: np.ndarray, y_d: np.ndarray, distortion: Distortion) -> tuple[np.ndarray, np.ndarray]:
    """Invert the lens model by fixed-point iteration (independent of the loader's method)."""
    x, y = x_d.copy(), y_d.copy()
    for _ in range(200):
        xt, yt = opencv_distort(x, y, distortion)
        x = x - (xt - x_d)
        y = y - (yt - y_d)
    return x, y


def pixel_normalised(K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates ``[H,W]`` of every pixel centre under ``K``."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]


def distorted_render(K: np.ndarray, distortion: Distortion, width: int, height: int) -> np.ndarray:
    """``[H,W,3]`` float64 image a distorted camera sees of :func:`analytic_pattern`."""
    x_d, y_d = pixel_normalised(K, width, height)
    x, y = undistort_points(x_d, y_d, distortion)
    return analytic_pattern(x, y)


def pinhole_render(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[H,W,3]`` float64 image an ideal pinhole camera with ``K`` sees of the pattern."""
    return analytic_pattern(*pixel_normalised(K, width, height))
