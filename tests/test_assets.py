"""Integrity of the shipped demo scene (assets/demo) and of its COLMAP twin (assets/demo_colmap).

Plain json/PIL/trimesh reads, so that a broken asset is caught independently of the loaders.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from render3d.cameras import Cameras, intrinsics_from_fov, opengl_to_opencv

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO = ASSETS / "demo"
TWIN = ASSETS / "demo_colmap"
SPLITS = ("train", "val", "test")
MAX_ASSETS_BYTES = 4 * 1024 * 1024


def _transforms(split: str) -> dict:
    return json.loads((DEMO / f"transforms_{split}.json").read_text())


def _all_frames() -> list[tuple[str, int, dict]]:
    return [(split, i, frame) for split in SPLITS for i, frame in enumerate(_transforms(split)["frames"])]


def _alpha(frame: dict) -> np.ndarray:
    return np.asarray(Image.open(DEMO / f"{frame['file_path']}.png"))[..., 3]


def _demo_cameras(frames: list[dict], opencv: bool = True) -> Cameras:
    angle_x = _transforms("train")["camera_angle_x"]
    height, width = _alpha(frames[0]).shape
    c2w = torch.tensor([f["transform_matrix"] for f in frames], dtype=torch.float64)
    if opencv:
        c2w = opengl_to_opencv(c2w)
    K = intrinsics_from_fov(angle_x, width, height).to(torch.float64).expand(len(frames), 3, 3)
    return Cameras(K=K, c2w=c2w, width=width, height=height)


def _surface_points(count: int) -> torch.Tensor:
    mesh = trimesh.load(DEMO / "mesh.ply", force="mesh")
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=0)
    return torch.as_tensor(points, dtype=torch.float64)


def test_assets_fit_in_four_megabytes():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < MAX_ASSETS_BYTES, f"assets/ holds {total / 2**20:.2f} MiB"


def test_demo_layout_and_images():
    for name in ("README.md", "mesh.ply", *(f"transforms_{s}.json" for s in SPLITS)):
        assert (DEMO / name).is_file(), name
    counts = {split: len(_transforms(split)["frames"]) for split in SPLITS}
    assert counts["train"] >= 30 and counts["val"] >= 4 and counts["test"] >= 8, counts
    angles = {_transforms(split)["camera_angle_x"] for split in SPLITS}
    assert len(angles) == 1 and 0.3 < angles.pop() < 1.5
    sizes = set()
    for split, index, frame in _all_frames():
        assert frame["file_path"] == f"./{split}/r_{index}", "file_path has no extension, NeRF-synthetic style"
        image = Image.open(DEMO / f"{frame['file_path']}.png")
        assert image.mode == "RGBA"
        sizes.add(image.size)
        alpha = np.asarray(image)[..., 3]
        coverage = (alpha > 127).mean()
        assert 0.1 < coverage < 0.8, f"{frame['file_path']}: object covers {coverage:.0%} of the frame"
        assert alpha[0].max() == 0 or alpha[:, 0].max() == 0, "background must be transparent"
    assert len(sizes) == 1


def test_demo_poses_are_rigid_and_face_the_object():
    frames = [frame for _, _, frame in _all_frames()]
    c2w = np.array([f["transform_matrix"] for f in frames])
    assert c2w.shape == (len(frames), 4, 4)
    np.testing.assert_allclose(c2w[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (len(frames), 1)), atol=1e-9)
    rotations = c2w[:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.tile(np.eye(3), (len(frames), 1, 1)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-5)
    centres = c2w[:, :3, 3]
    # OpenGL cameras look down -z: the origin lies ahead of every camera.
    forward = -c2w[:, :3, 2]
    to_origin = -centres / np.linalg.norm(centres, axis=1, keepdims=True)
    assert (np.sum(forward * to_origin, axis=1) > 0.95).all()
    assert (centres[:, 2] > 0).all(), "cameras sit on the upper hemisphere"


def test_mesh_loads_and_is_watertight():
    mesh = trimesh.load(DEMO / "mesh.ply", force="mesh")
    assert len(mesh.faces) > 1000
    assert mesh.is_watertight
    assert np.abs(mesh.bounds).max() < 1.5


def _silhouette_agreement(cameras: Cameras, alphas: list[np.ndarray], points: torch.Tensor) -> tuple[float, float]:
    """Worst-view fraction of projected mesh points landing on covered pixels (alpha > 0),
    and worst-view fraction of mostly covered pixels (alpha > 0.5) hit by a projected point."""
    pixels, depth = cameras.project(points)
    on_mask, mask_hit = [], []
    for c, alpha in enumerate(alphas):
        covered, mask = alpha > 0, alpha > 127
        height, width = mask.shape
        uv = pixels[c].floor().long().numpy()
        inside = (depth[c] > 0).numpy() & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        hit = np.zeros_like(mask)
        hit[uv[inside, 1], uv[inside, 0]] = True
        on_mask.append(covered[uv[inside, 1], uv[inside, 0]].sum() / len(uv))
        mask_hit.append((hit & mask).sum() / mask.sum())
    return float(np.min(on_mask)), float(np.min(mask_hit))


def test_mesh_projects_onto_alpha_masks():
    frames = [frame for _, _, frame in _all_frames()][::4]
    alphas = [_alpha(frame) for frame in frames]
    points = _surface_points(60_000)
    on_mask, mask_hit = _silhouette_agreement(_demo_cameras(frames), alphas, points)
    assert on_mask > 0.999
    assert mask_hit > 0.97
    # The same check catches a pose convention mistake (OpenGL axes used as OpenCV).
    wrong_on_mask, _ = _silhouette_agreement(_demo_cameras(frames, opencv=False), alphas, points)
    assert wrong_on_mask < 0.5


# ---------------------------------------------------------------------------- COLMAP twin
def _read_colmap_text_images(path: Path) -> dict[str, np.ndarray]:
    """``{name: [3,4] world-to-camera}`` from a COLMAP images.txt."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    poses = {}
    for header in lines[::2]:
        fields = header.split()
        qw, qx, qy, qz, tx, ty, tz = map(float, fields[1:8])
        rotation = np.array([
            [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
            [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
            [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
        ])
        poses[fields[9]] = np.concatenate([rotation, [[tx], [ty], [tz]]], axis=1)
    return poses


def test_colmap_twin_files():
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (TWIN / "sparse" / "0" / name).stat().st_size > 0, name
    for name in ("cameras.txt", "images.txt", "points3D.txt"):
        assert (TWIN / "sparse_txt" / "0" / name).stat().st_size > 0, name
    assert (TWIN / "README.md").is_file()
    jpegs = sorted(p.name for p in (TWIN / "images").iterdir())
    assert len(jpegs) == len(_all_frames())
    assert all(name.endswith(".jpg") for name in jpegs)


def test_colmap_twin_camera_matches_demo():
    angle_x = _transforms("train")["camera_angle_x"]
    height, width = _alpha(_transforms("train")["frames"][0]).shape
    (line,) = [l for l in (TWIN / "sparse_txt/0/cameras.txt").read_text().splitlines() if l and l[0] != "#"]
    _, model, w, h, fx, fy, cx, cy = line.split()
    assert (model, int(w), int(h)) == ("PINHOLE", width, height)
    expected_fx = 0.5 * width / math.tan(0.5 * angle_x)
    np.testing.assert_allclose([float(fx), float(fy), float(cx), float(cy)], [expected_fx, expected_fx, width / 2, height / 2], rtol=1e-6)


def test_colmap_twin_poses_match_demo_transforms():
    poses = _read_colmap_text_images(TWIN / "sparse_txt/0/images.txt")
    assert len(poses) == len(_all_frames())
    for split, index, frame in _all_frames():
        w2c = poses[f"{split}_{index:03d}.jpg"]
        c2w_opencv = opengl_to_opencv(torch.tensor(frame["transform_matrix"], dtype=torch.float64)).numpy()
        np.testing.assert_allclose(w2c[:, :3] @ c2w_opencv[:3, :3], np.eye(3), atol=1e-6)
        np.testing.assert_allclose(-w2c[:, :3].T @ w2c[:, 3], c2w_opencv[:3, 3], atol=1e-6)


def test_colmap_twin_points_lie_on_the_mesh():
    rows = [l.split() for l in (TWIN / "sparse_txt/0/points3D.txt").read_text().splitlines() if l and l[0] != "#"]
    points = np.array([[float(v) for v in row[1:4]] for row in rows])
    assert len(points) > 400
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(_surface_points(400_000).numpy()).query(points)
    # A pixel spans about 0.018 world units at the object: the typical SIFT point lands within
    # a pixel of the surface (the nearest dense surface sample adds a few thousandths); points
    # seen under small triangulation angles scatter further along their rays.
    assert np.median(distance) < 0.015
    assert np.mean(distance < 0.05) > 0.8


@pytest.mark.parametrize("split", SPLITS)
def test_colmap_twin_images_are_the_demo_views_on_white(split: str):
    frame = _transforms(split)["frames"][0]
    rgba = np.asarray(Image.open(DEMO / f"{frame['file_path']}.png"), dtype=np.float64) / 255.0
    expected = rgba[..., :3] * rgba[..., 3:] + 1.0 - rgba[..., 3:]
    jpeg = np.asarray(Image.open(TWIN / "images" / f"{split}_000.jpg"), dtype=np.float64) / 255.0
    assert jpeg.shape == expected.shape
    # JPEG at quality 90 stays within a few levels on average.
    assert np.abs(jpeg - expected).mean() < 0.02
